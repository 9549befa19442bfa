"""Alembic owns the whole schema: it builds it, removes it cleanly, and matches the models."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url

from app.core.migrations import alembic_config


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    server = make_url(database_url)
    name = f"botlyne_mig_{uuid.uuid4().hex[:8]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    asyncio.run(run(f'DROP DATABASE "{name}" WITH (FORCE)'))


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    )


async def _objects(url: str) -> dict[str, list[str]]:
    connection = await _connect(url)
    try:
        tables = await connection.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        )
        functions = await connection.fetch(
            "SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace ORDER BY 1"
        )
        triggers = await connection.fetch(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1"
        )
    finally:
        await connection.close()
    return {
        "tables": [r[0] for r in tables],
        "functions": [r[0] for r in functions],
        "triggers": [r[0] for r in triggers],
    }


def test_upgrade_downgrade_upgrade_and_check(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    built = asyncio.run(_objects(empty_database))
    assert {"organizations", "api_keys", "audit_logs"} <= set(built["tables"])
    assert "log_audit_event" in built["functions"]
    assert "audit_api_keys_update" in built["triggers"]
    command.check(config)

    command.downgrade(config, "base")
    assert asyncio.run(_objects(empty_database)) == {
        "tables": ["alembic_version"],
        "functions": [],
        "triggers": [],
    }

    command.upgrade(config, "head")
    assert asyncio.run(_objects(empty_database)) == built
    command.check(config)


async def _delete_an_organization(url: str) -> dict[str, int]:
    connection = await _connect(url)
    try:
        org = await connection.fetchval(
            "INSERT INTO organizations (name) VALUES ('gone') RETURNING id"
        )
        integration = await connection.fetchval(
            "INSERT INTO integrations (org_id, name, type) "
            "VALUES ($1, 'i', 'generic') RETURNING id",
            org,
        )
        conversation = await connection.fetchval(
            "INSERT INTO conversations (org_id, integration_id, thread_key, contact_external_id) "
            "VALUES ($1, $2, 't', 't') RETURNING id",
            org,
            integration,
        )
        message = await connection.fetchval(
            "INSERT INTO messages (org_id, conversation_id, role, content) "
            "VALUES ($1, $2, 'user', 'hi') RETURNING id",
            org,
            conversation,
        )
        await connection.execute(
            "INSERT INTO jobs (kind, org_id, conversation_id, message_id) "
            "VALUES ('bot_reply', $1, $2, $3)",
            org,
            conversation,
            message,
        )
        await connection.execute("DELETE FROM organizations WHERE id = $1", org)
        row = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM conversations WHERE org_id = $1) AS conversations, "
            "(SELECT count(*) FROM messages WHERE org_id = $1) AS messages, "
            "(SELECT count(*) FROM jobs WHERE org_id = $1) AS jobs",
            org,
        )
        return dict(row)
    finally:
        await connection.close()


def test_an_organization_takes_its_messages_and_jobs_with_it(empty_database: str) -> None:
    # Messages and jobs have no key to the organization of their own (0007): the cascade runs
    # through their conversation and message.
    command.upgrade(alembic_config(empty_database), "head")
    left = asyncio.run(_delete_an_organization(empty_database))
    assert left == {"conversations": 0, "messages": 0, "jobs": 0}
