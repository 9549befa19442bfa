"""Routing in SQL: who may take a conversation, and taking it without races.

Eligible agents are online, inside one of their shifts now in their own time zone (an agent
without shifts is always on shift), have every required skill, and are under capacity; among
them the least loaded, then the one idle longest. The queue is served by priority, then waiting
time. `dispatch_batch` hands out a whole batch in one statement: it plans the batch in queue
order (counting the batch's own assignments towards each agent's load), then locks the agents it
planned with `SKIP LOCKED`, so a transaction holds an agent only for the assignments it
actually makes, and never waits for another. Every lock is taken with `SKIP LOCKED` (queue
entries, their conversations, agents), the capacity check is repeated in the conditional
`UPDATE` that takes the slots, and the partial unique index on active assignments refuses a
second holder of a conversation, so neither a double assignment nor an agent over capacity can
be committed whatever runs concurrently.

Times are parameters (`:now`) so the rules can be exercised with a controlled clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Agent `a` is online, under capacity and inside one of its shifts now, in its own time zone.
_AVAILABLE = """
    a.status = 'online'
    AND a.active_count < a.max_concurrent_conversations
    AND (jsonb_array_length(a.shifts) = 0 OR EXISTS (
        SELECT 1
        FROM jsonb_array_elements(a.shifts) AS s(shift),
             LATERAL (SELECT CAST(:now AS timestamptz) AT TIME ZONE a.timezone AS local) AS t
        WHERE (s.shift ->> 'weekday')::int = extract(isodow FROM t.local)::int - 1
          AND t.local::time >= (s.shift ->> 'start')::time
          AND t.local::time < (s.shift ->> 'end')::time
    ))"""


def _serves(agent: str, skills: str, excluded: str) -> str:
    """`agent` has every one of `skills` and is not one of the `excluded` agents."""
    return f"{agent}.skills @> {skills} AND NOT ({agent}.id = ANY ({excluded}))"


def _eligible(skills: str, excluded: str) -> str:
    """Agent `a` may take a conversation needing `skills` and not for `excluded` agents now.

    `_AVAILABLE` and `_serves` are the one definition for the single pick and the dispatch
    batch, so they can never disagree. Only the SQL expressions in this module are ever passed
    in, never request data.
    """
    return f"{_AVAILABLE}\n    AND {_serves('a', skills, excluded)}"


# Built once from constants; no request data is ever formatted into SQL.
_ASSIGN_BEST = text(
    f"""
WITH candidate AS (
    SELECT a.id FROM support_agents a
    WHERE a.org_id = :org_id
      AND {_eligible("CAST(:skills AS text[])", "CAST(:excluded AS uuid[])")}
    ORDER BY a.active_count, a.last_assigned_at NULLS FIRST, a.id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), taken AS (
    UPDATE support_agents a
    SET active_count = a.active_count + 1, last_assigned_at = CAST(:now AS timestamptz)
    FROM candidate
    WHERE a.id = candidate.id AND a.active_count < a.max_concurrent_conversations
    RETURNING a.id
)
INSERT INTO agent_assignments (org_id, conversation_id, agent_id, assignment_type, started_at)
SELECT :org_id, :conversation_id, taken.id, :assignment_type, CAST(:now AS timestamptz)
FROM taken
RETURNING id, agent_id
"""
)

_ASSIGN_TO = text(
    """
WITH taken AS (
    UPDATE support_agents
    SET active_count = active_count + 1, last_assigned_at = CAST(:now AS timestamptz)
    WHERE id = :agent_id AND org_id = :org_id AND status = 'online'
      AND active_count < max_concurrent_conversations
    RETURNING id
)
INSERT INTO agent_assignments (org_id, conversation_id, agent_id, assignment_type, started_at)
SELECT :org_id, :conversation_id, taken.id, :assignment_type, CAST(:now AS timestamptz)
FROM taken
RETURNING id, agent_id
"""
)

# One batch of `dispatch` in one statement, read from the snapshot first, then locked:
# - `agents`: who can take work now, but for the `busy` ones (read, not locked);
# - `entries`: the next waiting entries, best first, that one of them can take (not `held`);
# - `plan`: entry by entry in queue order, the eligible agent least loaded then idle longest,
#   counting the batch's own assignments (`added`, per agent in `agents` order);
# - `locked`: the planned agents, locked and checked again on their latest version; then
#   `claimed`: the entries of locked agents (and those to cancel), locked with their
#   conversations. Agents before entries: an assigner that cannot have the agents it planned
#   holds no entry another could serve meanwhile. All with SKIP LOCKED: nothing ever waits;
#   an agent held elsewhere comes back `busy`, an entry held elsewhere `held`, and the caller
#   plans again without them.
# - `taken` moves the agents' counters only while they stay within capacity; the assignments,
#   queue entries and conversations follow the agents actually taken. Entries whose
#   conversation no longer waits for an agent are cancelled.
_DISPATCH = text(
    f"""
