"""What must hold across replicas: one agent per conversation, one maintenance pass at a time,
one send per delivery. Real processes (see conftest.py); every figure checked is a count. (One
rate limit for all replicas: tests/integrations/test_replicas.py; events raised on one replica
reaching a stream on another: tests/events/test_two_servers.py.)"""

from __future__ import annotations

import ast
import asyncio
from collections import Counter
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.db.entities import MAINTENANCE_LOCK_ID
from tests.helpers import signed
from tests.replicas.conftest import Cluster, Org, eventually
from tests.stubs.evolution import messages_upsert_payload


async def scalar(engine: AsyncEngine, statement: str, **params: Any) -> Any:
    async with engine.connect() as connection:
        return (await connection.execute(text(statement), params)).scalar()


async def new_integration(
    http: httpx.AsyncClient, cluster: Cluster, org: Org, **fields: Any
) -> dict[str, Any]:
    response = await http.post(
        f"{cluster.base(0)}/api/v1/integrations",
        json={"name": "site", "type": "generic", **fields},
        headers=org.admin,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def deliver(
    http: httpx.AsyncClient, base: str, integration: dict[str, Any], payload: Any
) -> int:
    body, headers = signed(integration["secret"], payload)
    response = await http.post(
        f"{base}/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )
    return response.status_code


AGENTS = 3
CAPACITY = 3
CONVERSATIONS = 16
# Agents' slots in use, each conversation's assignments and queue entries, checked together.
INVARIANTS = """
SELECT json_build_object(
  'double_active', (SELECT count(*) FROM (SELECT conversation_id FROM agent_assignments
                    WHERE ended_at IS NULL GROUP BY conversation_id HAVING count(*) > 1) d),
  'double_waiting', (SELECT count(*) FROM (SELECT conversation_id FROM agent_queue
                     WHERE status = 'waiting' GROUP BY conversation_id HAVING count(*) > 1) w),
  'over_capacity', (SELECT count(*) FROM support_agents s
                    WHERE s.active_count > s.max_concurrent_conversations
                       OR s.active_count <> (SELECT count(*) FROM agent_assignments a
                                             WHERE a.agent_id = s.id AND a.ended_at IS NULL)),
  'assigned_and_waiting', (SELECT count(*) FROM agent_assignments a JOIN agent_queue q
                           USING (conversation_id)
                           WHERE a.ended_at IS NULL AND q.status = 'waiting'),
  'mismatched_status', (SELECT count(*) FROM conversations c
                        WHERE (c.status = 'assigned') <> EXISTS (
                          SELECT 1 FROM agent_assignments a
                          WHERE a.conversation_id = c.id AND a.ended_at IS NULL
                            AND a.agent_id = c.assigned_agent_id)),
  'active', (SELECT count(*) FROM agent_assignments WHERE ended_at IS NULL),
  'waiting', (SELECT count(*) FROM agent_queue WHERE status = 'waiting')
)
"""


async def test_no_conversation_is_assigned_twice(
    cluster: Cluster, org: Org, http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """Queueing, agents coming online, automatic assignment and escalation, each sent to two
    replicas at the same moment, while every process's queue-timeout loop dispatches too."""
    integration = await new_integration(http, cluster, org)
    senders = [f"customer-{n}" for n in range(CONVERSATIONS)]
    statuses = await asyncio.gather(
        *(
            deliver(
                http,
                cluster.base(n),
                integration,
                {"message": {"body": "Where is it?"}, "sender": {"id": sender}},
            )
            for n, sender in enumerate(senders)
        )
    )
    assert set(statuses) == {202}
    listed = await http.get(
        f"{cluster.base(1)}/api/v1/conversations", params={"limit": 100}, headers=org.admin
    )
    conversations = [item["id"] for item in listed.json()["items"]]
    assert len(conversations) == CONVERSATIONS
    agents = []
    for number in range(AGENTS):
        created = await http.post(
            f"{cluster.base(number)}/api/v1/agents",
            json={
                "name": f"Agent {number}",
                "email": f"agent{number}@example.com",
                "max_concurrent_conversations": CAPACITY,
            },
            headers=org.admin,
        )
        assert created.status_code == 201, created.text
        agents.append(created.json()["id"])
    seen: Counter[int] = Counter()

    async def twice(method: str, path: str, body: Any = None) -> None:
        """The same request to both replicas at once."""
        responses = await asyncio.gather(
            *(
                http.request(method, f"{cluster.base(side)}{path}", json=body, headers=org.admin)
                for side in range(2)
            )
        )
        for response in responses:
            seen[response.status_code] += 1
            assert response.status_code < 500, response.text

    await asyncio.gather(
        *(twice("POST", "/api/v1/agents/queue", {"conversation_id": c}) for c in conversations)
    )
    # Agents come online (each dispatches) while both replicas also assign automatically.
    await asyncio.gather(
        *(twice("PUT", f"/api/v1/agents/{a}/status", {"status": "online"}) for a in agents),
        *(twice("POST", f"/api/v1/agents/assign/{c}", {}) for c in conversations),
    )

    last: dict[str, int] = {}

    async def settled() -> dict[str, int] | None:
        last.update(await scalar(engine, INVARIANTS))
        return dict(last) if last["active"] == AGENTS * CAPACITY else None

    first = await eventually(settled, "every slot taken", state=last)
    assert first["waiting"] == CONVERSATIONS - AGENTS * CAPACITY, first
    held = await scalar(
        engine,
        "SELECT array_agg(conversation_id::text) FROM agent_assignments WHERE ended_at IS NULL",
    )
    # Every assigned conversation escalated on both replicas at once: it goes back to the queue
    # once, and the desk hands it to another agent.
    await asyncio.gather(
        *(
            twice("POST", f"/api/v1/agents/escalate/{c}", {"reason": "needs a specialist"})
            for c in held
        )
    )
    second = await eventually(settled, "slots taken again after the escalations", state=last)
    assert {key: value for key, value in second.items() if key not in ("active", "waiting")} == {
        "double_active": 0,
        "double_waiting": 0,
        "over_capacity": 0,
        "assigned_and_waiting": 0,
        "mismatched_status": 0,
    }, second
    assert second["active"] + second["waiting"] == CONVERSATIONS
    # Both replicas answered the duplicated queue requests: one queued it, the other refused.
    assert seen[409] > 0 and seen[201] > 0, seen
    cluster.check_alive()


DELIVERIES = 600


async def test_each_delivery_is_sent_once(
    cluster: Cluster, org: Org, http: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    """An outbox of 600 messages drained by the workers of all three processes at once."""
    evolution = cluster.evolution
    evolution.reset()
    integration = await new_integration(
        http, cluster, org, type="evolution", config={"instance": "main"}
    )
    status = await deliver(
        http,
        cluster.base(0),
        integration,
        messages_upsert_payload("main", "5511912340000@s.whatsapp.net", "hi"),
    )
    assert status == 202
    async with engine.begin() as connection:
        await connection.execute(
            text(
                """
WITH outbound AS (
    INSERT INTO messages (org_id, conversation_id, role, content, delivery_status)
    SELECT c.org_id, c.id, 'agent', 'delivery ' || n, 'pending'
    FROM conversations c, generate_series(1, :count) AS n
    WHERE c.org_id = :org
    RETURNING id, org_id, conversation_id
)
INSERT INTO jobs (kind, org_id, conversation_id, message_id)
SELECT 'deliver', org_id, conversation_id, id FROM outbound
"""
            ),
            {"count": DELIVERIES, "org": org.id},
        )

    async def drained() -> bool:
        pending = await scalar(
            engine,
            "SELECT count(*) FROM messages WHERE delivery_status = 'pending' AND org_id = :org",
            org=org.id,
        )
        return pending == 0

    await eventually(drained, "the outbox drained", timeout=120)
    counts = Counter(message.text for message in evolution.sent)
    seeded = {f"delivery {n}" for n in range(1, DELIVERIES + 1)}
    assert seeded <= set(counts), len(seeded - set(counts))
    assert set(counts.values()) == {1}, counts.most_common(3)
    sent_ok = await scalar(
        engine,
        "SELECT count(*) FROM messages WHERE delivery_status = 'sent' AND org_id = :org "
        "AND content LIKE 'delivery %'",
        org=org.id,
    )
    assert sent_ok == DELIVERIES


ABANDONED = 2500  # three batches of cleanup_abandoned_conversations (1000)
EXPIRED_EVENTS = 12000  # three batches of purge_integration_events (5000)


def maintenance_summaries(cluster: Cluster) -> list[list[dict[str, Any]]]:
    """Per process, every maintenance run it did and logged, parsed from its log lines."""
    return [
        [
            ast.literal_eval(message.removeprefix("maintenance: "))
            for message in cluster.messages(process)
            if message.startswith("maintenance: {")
        ]
        for process in cluster.processes
    ]


async def test_maintenance_passes_run_one_at_a_time(
    cluster: Cluster, org: Org, engine: AsyncEngine
) -> None:
    """Every process schedules maintenance every 0.3 s; a pass runs only under the advisory lock,
    so while someone holds it nobody works, and afterwards each piece of work is done once."""
    async with engine.connect() as holder:
        # The lock a pass takes, held by "another session" (an operator's psql, a CronJob).
        await holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MAINTENANCE_LOCK_ID})
        await holder.commit()
        async with engine.begin() as connection:
            integration = (
                await connection.execute(
                    text(
                        "INSERT INTO integrations (org_id, name, type) "
                        "VALUES (:org, 'old', 'generic') RETURNING id"
                    ),
                    {"org": org.id},
                )
            ).scalar_one()
            await connection.execute(
                text(
                    "INSERT INTO conversations (org_id, integration_id, thread_key, "
                    "contact_external_id, last_message_at) "
                    "SELECT :org, :integration, 'idle-' || n, 'idle-' || n, "
                    "now() - interval '2 days' FROM generate_series(1, :count) AS n"
                ),
                {"org": org.id, "integration": integration, "count": ABANDONED},
            )
            await connection.execute(
                text(
                    "INSERT INTO integration_events (outcome, status_code, reason, received_at) "
                    "SELECT 'rejected', 401, 'invalid_signature', now() - interval '40 days' "
                    "FROM generate_series(1, :count)"
                ),
                {"count": EXPIRED_EVENTS},
            )
        skips_before = [
            cluster.messages(process).count("maintenance: another session is running a pass")
            for process in cluster.processes
        ]
        runs_before = [len(runs) for runs in maintenance_summaries(cluster)]

        async def all_stood_back() -> bool:
            return all(
                cluster.messages(process).count("maintenance: another session is running a pass")
                > before
                for process, before in zip(cluster.processes, skips_before, strict=True)
            )

        await eventually(all_stood_back, "every process found the pass lock taken")
        untouched = await scalar(
            engine,
            "SELECT (SELECT count(*) FROM conversations WHERE status <> 'resolved' "
            "AND org_id = :org) + (SELECT count(*) FROM integration_events "
            "WHERE received_at < now() - interval '30 days')",
            org=org.id,
        )
        assert untouched == ABANDONED + EXPIRED_EVENTS
        await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MAINTENANCE_LOCK_ID})
        await holder.commit()

    def done_after() -> list[dict[str, Any]]:
        return [
            run
            for runs, before in zip(maintenance_summaries(cluster), runs_before, strict=True)
            for run in runs[before:]
        ]

    async def all_done() -> bool:
        runs = done_after()
        return (
            sum(run["abandoned_conversations"] for run in runs) >= ABANDONED
            and sum(run["integration_events_deleted"] for run in runs) >= EXPIRED_EVENTS
        )

    await eventually(all_done, "the seeded work done")
    runs = done_after()
    assert sum(run["abandoned_conversations"] for run in runs) == ABANDONED
    assert sum(run["integration_events_deleted"] for run in runs) == EXPIRED_EVENTS
    # Each conversation was resolved by exactly one pass: one audited change each.
    resolved = await scalar(
        engine,
        "SELECT count(*) FROM audit_logs WHERE table_name = 'conversations' AND org_id = :org "
        "AND new_values ->> 'resolution_reason' = 'abandoned'",
        org=org.id,
    )
    assert resolved == ABANDONED
    expired = "SELECT count(*) FROM integration_events WHERE received_at < now() - interval '1 day'"
    assert await scalar(engine, expired) == 0
