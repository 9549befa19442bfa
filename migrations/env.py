"""Alembic environment: async engine online, plain SQL offline, functions and triggers included.

The URL is, in order: a connection handed over by the caller (`config.attributes["connection"]`),
the `sqlalchemy.url` option set by `app.core.migrations`, or the settings from the environment
(starting the embedded PostgreSQL when `DATABASE_URL` is unset), so a bare `alembic upgrade head`
from the repository root works like `botlyne db upgrade`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from alembic_utils.replaceable_entity import register_entities
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from app.db.base import Base
from app.db.entities import ENTITIES
from app.db.models import *  # noqa: F403  (every model must be on the metadata)

config = context.config
target_metadata = Base.metadata
register_entities(ENTITIES)

# Serialises migrations when several replicas start at once; any constant shared by all of them.
MIGRATION_LOCK_ID = 7_314_002


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    # Partitions of audit_logs are created and dropped by SQL functions at run time.
    return not (
        type_ == "table" and reflected and name is not None and name.startswith("audit_logs_")
    )


def _url() -> str:
    url = config.get_main_option("sqlalchemy.url")
    if url:
        return url
    from app.config import load_settings
    from app.core.migrations import database_url_for

    return database_url_for(load_settings())


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=include_object,
        compare_type=True,
        transaction_per_migration=False,
    )


def _run_online(connection: Connection) -> None:
    _configure(connection)
    with context.begin_transaction():
        connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_online)
    finally:
        await engine.dispose()


def run_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url") or "postgresql://",
        dialect_name="postgresql",
        target_metadata=target_metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_offline()
elif (connection := config.attributes.get("connection")) is not None:
    _run_online(connection)
else:
    asyncio.run(_run_async())