WITH RECURSIVE agents AS MATERIALIZED (
    SELECT a.id, a.skills, a.active_count AS load, a.max_concurrent_conversations AS capacity,
           a.last_assigned_at AS last, row_number() OVER (ORDER BY a.id)::int AS k
    FROM support_agents a
    WHERE a.org_id = :org_id AND NOT (a.id = ANY (CAST(:busy AS uuid[]))) AND {_AVAILABLE}
), entries AS MATERIALIZED (
    SELECT q.id, q.conversation_id, q.required_skills, q.tried_agent_ids,
           c.status IN ('queued', 'bot') AS open,
           row_number() OVER (ORDER BY q.priority DESC, q.enqueued_at, q.id)::int AS n
    FROM (
        SELECT q.* FROM agent_queue q
        WHERE q.org_id = :org_id AND q.status = 'waiting'
          AND NOT (q.id = ANY (CAST(:held AS uuid[])))
          AND EXISTS (SELECT 1 FROM agents)
          -- Only entries someone can take now: those nobody can take must not hide the ones
          -- behind them.
          AND (
              SELECT true FROM agents a
              WHERE {_serves("a", "q.required_skills", "q.tried_agent_ids")}
              LIMIT 1
          )
        ORDER BY q.priority DESC, q.enqueued_at, q.id
        LIMIT :limit
    ) AS q
    JOIN conversations c ON c.id = q.conversation_id
), plan (n, entry_id, k, added) AS (
    SELECT 0, NULL::uuid, NULL::int, array_fill(0, ARRAY[(SELECT count(*) FROM agents)::int])
    UNION ALL
    SELECT e.n, e.id, pick.k,
           CASE WHEN pick.k IS NULL THEN p.added
                ELSE p.added[1 : pick.k - 1] || (p.added[pick.k] + 1) || p.added[pick.k + 1 :]
           END
    FROM plan p
    JOIN entries e ON e.n = p.n + 1
    LEFT JOIN LATERAL (
        SELECT a.k FROM agents a
        WHERE e.open AND {_serves("a", "e.required_skills", "e.tried_agent_ids")}
          AND a.load + p.added[a.k] < a.capacity
        ORDER BY a.load + p.added[a.k],
                 CASE WHEN p.added[a.k] > 0 THEN CAST(:now AS timestamptz) ELSE a.last END
                     NULLS FIRST,
                 a.id
        LIMIT 1
    ) AS pick ON true
), chosen AS (
    SELECT p.entry_id, a.id AS agent_id FROM plan p JOIN agents a ON a.k = p.k
), locked AS (
    SELECT a.id, a.skills FROM support_agents a
    WHERE a.id IN (SELECT agent_id FROM chosen) AND {_AVAILABLE}
    ORDER BY a.id
    FOR UPDATE SKIP LOCKED
), claimed AS (
    SELECT q.id, q.conversation_id, c.status IN ('queued', 'bot') AS open
    FROM agent_queue q
    JOIN conversations c ON c.id = q.conversation_id
    WHERE q.status = 'waiting'
      AND q.id IN (
          SELECT entry_id FROM chosen WHERE agent_id IN (SELECT id FROM locked)
          UNION ALL
          SELECT id FROM entries WHERE NOT open
      )
    ORDER BY q.id
    FOR UPDATE OF q, c SKIP LOCKED
), granted AS (
    SELECT e.n, e.id AS entry_id, e.conversation_id, l.id AS agent_id
    FROM chosen ch
    JOIN locked l ON l.id = ch.agent_id
    JOIN claimed cl ON cl.id = ch.entry_id AND cl.open
    JOIN entries e ON e.id = ch.entry_id
    WHERE {_serves("l", "e.required_skills", "e.tried_agent_ids")}
), taken AS (
    UPDATE support_agents a
    SET active_count = a.active_count + g.extra, last_assigned_at = CAST(:now AS timestamptz)
    FROM (SELECT agent_id, count(*)::int AS extra FROM granted GROUP BY agent_id) AS g
    WHERE a.id = g.agent_id AND a.active_count + g.extra <= a.max_concurrent_conversations
    RETURNING a.id
), inserted AS (
    INSERT INTO agent_assignments (org_id, conversation_id, agent_id, assignment_type, started_at)
    SELECT :org_id, g.conversation_id, g.agent_id, 'auto', CAST(:now AS timestamptz)
    FROM granted g JOIN taken t ON t.id = g.agent_id
    ORDER BY g.n
    RETURNING id, conversation_id, agent_id
), dequeued AS (
    UPDATE agent_queue q
    SET status = CASE WHEN i.id IS NULL THEN 'cancelled' ELSE 'assigned' END,
        dequeued_at = CAST(:now AS timestamptz)
    FROM claimed cl LEFT JOIN inserted i ON i.conversation_id = cl.conversation_id
    WHERE q.id = cl.id AND (i.id IS NOT NULL OR NOT cl.open)
    RETURNING q.id, q.status
), moved AS (
    UPDATE conversations c
    SET status = 'assigned', assigned_agent_id = i.agent_id, updated_at = now()
    FROM inserted i
    WHERE c.id = i.conversation_id
)
SELECT 'assigned' AS outcome, i.id, i.conversation_id, i.agent_id FROM inserted i
UNION ALL
SELECT 'cancelled', d.id, NULL, NULL FROM dequeued d WHERE d.status = 'cancelled'
UNION ALL
SELECT 'held', ch.entry_id, NULL, NULL FROM chosen ch
WHERE ch.agent_id IN (SELECT id FROM locked)
  AND NOT EXISTS (SELECT 1 FROM claimed cl WHERE cl.id = ch.entry_id)
