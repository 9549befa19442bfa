"""Test fixtures: a real PostgreSQL with the migrations applied once per session, a fresh app per
test, and the database emptied after each test that touched it.

`DATABASE_URL` (any database on the server) selects the server; the tests create and later drop
a database of their own on it. Unset, the embedded PostgreSQL is used (kept in `.botlyne/test`).
`REDIS_URL` enables the tests that need Redis; unset, they skip, and with
`BOTLYNE_FORBID_SKIPS=1` (CI) any skip fails the run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from loguru import logger
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.asgi import create_app
from app.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import embedded_database_url
from app.core.migrations import upgrade
from tests.helpers import PeerOverride
from tests.security import leaks

ROOT = Path(__file__).resolve().parents[1]
ADMIN_KEY = "bl_test-admin-key-0123456789abcdefghij"


def _server_url() -> str:
    configured = os.environ.get("DATABASE_URL")
    if configured:
        return str(make_url(configured).set(drivername="postgresql+asyncpg"))
    return embedded_database_url(ROOT / ".botlyne" / "test")


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A fresh database with every migration applied, dropped at the end of the session."""
    import asyncio

    server = make_url(_server_url())
    name = f"botlyne_test_{uuid.uuid4().hex[:10]}"
    url = server.set(database=name).render_as_string(hide_password=False)
    admin = _libpq(server.render_as_string(hide_password=False))

    async def admin_sql(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(admin_sql(f'CREATE DATABASE "{name}"'))
    upgrade(url)
    yield url
    asyncio.run(admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("needs REDIS_URL")
    return url


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "auto_migrate": False,
        "bootstrap_admin_key": ADMIN_KEY,
        "log_level": "DEBUG",
        # Tests that exercise the workers turn them on; others keep the database to themselves.
        "run_workers": False,
        **overrides,
    }
    settings = Settings(**values)
    leaks.SCAN.register_settings(settings)
    return settings


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url)


async def _truncate_all(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        tables = await connection.exec_driver_sql(
            "SELECT string_agg(format('%I', tablename), ', ') FROM pg_tables "
            "WHERE schemaname = 'public' AND tablename <> 'alembic_version' "
            "AND tablename NOT LIKE 'audit_logs_%'"
        )
        names = tables.scalar_one()
        if names:
            await connection.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(make_settings(database_url), database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncIterator[AsyncEngine]:
    """The shared engine; every table is emptied after the test."""
    yield engine
    await _truncate_all(engine)


@pytest.fixture
async def db_session(clean_db: AsyncEngine) -> AsyncIterator[AsyncSession]:
    async with create_sessionmaker(clean_db)() as session:
        yield session


@pytest.fixture
def app(settings: Settings) -> Litestar:
    return create_app(settings)


@pytest.fixture
async def client(app: Litestar, clean_db: AsyncEngine) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=app) as client:
        yield client


@pytest.fixture
async def peer_client(app: Litestar, clean_db: AsyncEngine) -> AsyncIterator[AsyncTestClient[Any]]:
    """A client whose requests come from the address in their `X-Test-Peer` header."""
    async with AsyncTestClient(app=PeerOverride(app)) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
def log_records() -> Iterator[list[Any]]:
    """Every loguru record (DEBUG and up) logged while the test runs."""
    records: list[Any] = []
    sink = logger.add(lambda message: records.append(message.record), level="DEBUG")
    yield records
    logger.remove(sink)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def pytest_configure(config: pytest.Config) -> None:
    # Every log record of the run is kept, to be searched for secrets at the end.
    leaks.capture_every_record(leaks.SCAN)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    leaks.fail_on_leaks(session)
    if os.environ.get("BOTLYNE_FORBID_SKIPS") != "1":
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if skipped:
        reporter.write_line(f"BOTLYNE_FORBID_SKIPS: {len(skipped)} test(s) skipped", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
