"""Routing in SQL: who may take a conversation, and taking it without races.

Eligible agents are online, inside one of their shifts now in their own time zone (an agent
without shifts is always on shift), have every required skill, and are under capacity; among
them the least loaded, then the one idle longest. The pick locks the agent row with
`SKIP LOCKED` (parallel assigners spread over agents instead of queueing on one), the capacity
check is repeated in the conditional `UPDATE` that takes the slot, and the partial unique index on
active assignments refuses a second holder of a conversation, so neither a double assignment nor
an agent over capacity can be committed whatever runs concurrently.

Times are parameters (`:now`) so the rules can be exercised with a controlled clock.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


def _eligible(skills: str, excluded: str) -> str:
    """Agent `a` may take a conversation needing `skills` and not for `excluded` agents now.

    One definition for both the pick and the queue scan, so they can never disagree. Only
    the SQL expressions below are ever passed in, never request data.
    """
    return f"""
    a.status = 'online'
    AND a.active_count < a.max_concurrent_conversations
    AND a.skills @> {skills}
    AND NOT (a.id = ANY ({excluded}))
    AND (jsonb_array_length(a.shifts) = 0 OR EXISTS (
        SELECT 1
        FROM jsonb_array_elements(a.shifts) AS s(shift),
             LATERAL (SELECT CAST(:now AS timestamptz) AT TIME ZONE a.timezone AS local) AS t
        WHERE (s.shift ->> 'weekday')::int = extract(isodow FROM t.local)::int - 1
          AND t.local::time >= (s.shift ->> 'start')::time
          AND t.local::time < (s.shift ->> 'end')::time
    ))"""


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

_NEXT_WAITING = text(
    f"""
SELECT q.id, q.conversation_id, q.required_skills, q.tried_agent_ids
FROM agent_queue q
WHERE q.org_id = :org_id AND q.status = 'waiting'
  -- Only entries someone can take now: those nobody can take must not hide the ones behind.
  AND EXISTS (
      SELECT 1 FROM support_agents a
      WHERE a.org_id = q.org_id AND {_eligible("q.required_skills", "q.tried_agent_ids")}
  )
ORDER BY q.priority DESC, q.enqueued_at, q.id
LIMIT :limit
FOR UPDATE OF q SKIP LOCKED
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
class Waiting:
    id: uuid.UUID
    conversation_id: uuid.UUID
    required_skills: list[str]
    tried_agent_ids: list[uuid.UUID]


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

    async def waiting(self, limit: int) -> list[Waiting]:
        rows = await self.session.execute(
            _NEXT_WAITING, {"org_id": self.org_id, "limit": limit, "now": self.now}
        )
        return [Waiting(**row._mapping) for row in rows]

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


async def end_lapsed_assignments(
    session: AsyncSession, now: datetime, after: float, limit: int = 100
) -> list[Lapsed]:
    rows = await session.execute(_LAPSED, {"now": now, "after": after, "limit": limit})
    return [Lapsed(**row._mapping) for row in rows]