UNION ALL
SELECT 'busy', NULL, NULL, ch.agent_id FROM chosen ch
WHERE NOT EXISTS (SELECT 1 FROM locked l WHERE l.id = ch.agent_id)
   OR EXISTS (SELECT 1 FROM granted g WHERE g.agent_id = ch.agent_id)
      AND NOT EXISTS (SELECT 1 FROM taken t WHERE t.id = ch.agent_id)
GROUP BY ch.agent_id
"""
)

_RAISE_WAITING = text(
    """
UPDATE agent_queue SET priority = priority + 1, priority_changed_at = CAST(:now AS timestamptz)
WHERE status = 'waiting' AND priority < 3
  AND priority_changed_at <= CAST(:now AS timestamptz) - make_interval(secs => :after)
RETURNING org_id
"""
)

# Organizations with a waiting conversation and an agent available now. The periodic sweep
# dispatches them: a conversation whose dispatch found its agents held by another transaction
# would otherwise wait for the next event that happens to dispatch again.
_SERVABLE_ORGS = text(
    f"""
SELECT waiting.org_id
FROM (SELECT DISTINCT org_id FROM agent_queue WHERE status = 'waiting') AS waiting
WHERE EXISTS (
    SELECT 1 FROM support_agents a
    WHERE a.org_id = waiting.org_id AND {_AVAILABLE}
)
"""
)

_LAPSED = text(
    """
UPDATE agent_assignments SET ended_at = CAST(:now AS timestamptz), end_reason = 'response_timeout'
WHERE id IN (
    SELECT id FROM agent_assignments
    WHERE ended_at IS NULL AND first_response_at IS NULL
      AND started_at <= CAST(:now AS timestamptz) - make_interval(secs => :after)
    ORDER BY started_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
RETURNING org_id, conversation_id, agent_id
"""
)

_REQUEUE = text(
    """
INSERT INTO agent_queue
    (org_id, conversation_id, priority, required_skills, reason, tried_agent_ids, attempts)
SELECT :org_id, :conversation_id,
       greatest(previous.priority, :priority),
       coalesce(CAST(:skills AS text[]), previous.required_skills, '{}'),
       :reason,
       coalesce(previous.tried_agent_ids, '{}') || CAST(:tried AS uuid[]),
       coalesce(previous.attempts, 0) + 1
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT priority, required_skills, tried_agent_ids, attempts FROM agent_queue
    WHERE conversation_id = :conversation_id ORDER BY enqueued_at DESC LIMIT 1
) AS previous ON true
ON CONFLICT (conversation_id) WHERE status = 'waiting' DO UPDATE
SET tried_agent_ids = agent_queue.tried_agent_ids || excluded.tried_agent_ids,
    priority = greatest(agent_queue.priority, excluded.priority),
    required_skills = excluded.required_skills
