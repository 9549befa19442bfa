"""Database engine, the one session dependency, and the acting-principal context for triggers.

The session dependency commits after the handler returns and before the response is sent, so a
failed commit becomes an HTTP error (mapped by `app.core.errors`) instead of a silent 201.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, TypeAlias

from litestar.di import NamedDependency
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

if TYPE_CHECKING:
    from litestar.datastructures import State

    from app.config import Settings


# What a handler declares to receive the request's session.
DbSession: TypeAlias = NamedDependency[AsyncSession]


def create_engine(settings: Settings, url: str) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=False,
        pool_recycle=1800,
        # Statement and connect timeouts keep a sick database from holding requests forever.
        connect_args={"timeout": 5, "command_timeout": 30, "server_settings": _server_settings()},
        # A failed statement's message would otherwise quote its parameters (keys, secrets,
        # users' text) into the log line of the error.
        hide_parameters=True,
    )


def _server_settings() -> dict[str, str]:
    return {"application_name": "botlyne", "idle_in_transaction_session_timeout": "60000"}


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


async def provide_db_session(state: State) -> AsyncGenerator[AsyncSession, None]:
    """Session per request: commit when the handler succeeds, roll back when anything raises."""
    sessionmaker: async_sessionmaker[AsyncSession] = state.sessionmaker
    async with sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


async def set_actor(session: AsyncSession, user_id: str | None, org_id: str | None) -> None:
    """Tell the audit trigger who acts, for this transaction only (`is_local` = true).

    A session-level SET would stay on the pooled connection and be attributed to the next
    request that borrows it.
    """
    await session.execute(
        text(
            "SELECT set_config('app.user_id', :user_id, true), set_config('app.org_id', :org, true)"
        ),
        {"user_id": user_id or "", "org": org_id or ""},
    )
