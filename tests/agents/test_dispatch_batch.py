"""`dispatch` hands out a batch in one statement: the batch's own assignments count towards
load and capacity, agents another transaction holds are left out without waiting, and objects the
caller's session already holds see the outcome."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker
from app.db.models import AgentQueueEntry, Conversation, SupportAgent
from app.domain.agents.desk import dispatch
from tests.agents.test_timeouts_and_races import NewAgent, NewConversation

Client = AsyncTestClient[Any]


async def queue(
    client: Client, headers: dict[str, str], conversation_id: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/agents/queue", json={"conversation_id": conversation_id, **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def all_online(engine: AsyncEngine) -> uuid.UUID:
    """Every agent online at once (no dispatch runs); the organization's id."""
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE support_agents SET status = 'online'"))
        org_id = (await connection.execute(text("SELECT org_id FROM support_agents"))).scalar()
    return uuid.UUID(str(org_id))


async def holders(engine: AsyncEngine) -> dict[str, str | None]:
    """Conversation id -> the agent holding it (None: still waiting)."""
    async with engine.connect() as connection:
        rows = await connection.execute(
            text("SELECT id, assigned_agent_id FROM conversations ORDER BY id")
        )
        return {
            str(row.id): str(row.assigned_agent_id) if row.assigned_agent_id else None
            for row in rows
        }


async def test_one_batch_counts_its_own_assignments(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    billing = await new_agent(status="offline", skills=["billing"], max_concurrent_conversations=2)
    both = await new_agent(
        status="offline", skills=["billing", "tech"], max_concurrent_conversations=3
    )
    entries = [
        ("urgent", ["tech"]),
        ("high", []),
        ("high", []),
        ("normal", ["billing"]),
        ("low", []),
        ("low", ["tech"]),
    ]
    conversations = []
    for priority, skills in entries:
        conversation_id = await new_conversation()
        await queue(
            peer_client,
            admin_headers,
            conversation_id,
            priority=priority,
            required_skills=skills,
        )
        conversations.append(conversation_id)
    org_id = await all_online(clean_db)

    async with create_sessionmaker(clean_db).begin() as session:
        assert await dispatch(session, org_id, datetime.now(UTC)) == 5

    held = await holders(clean_db)
    # Five slots for six entries: the last one in queue order waits, both agents are full, and
    # each entry went to an agent with its skills.
    assert held[conversations[5]] is None
    assert held[conversations[0]] == both["id"]
    taken = [held[c] for c in conversations[:5]]
    assert taken.count(billing["id"]) == 2
    assert taken.count(both["id"]) == 3
    agents = (await peer_client.get("/api/v1/agents", headers=admin_headers)).json()["items"]
    assert {a["id"]: a["active_conversations"] for a in agents} == {
        billing["id"]: 2,
        both["id"]: 3,
    }


async def test_an_agent_held_elsewhere_is_left_out_without_waiting(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    held_agent = await new_agent(status="offline")
    free_agent = await new_agent(status="offline")
    conversations = [await new_conversation() for _ in range(4)]
    for conversation_id in conversations:
        await queue(peer_client, admin_headers, conversation_id)
    org_id = await all_online(clean_db)

    async with clean_db.connect() as other:
        # Another transaction holds one agent's row (a status change in progress, say).
        transaction = await other.begin()
        await other.execute(
            text("SELECT 1 FROM support_agents WHERE id = :id FOR UPDATE"),
            {"id": held_agent["id"]},
        )
        async with create_sessionmaker(clean_db).begin() as session:
            # Planned over both agents first (least loaded), then again without the held one.
            assert await dispatch(session, org_id, datetime.now(UTC)) == 4
        await transaction.rollback()

    held = await holders(clean_db)
    assert [held[c] for c in conversations] == [free_agent["id"]] * 4


async def test_an_entry_held_elsewhere_is_left_out_without_waiting(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    agent = await new_agent(status="offline", max_concurrent_conversations=1)
    first, second = await new_conversation(), await new_conversation()
    held_entry = await queue(peer_client, admin_headers, first, priority="urgent")
    await queue(peer_client, admin_headers, second, priority="low")
    org_id = await all_online(clean_db)

    async with clean_db.connect() as other:
        # Another transaction holds the first entry (an escalation of it in progress, say).
        transaction = await other.begin()
        await other.execute(
            text("SELECT 1 FROM agent_queue WHERE id = :id FOR UPDATE"), {"id": held_entry["id"]}
        )
        async with create_sessionmaker(clean_db).begin() as session:
            # Planned to the agent first, then planned again without the held entry.
            assert await dispatch(session, org_id, datetime.now(UTC)) == 1
        await transaction.rollback()

    held = await holders(clean_db)
    assert held == {first: None, second: agent["id"]}


async def test_queueing_with_an_agent_free_answers_with_the_assignment(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    agent = await new_agent()
    conversation_id = await new_conversation()
    entry = await queue(peer_client, admin_headers, conversation_id)
    # Taken at once, inside the same request: the answer reflects it (no place in the queue).
    assert entry["position"] == 0
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()
    assert conversation["status"] == "assigned"
    assert conversation["assigned_agent_id"] == agent["id"]
    waiting = (await peer_client.get("/api/v1/agents/queue", headers=admin_headers)).json()
    assert waiting["items"] == []


async def test_objects_the_session_holds_see_the_assignment(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    agent = await new_agent(status="offline")
    conversation_id = await new_conversation()
    await queue(peer_client, admin_headers, conversation_id)
    org_id = await all_online(clean_db)

    async with create_sessionmaker(clean_db).begin() as session:
        conversation = await session.get_one(Conversation, uuid.UUID(conversation_id))
        (entry,) = (
            await session.scalars(
                select(AgentQueueEntry).where(AgentQueueEntry.conversation_id == conversation.id)
            )
        ).all()
        held_agent = await session.get_one(SupportAgent, uuid.UUID(agent["id"]))
        assert (conversation.status, entry.status, held_agent.active_count) == (
            "queued",
            "waiting",
            0,
        )
        assert await dispatch(session, org_id, datetime.now(UTC)) == 1
        assert conversation.status == "assigned"
        assert str(conversation.assigned_agent_id) == agent["id"]
        assert entry.status == "assigned"
        assert held_agent.active_count == 1
