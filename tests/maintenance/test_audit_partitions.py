"""Audit retention by day: partitions made ahead, dropped whole once expired, and the rows that
landed in the default partition deleted when they expire."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from alembic import command
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.migrations import alembic_config
from app.domain.maintenance.service import RetentionPolicy, run
from tests.maintenance.conftest import Rows

AHEAD = 7


def _name(day: date) -> str:
    return f"audit_logs_{day:%Y%m%d}"


def _today() -> date:
    return datetime.now(UTC).date()


async def _partitions(rows: Rows) -> set[str]:
    found = await rows.sql(
        "SELECT inhrelid::regclass::text FROM pg_inherits WHERE inhparent = 'audit_logs'::regclass"
    )
    return {name for (name,) in found}


async def _audit_row(rows: Rows, at: datetime) -> None:
    await rows.sql(
        'INSERT INTO audit_logs ("timestamp", table_name, record_id, operation) '
        "VALUES (:at, 'organizations', :id, 'INSERT')",
        at=at,
        id=str(uuid.uuid4()),
    )


def _midday(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


@pytest.fixture
async def partitions(rows: Rows) -> AsyncIterator[Rows]:
    """Puts the usual partitions (today and the next 7 days) back after the test."""
    yield rows
    usual = {_name(_today() + timedelta(days=n)) for n in range(AHEAD + 1)}
    for name in await _partitions(rows) - usual - {"audit_logs_default"}:
        await rows.sql(f'DROP TABLE "{name}"')
    await rows.sql("SELECT ensure_audit_partitions()")


async def test_migrations_leave_partitions_for_today_and_the_week_ahead(rows: Rows) -> None:
    expected = {_name(_today() + timedelta(days=n)) for n in range(AHEAD + 1)}
    assert expected <= await _partitions(rows)


async def test_expired_partitions_are_dropped_and_the_coming_ones_made(
    partitions: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    rows = partitions
    expired_day = _today() - timedelta(days=100)
    start, end = expired_day, expired_day + timedelta(days=1)
    await rows.sql(
        f'CREATE TABLE "{_name(expired_day)}" PARTITION OF audit_logs '
        f"FOR VALUES FROM ('{start} 00:00+00') TO ('{end} 00:00+00')"
    )
    await _audit_row(rows, _midday(expired_day))
    # Days without a partition of their own: these rows sit in the default partition.
    await _audit_row(rows, _midday(_today() - timedelta(days=95)))
    await _audit_row(rows, _midday(_today() - timedelta(days=10)))
    last = _name(_today() + timedelta(days=AHEAD))
    await rows.sql(f'DROP TABLE "{last}"')

    summary = await run(clean_db, policy)

    assert summary["audit_partitions_dropped"] == 1
    assert summary["audit_rows_deleted"] == 1
    assert summary["audit_partitions_created"] == 1
    names = await _partitions(rows)
    assert _name(expired_day) not in names
    assert last in names
    kept = await rows.sql(
        "SELECT \"timestamp\" < now() - interval '9 days' FROM audit_logs_default"
    )
    assert kept == [(True,)]


async def test_a_day_the_default_partition_holds_rows_of_is_skipped(partitions: Rows) -> None:
    rows = partitions
    held = _today() + timedelta(days=AHEAD + 2)
    await _audit_row(rows, _midday(held))

    created = await rows.scalar("SELECT ensure_audit_partitions(:ahead)", ahead=AHEAD + 3)

    assert created == 2  # the day before and the day after
    names = await _partitions(rows)
    assert _name(held) not in names
    assert {_name(held - timedelta(days=1)), _name(held + timedelta(days=1))} <= names
    assert await rows.scalar("SELECT count(*) FROM audit_logs_default") == 1


@pytest.fixture
def empty_database(database_url: str) -> Iterator[str]:
    server = make_url(database_url)
    name = f"botlyne_maint_{uuid.uuid4().hex[:8]}"
    admin = server.set(drivername="postgresql").render_as_string(hide_password=False)

    async def execute(statement: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(execute(f'CREATE DATABASE "{name}"'))
    yield server.set(database=name).render_as_string(hide_password=False)
    asyncio.run(execute(f'DROP DATABASE "{name}" WITH (FORCE)'))


def test_downgrading_0005_keeps_the_audit_rows(empty_database: str) -> None:
    config = alembic_config(empty_database)
    command.upgrade(config, "head")
    libpq = make_url(empty_database).set(drivername="postgresql")

    async def sql(statement: str) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(libpq.render_as_string(hide_password=False))
        try:
            return list(await connection.fetch(statement))
        finally:
            await connection.close()

    asyncio.run(sql("INSERT INTO organizations (name) VALUES ('kept')"))
    command.downgrade(config, "0004")

    layout = asyncio.run(
        sql(
            "SELECT inhrelid::regclass::text AS name FROM pg_inherits "
            "WHERE inhparent = 'audit_logs'::regclass"
        )
    )
    assert [row["name"] for row in layout] == ["audit_logs_default"]
    trail = asyncio.run(sql("SELECT table_name, operation FROM audit_logs_default"))
    assert [tuple(row) for row in trail] == [("organizations", "INSERT")]
    command.upgrade(config, "head")
    command.check(config)
