"""Timeout rules with a controlled clock, and assignment under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker
from app.domain.agents.desk import apply_timeouts, dispatch

Client = AsyncTestClient[Any]
NewConversation = Callable[..., Awaitable[str]]
NewAgent = Callable[..., Awaitable[dict[str, Any]]]
QUEUE_TIMEOUT = 300
RESPONSE_TIMEOUT = 120


async def timeouts_at(engine: AsyncEngine, now: datetime) -> None:
    async with create_sessionmaker(engine).begin() as session:
        await apply_timeouts(session, now, QUEUE_TIMEOUT, RESPONSE_TIMEOUT)


async def conversation(client: Client, headers: dict[str, str], id_: str) -> dict[str, Any]:
    return dict((await client.get(f"/api/v1/conversations/{id_}", headers=headers)).json())


async def test_waiting_entries_rise_one_step_per_queue_timeout(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    clean_db: AsyncEngine,
) -> None:
    conversation_id = await new_conversation()
    await peer_client.post(
        "/api/v1/agents/queue",
        json={"conversation_id": conversation_id, "priority": "low"},
        headers=admin_headers,
    )
    now = datetime.now(UTC)

    async def priority() -> str:
        queue = (await peer_client.get("/api/v1/agents/queue", headers=admin_headers)).json()
        return str(queue["items"][0]["priority"])

    await timeouts_at(clean_db, now + timedelta(seconds=QUEUE_TIMEOUT - 5))
    assert await priority() == "low"
    await timeouts_at(clean_db, now + timedelta(seconds=QUEUE_TIMEOUT + 1))
    assert await priority() == "normal"
    await timeouts_at(clean_db, now + timedelta(seconds=QUEUE_TIMEOUT + 2))
    assert await priority() == "normal"  # one step per timeout, not per check
    for step in (2, 3, 4):
        await timeouts_at(clean_db, now + timedelta(seconds=step * QUEUE_TIMEOUT + step))
    assert await priority() == "urgent"


async def test_unanswered_assignment_moves_on_and_never_back(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    first = await new_agent()
    conversation_id = await new_conversation()
    await peer_client.post(
        f"/api/v1/agents/assign/{conversation_id}",
        json={"agent_id": first["id"]},
        headers=admin_headers,
    )
    now = datetime.now(UTC)
    await timeouts_at(clean_db, now + timedelta(seconds=RESPONSE_TIMEOUT - 5))
    assert (await conversation(peer_client, admin_headers, conversation_id))[
        "assigned_agent_id"
    ] == first["id"]

    # Lapsed with nobody else online: it waits rather than going back to the same agent.
    await timeouts_at(clean_db, now + timedelta(seconds=RESPONSE_TIMEOUT + 1))
    waiting = await conversation(peer_client, admin_headers, conversation_id)
    assert waiting["status"] == "queued"
    assert waiting["assigned_agent_id"] is None
    agents = (await peer_client.get("/api/v1/agents", headers=admin_headers)).json()["items"]
    assert agents[0]["active_conversations"] == 0

    second = await new_agent()
    taken = await conversation(peer_client, admin_headers, conversation_id)
    assert taken["assigned_agent_id"] == second["id"]

    # Answered assignments never lapse.
    await peer_client.post(
        f"/api/v1/agents/response/{conversation_id}",
        json={"agent_id": second["id"], "message": "hello"},
        headers=admin_headers,
    )
    await timeouts_at(clean_db, now + timedelta(hours=5))
    assert (await conversation(peer_client, admin_headers, conversation_id))[
        "assigned_agent_id"
    ] == second["id"]


async def test_going_away_gives_back_unanswered_conversations(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    agent = await new_agent()
    answered, unanswered = await new_conversation(), await new_conversation()
    for conversation_id in (answered, unanswered):
        await peer_client.post(
            f"/api/v1/agents/assign/{conversation_id}",
            json={"agent_id": agent["id"]},
            headers=admin_headers,
        )
    await peer_client.post(
        f"/api/v1/agents/response/{answered}",
        json={"agent_id": agent["id"], "message": "hi"},
        headers=admin_headers,
    )
    away = await peer_client.put(
        f"/api/v1/agents/{agent['id']}/status", json={"status": "away"}, headers=admin_headers
    )
    assert away.json()["active_conversations"] == 1
    assert (await conversation(peer_client, admin_headers, answered))["status"] == "assigned"
    assert (await conversation(peer_client, admin_headers, unanswered))["status"] == "queued"


async def test_parallel_dispatchers_never_double_assign_or_overfill(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    for capacity in (1, 2, 3):
        await new_agent(status="offline", max_concurrent_conversations=capacity)
    conversations = [await new_conversation() for _ in range(12)]
    for conversation_id in conversations:
        await peer_client.post(
            "/api/v1/agents/queue", json={"conversation_id": conversation_id}, headers=admin_headers
        )
    async with clean_db.begin() as connection:
        await connection.execute(text("UPDATE support_agents SET status = 'online'"))
        org_id = (await connection.execute(text("SELECT org_id FROM support_agents"))).first()
    assert org_id is not None
    sessionmaker = create_sessionmaker(clean_db)

    async def dispatcher() -> int:
        done = 0
        for _ in range(5):
            try:
                async with sessionmaker.begin() as session:
                    done += await dispatch(
                        session, uuid.UUID(str(org_id[0])), datetime.now(UTC), limit=2
                    )
            except Exception as exc:  # a lost race is rolled back whole, never half-applied
                assert "unique" in str(exc).lower() or "could not serialize" in str(exc).lower()
        return done

    results = await asyncio.gather(*(dispatcher() for _ in range(8)))
    async with clean_db.connect() as connection:
        doubles = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM (SELECT conversation_id FROM agent_assignments "
                    "WHERE ended_at IS NULL GROUP BY conversation_id HAVING count(*) > 1) d"
                )
            )
        ).scalar()
        over = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM support_agents a WHERE (SELECT count(*) FROM "
                    "agent_assignments s WHERE s.agent_id = a.id AND s.ended_at IS NULL) "
                    "> a.max_concurrent_conversations OR a.active_count <> (SELECT count(*) "
                    "FROM agent_assignments s WHERE s.agent_id = a.id AND s.ended_at IS NULL)"
                )
            )
        ).scalar()
        active = (
            await connection.execute(
                text("SELECT count(*) FROM agent_assignments WHERE ended_at IS NULL")
            )
        ).scalar()
    assert doubles == 0
    assert over == 0
    assert active == 6 == sum(results)


async def test_the_sweep_serves_a_conversation_no_event_dispatched(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    """An agent freed without an event (as when a dispatch found it held by another
    transaction) is found by the periodic sweep, long before any queue timeout."""
    conversation_id = await new_conversation()
    agent = await new_agent(status="offline")
    await peer_client.post(
        "/api/v1/agents/queue", json={"conversation_id": conversation_id}, headers=admin_headers
    )
    async with clean_db.begin() as connection:
        await connection.execute(
            text("UPDATE support_agents SET status = 'online' WHERE id = :id"), {"id": agent["id"]}
        )
    assert (await conversation(peer_client, admin_headers, conversation_id))["status"] != "assigned"

    await timeouts_at(clean_db, datetime.now(UTC))
    assigned = await conversation(peer_client, admin_headers, conversation_id)
    assert assigned["status"] == "assigned"
    assert assigned["assigned_agent_id"] == agent["id"]
