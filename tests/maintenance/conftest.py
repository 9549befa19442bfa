"""Fixtures of the maintenance tests: rows written straight into the database, then aged by
moving their timestamps into the past, and the settings' retention policy."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.maintenance.service import RetentionPolicy
from tests.conftest import make_settings


class Rows:
    """Inserts through plain SQL (the triggers run as for any writer) and ages rows."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.org_id: uuid.UUID | None = None
        self.integration_id: uuid.UUID | None = None

    async def sql(self, statement: str, **params: Any) -> list[Any]:
        async with self.engine.begin() as connection:
            result = await connection.execute(text(statement), params)
            return [tuple(row) for row in result] if result.returns_rows else []

    async def scalar(self, statement: str, **params: Any) -> Any:
        async with self.engine.begin() as connection:
            return (await connection.execute(text(statement), params)).scalar()

    async def setup(self) -> None:
        self.org_id = await self.scalar(
            "INSERT INTO organizations (name) VALUES ('maintenance') RETURNING id"
        )
        self.integration_id = await self.scalar(
            "INSERT INTO integrations (org_id, name, type) VALUES (:org, 'site', 'generic') "
            "RETURNING id",
            org=self.org_id,
        )

    async def conversation(
        self,
        *,
        idle: timedelta = timedelta(0),
        status: str = "bot",
        resolved_ago: timedelta | None = None,
        messages: int = 0,
    ) -> uuid.UUID:
        """A conversation whose last message was `idle` ago, resolved `resolved_ago` ago."""
        conversation_id = await self.scalar(
            "INSERT INTO conversations (org_id, integration_id, thread_key, contact_external_id) "
            "VALUES (:org, :integration, :key, :key) RETURNING id",
            org=self.org_id,
            integration=self.integration_id,
            key=uuid.uuid4().hex,
        )
        if messages:
            await self.messages(conversation_id, messages)
        await self.sql(
            "UPDATE conversations SET status = CAST(:status AS text), "
            "last_message_at = now() - CAST(:idle AS interval), "
            "resolved_at = now() - CAST(:resolved_ago AS interval), "
            "resolution_reason = CASE WHEN CAST(:status AS text) = 'resolved' THEN 'user' END "
            "WHERE id = :id",
            id=conversation_id,
            status=status,
            idle=idle,
            resolved_ago=resolved_ago,
        )
        return conversation_id

    async def messages(
        self, conversation_id: uuid.UUID, count: int, age: timedelta = timedelta(0)
    ) -> list[uuid.UUID]:
        """`count` messages of the conversation, each with a delivered bot_reply job."""
        rows = await self.sql(
            "WITH m AS (INSERT INTO messages (org_id, conversation_id, role, content, created_at) "
            "SELECT :org, :conversation, 'user', 'message ' || n, now() - CAST(:age AS interval) "
            "FROM generate_series(1, :count) AS n RETURNING id) "
            "INSERT INTO jobs (kind, org_id, conversation_id, message_id, status) "
            "SELECT 'bot_reply', :org, :conversation, id, 'done' FROM m RETURNING message_id",
            org=self.org_id,
            conversation=conversation_id,
            count=count,
            age=age,
        )
        return [row[0] for row in rows]

    async def agent(self) -> uuid.UUID:
        agent_id: uuid.UUID = await self.scalar(
            "INSERT INTO support_agents (org_id, name, email, status) "
            "VALUES (:org, 'Ana', :email, 'online') RETURNING id",
            org=self.org_id,
            email=f"{uuid.uuid4().hex}@example.com",
        )
        return agent_id

    async def assign(self, conversation_id: uuid.UUID, agent_id: uuid.UUID) -> uuid.UUID:
        """An active assignment, with the agent's slot taken as the desk takes it."""
        await self.sql(
            "UPDATE support_agents SET active_count = active_count + 1 WHERE id = :agent",
            agent=agent_id,
        )
        assignment_id: uuid.UUID = await self.scalar(
            "INSERT INTO agent_assignments (org_id, conversation_id, agent_id, assignment_type) "
            "VALUES (:org, :conversation, :agent, 'manual') RETURNING id",
            org=self.org_id,
            conversation=conversation_id,
            agent=agent_id,
        )
        return assignment_id

    async def enqueue(self, conversation_id: uuid.UUID) -> uuid.UUID:
        entry_id: uuid.UUID = await self.scalar(
            "INSERT INTO agent_queue (org_id, conversation_id) VALUES (:org, :conversation) "
            "RETURNING id",
            org=self.org_id,
            conversation=conversation_id,
        )
        return entry_id

    async def event(self, age: timedelta) -> None:
        await self.sql(
            "INSERT INTO integration_events (org_id, integration_id, outcome, status_code, "
            "reason, received_at) VALUES (:org, :integration, 'rejected', 401, "
            "'invalid_signature', now() - CAST(:age AS interval))",
            org=self.org_id,
            integration=self.integration_id,
            age=age,
        )


@pytest.fixture
async def rows(clean_db: AsyncEngine) -> Rows:
    seeded = Rows(clean_db)
    await seeded.setup()
    return seeded


@pytest.fixture
def policy(database_url: str) -> RetentionPolicy:
    """What the settings' defaults make: 24 h, 7 days, 90 days, 30 days."""
    return RetentionPolicy.from_settings(make_settings(database_url))
