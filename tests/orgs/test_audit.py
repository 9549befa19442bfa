from __future__ import annotations

from typing import Any

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Client = AsyncTestClient[Litestar]


async def _audit_rows(engine: AsyncEngine, table: str) -> list[dict[str, object]]:
    async with engine.connect() as connection:
        result = await connection.execute(
            text(
                "SELECT operation, old_values, new_values, user_id, org_id::text AS org_id "
                "FROM audit_logs WHERE table_name = :table ORDER BY id"
            ),
            {"table": table},
        )
        return [dict(row._mapping) for row in result]


async def test_api_updates_are_audited_with_the_acting_key(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    org = (await client.get("/api/v1/organization", headers=admin_headers)).json()
    keys = (await client.get("/api/v1/api-keys", headers=admin_headers)).json()["items"]
    acting_key_id = keys[0]["id"]

    renamed = await client.patch(
        "/api/v1/organization", json={"name": "acme"}, headers=admin_headers
    )
    assert renamed.status_code == 200
    created = await client.post("/api/v1/api-keys", json={"name": "n"}, headers=admin_headers)
    await client.delete(f"/api/v1/api-keys/{created.json()['id']}", headers=admin_headers)

    updates = [
        r for r in await _audit_rows(clean_db, "organizations") if r["operation"] == "UPDATE"
    ]
    assert len(updates) == 1
    assert updates[0]["old_values"]["name"] == "default"  # type: ignore[index]
    assert updates[0]["new_values"]["name"] == "acme"  # type: ignore[index]
    assert updates[0]["user_id"] == acting_key_id
    assert updates[0]["org_id"] == org["id"]

    key_rows = await _audit_rows(clean_db, "api_keys")
    operations = [r["operation"] for r in key_rows]
    assert operations == ["INSERT", "INSERT", "UPDATE"]  # bootstrap key, new key, revocation
    assert key_rows[1]["user_id"] == acting_key_id
    assert key_rows[0]["user_id"] is None  # the bootstrap ran without an acting key
    assert all(r["org_id"] == org["id"] for r in key_rows)


async def test_noop_update_writes_no_audit_row(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    before = len(await _audit_rows(clean_db, "organizations"))
    async with clean_db.begin() as connection:
        await connection.execute(text("UPDATE organizations SET name = name"))
    assert len(await _audit_rows(clean_db, "organizations")) == before


async def test_actor_setting_does_not_leak_to_the_next_transaction(database_url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.core.db import create_sessionmaker, set_actor

    # One pooled connection, so the second transaction reuses the first one's connection.
    engine = create_async_engine(database_url, pool_size=1, max_overflow=0)
    try:
        sessionmaker = create_sessionmaker(engine)
        async with sessionmaker.begin() as session:
            await set_actor(session, "key-1", None)
            inside = (await session.execute(text("SELECT current_setting('app.user_id')"))).scalar()
            assert inside == "key-1"
        async with sessionmaker.begin() as session:
            after = await session.execute(text("SELECT current_setting('app.user_id', true)"))
            assert not after.scalar()
    finally:
        await engine.dispose()


async def test_counters_the_database_keeps_are_not_audited_as_changes(
    clean_db: AsyncEngine,
) -> None:
    async with clean_db.begin() as connection:
        conversation = (
            await connection.execute(
                text(
                    "WITH org AS (INSERT INTO organizations (name) VALUES ('o') RETURNING id), "
                    "integration AS (INSERT INTO integrations (org_id, name, type) "
                    "SELECT id, 'site', 'generic' FROM org RETURNING id, org_id) "
                    "INSERT INTO conversations (org_id, integration_id, thread_key, "
                    "contact_external_id) SELECT org_id, id, 't', 't' FROM integration "
                    "RETURNING id"
                )
            )
        ).scalar_one()
    async with clean_db.begin() as connection:
        # update_conversation_metrics moves message_count and last_message_at.
        await connection.execute(
            text(
                "INSERT INTO messages (org_id, conversation_id, role, content) "
                "SELECT org_id, id, 'user', 'hi' FROM conversations"
            )
        )
    assert [r["operation"] for r in await _audit_rows(clean_db, "conversations")] == ["INSERT"]

    async with clean_db.begin() as connection:
        await connection.execute(text("UPDATE conversations SET status = 'queued'"))
    inserted, updated = await _audit_rows(clean_db, "conversations")
    # An insert row names the record; its values are the row's until a change records them.
    assert (inserted["old_values"], inserted["new_values"]) == (None, None)
    assert inserted["org_id"] is not None
    old: Any = updated["old_values"]
    new: Any = updated["new_values"]
    assert updated["operation"] == "UPDATE"
    assert (old["status"], new["status"]) == ("bot", "queued")
    assert "message_count" not in new
    assert new["id"] == str(conversation)
