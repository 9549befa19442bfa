"""How passes are run: from psql as an operator would, one at a time whoever calls, by the
scheduler on several replicas, and by `botlyne maintenance run`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.core.db import create_engine
from app.db.entities import MAINTENANCE_LOCK_ID
from app.domain.maintenance.service import COUNTS, RetentionPolicy, keep_maintaining, run
from tests.conftest import make_settings
from tests.maintenance.conftest import Rows
from tests.test_cli import run_cli

SUMMARY_KEYS = {"skipped", *COUNTS, "analyzed", "work_remaining", "duration_ms"}


def _libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture
async def replica(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A second process's engine on the same database."""
    engine = create_engine(make_settings(database_url), database_url)
    yield engine
    await engine.dispose()


async def test_an_operator_runs_a_pass_from_a_plain_connection(
    rows: Rows, database_url: str
) -> None:
    await rows.conversation(idle=timedelta(days=2))
    connection = await asyncpg.connect(_libpq(database_url))
    try:
        summary = json.loads(await connection.fetchval("SELECT run_maintenance_tasks()"))
        named = json.loads(
            await connection.fetchval(
                "SELECT run_maintenance_tasks(message_retention => interval '1 day')"
            )
        )
    finally:
        await connection.close()
    assert set(summary) == SUMMARY_KEYS
    assert summary["abandoned_conversations"] == 1
    assert summary["skipped"] is False
    assert named["abandoned_conversations"] == 0


async def test_statistics_are_refreshed_one_stale_table_per_pass(
    rows: Rows, clean_db: AsyncEngine, policy: RetentionPolicy
) -> None:
    async with clean_db.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO integration_events (outcome, status_code, reason) "
                "SELECT 'rejected', 401, 'invalid_signature' FROM generate_series(1, 500)"
            )
        )
        # Counters reach pg_stat_user_tables at commit instead of up to a second later.
        await connection.execute(text("SELECT pg_stat_force_next_flush()"))

    summary = await run(clean_db, policy)

    assert "integration_events" in summary["analyzed"]
    assert summary["passes"] >= len(summary["analyzed"])
    assert summary["work_remaining"] is False
    analyzed = await rows.scalar(
        "SELECT last_analyze > now() - interval '1 minute' FROM pg_stat_user_tables "
        "WHERE relname = 'integration_events'"
    )
    assert analyzed is True


async def test_a_caller_skips_while_another_pass_runs(
    rows: Rows, clean_db: AsyncEngine, replica: AsyncEngine, policy: RetentionPolicy
) -> None:
    await rows.event(timedelta(days=40))
    async with clean_db.connect() as blocker:
        # Hold the expired event so the first pass waits inside its transaction, lock held.
        await blocker.execute(text("SELECT * FROM integration_events FOR UPDATE"))
        first = asyncio.create_task(run(replica, policy))
        for _ in range(200):
            held = await rows.scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objid = :id",
                id=MAINTENANCE_LOCK_ID,
            )
            if held:
                break
            await asyncio.sleep(0.02)
        assert held, "the first pass never took the lock"

        second = await run(clean_db, policy)

        assert second["skipped"] is True
        assert second["passes"] == 0
        await blocker.rollback()
    done = await first
    assert (done["skipped"], done["integration_events_deleted"]) == (False, 1)
    assert (await run(clean_db, policy))["integration_events_deleted"] == 0


async def test_two_schedulers_do_each_piece_of_work_once(
    rows: Rows, clean_db: AsyncEngine, replica: AsyncEngine, database_url: str
) -> None:
    for _ in range(5):
        await rows.conversation(idle=timedelta(days=2))
    settings = make_settings(database_url, maintenance_interval_seconds=0.05)
    runs: dict[str, list[Mapping[str, Any]]] = {"a": [], "b": []}
    schedulers = [
        asyncio.create_task(keep_maintaining(settings, engine, runs[name].append))
        for name, engine in (("a", clean_db), ("b", replica))
    ]
    try:
        for _ in range(250):
            if all(len(done) >= 2 for done in runs.values()):
                break
            await asyncio.sleep(0.02)
    finally:
        for scheduler in schedulers:
            scheduler.cancel()
        await asyncio.gather(*schedulers, return_exceptions=True)

    assert all(runs.values()), runs
    assert sum(r["abandoned_conversations"] for done in runs.values() for r in done) == 5
    abandoned = await rows.scalar(
        "SELECT count(*) FROM audit_logs WHERE table_name = 'conversations' "
        "AND new_values ->> 'resolution_reason' = 'abandoned'"
    )
    assert abandoned == 5


async def test_the_app_runs_maintenance_where_its_workers_run_and_exports_it(
    rows: Rows, database_url: str
) -> None:
    await rows.conversation(idle=timedelta(days=2))
    app = create_app(make_settings(database_url, run_workers=True))
    async with AsyncTestClient(app=app) as client:
        for _ in range(250):
            metrics = (await client.get("/metrics")).text
            if "botlyne_maintenance_runs_total 1.0" in metrics:
                break
            await asyncio.sleep(0.02)
    assert 'botlyne_maintenance_last_run{item="abandoned_conversations"} 1.0' in metrics
    assert await rows.scalar("SELECT status FROM conversations") == "resolved"


async def test_an_interval_of_zero_turns_the_scheduler_off(
    clean_db: AsyncEngine, database_url: str
) -> None:
    settings = make_settings(database_url, maintenance_interval_seconds=0)
    await asyncio.wait_for(keep_maintaining(settings, clean_db), timeout=1)


async def test_the_cli_runs_passes_until_nothing_remains(
    rows: Rows, tmp_path: Path, database_url: str
) -> None:
    await rows.conversation(idle=timedelta(days=2))
    await rows.conversation(status="resolved", resolved_ago=timedelta(days=8), messages=3)

    result = run_cli(
        "maintenance",
        "run",
        "--json",
        cwd=tmp_path,
        DATABASE_URL=database_url,
        AUTO_MIGRATE="false",
    )

    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == SUMMARY_KEYS | {"passes"}
    assert summary["abandoned_conversations"] == 1
    assert summary["messages_deleted"] == 3
    assert summary["work_remaining"] is False
    assert summary["passes"] >= 1

    readable = run_cli(
        "maintenance",
        "run",
        "--once",
        cwd=tmp_path,
        DATABASE_URL=database_url,
        AUTO_MIGRATE="false",
    )
    assert readable.returncode == 0, readable.stderr
    assert readable.stdout.startswith("maintenance: 1 pass(es) in ")
    assert "messages deleted: 0" in readable.stdout