RETURNING id
"""
)


@dataclass(frozen=True, slots=True)
class Taken:
    assignment_id: uuid.UUID
    agent_id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Batch:
    """What one dispatch statement did: conversations handed out, queue entries cancelled
    (their conversation no longer waits for an agent), agents and queue entries another
    transaction holds."""

    assigned: list[tuple[uuid.UUID, Taken]]
    cancelled: list[uuid.UUID]
    busy: list[uuid.UUID]
    held: list[uuid.UUID]


@dataclass(frozen=True, slots=True)
class Lapsed:
    org_id: uuid.UUID
    conversation_id: uuid.UUID
    agent_id: uuid.UUID


class Routing:
    def __init__(self, session: AsyncSession, org_id: uuid.UUID, now: datetime) -> None:
        self.session = session
        self.org_id = org_id
        self.now = now

    async def assign_best(
        self,
        conversation_id: uuid.UUID,
        skills: list[str],
        excluded: list[uuid.UUID],
        assignment_type: str,
    ) -> Taken | None:
        row = (
            await self.session.execute(
                _ASSIGN_BEST,
                {
                    "org_id": self.org_id,
                    "conversation_id": conversation_id,
                    "skills": skills,
                    "excluded": excluded,
                    "assignment_type": assignment_type,
                    "now": self.now,
                },
            )
        ).first()
        return Taken(row.id, row.agent_id) if row else None

    async def assign_to(
        self, conversation_id: uuid.UUID, agent_id: uuid.UUID, assignment_type: str
    ) -> Taken | None:
        row = (
            await self.session.execute(
                _ASSIGN_TO,
                {
                    "org_id": self.org_id,
                    "conversation_id": conversation_id,
                    "agent_id": agent_id,
                    "assignment_type": assignment_type,
                    "now": self.now,
                },
            )
        ).first()
        return Taken(row.id, row.agent_id) if row else None

    async def dispatch_batch(
        self, limit: int, busy: list[uuid.UUID], held: list[uuid.UUID]
    ) -> Batch:
        """Hand up to `limit` waiting entries but the `held` ones, best first, to eligible
        agents but the `busy` ones."""
        rows = await self.session.execute(
            _DISPATCH,
            {"org_id": self.org_id, "limit": limit, "busy": busy, "held": held, "now": self.now},
        )
        batch = Batch(assigned=[], cancelled=[], busy=[], held=[])
        for outcome, id_, conversation_id, agent_id in rows:
            if outcome == "assigned":
                batch.assigned.append((conversation_id, Taken(id_, agent_id)))
            elif outcome == "cancelled":
                batch.cancelled.append(id_)
            elif outcome == "held":
                batch.held.append(id_)
            else:
                batch.busy.append(agent_id)
        return batch

    async def requeue(
        self,
        conversation_id: uuid.UUID,
        reason: str,
        *,
        priority: int = 1,
        skills: list[str] | None = None,
        tried: list[uuid.UUID] | None = None,
    ) -> uuid.UUID:
        result = await self.session.execute(
            _REQUEUE,
            {
                "org_id": self.org_id,
                "conversation_id": conversation_id,
                "reason": reason,
                "priority": priority,
                "skills": skills,
                "tried": tried or [],
            },
        )
        return uuid.UUID(str(result.scalar_one()))


async def raise_waiting_priorities(
    session: AsyncSession, now: datetime, after: float
) -> set[uuid.UUID]:
    rows = await session.execute(_RAISE_WAITING, {"now": now, "after": after})
    return {row.org_id for row in rows}


async def servable_orgs(session: AsyncSession, now: datetime) -> set[uuid.UUID]:
    rows = await session.execute(_SERVABLE_ORGS, {"now": now})
    return {row.org_id for row in rows}


async def end_lapsed_assignments(
    session: AsyncSession, now: datetime, after: float, limit: int = 100
) -> list[Lapsed]:
    rows = await session.execute(_LAPSED, {"now": now, "after": after, "limit": limit})
    return [Lapsed(**row._mapping) for row in rows]
