"""Waiting entries nobody can take must not hide the ones behind them.

Found by `bench/assignment_stress.py`: with one assigner, the queue stopped being served while
thousands of entries had an eligible agent with free slots, because every `dispatch` call looked
at the same first `DISPATCH_BATCH` waiting entries (highest priority, oldest) and all of those
needed a skill no available agent had.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker
from app.domain.agents.desk import DISPATCH_BATCH, dispatch
from tests.agents.test_timeouts_and_races import NewAgent, NewConversation

Client = AsyncTestClient[Any]


async def test_unassignable_entries_do_not_block_the_queue(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    blocked = [await new_conversation() for _ in range(DISPATCH_BATCH)]
    behind = await new_conversation()
    for conversation_id in blocked:
        response = await peer_client.post(
            "/api/v1/agents/queue",
            json={
                "conversation_id": conversation_id,
                "priority": "urgent",
                "required_skills": ["vip"],
            },
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
    response = await peer_client.post(
        "/api/v1/agents/queue",
        json={"conversation_id": behind, "priority": "low"},
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    # An agent who can take the last entry (and nothing else) comes online.
    await new_agent(status="online", skills=["billing"])
    async with clean_db.connect() as connection:
        org_id = (await connection.execute(text("SELECT org_id FROM support_agents"))).scalar()
    async with create_sessionmaker(clean_db).begin() as session:
        await dispatch(session, uuid.UUID(str(org_id)), datetime.now(UTC))

    conversation = await peer_client.get(f"/api/v1/conversations/{behind}", headers=admin_headers)
    assert conversation.json()["status"] == "assigned"
