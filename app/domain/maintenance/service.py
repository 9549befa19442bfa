"""Maintenance passes: each is one short transaction calling `run_maintenance_tasks()` (the SQL
function does the work, one bounded batch per task); a run repeats passes until the function
reports that no work remains.

The function takes an advisory lock first, so whoever calls it (this scheduler on any replica,
`botlyne maintenance run`, pg_cron, an operator in psql) runs one pass at a time; a caller that
finds a pass running gets `"skipped": true` and leaves the work to it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from loguru import logger
from sqlalchemy import column, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.core.observability import error_context

# The counts of one pass that add up over a run.
COUNTS = (
    "abandoned_conversations",
    "messages_deleted",
    "integration_events_deleted",
    "audit_rows_deleted",
    "audit_partitions_dropped",
    "audit_partitions_created",
)

_PASS = text(
    "SELECT run_maintenance_tasks(:abandoned_after, :message_retention, :audit_retention, "
    ":integration_event_retention) AS summary"
).columns(column("summary", JSONB))


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    abandoned_after: timedelta
    message_retention: timedelta
    audit_retention: timedelta
    integration_event_retention: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            abandoned_after=timedelta(hours=settings.abandoned_conversation_hours),
            message_retention=timedelta(days=settings.message_retention_days),
            audit_retention=timedelta(days=settings.audit_retention_days),
            integration_event_retention=timedelta(days=settings.integration_event_retention_days),
        )


async def run_pass(engine: AsyncEngine, policy: RetentionPolicy) -> dict[str, Any]:
    """One pass in its own transaction; its summary as the SQL function returns it."""
    async with engine.begin() as connection:
        result = await connection.execute(
            _PASS,
            {
                "abandoned_after": policy.abandoned_after,
                "message_retention": policy.message_retention,
                "audit_retention": policy.audit_retention,
                "integration_event_retention": policy.integration_event_retention,
            },
        )
        return dict(result.scalar_one())


async def run(
    engine: AsyncEngine, policy: RetentionPolicy, *, max_passes: int | None = None
) -> dict[str, Any]:
    """Passes until no work remains (or `max_passes`); the summary of the whole run: counts and
    `duration_ms` added up, the tables analyzed, `passes`, and the last pass's
    `work_remaining`."""
    total: dict[str, Any] = {
        "passes": 0,
        "skipped": False,
        **dict.fromkeys(COUNTS, 0),
        "analyzed": [],
        "work_remaining": False,
        "duration_ms": 0.0,
    }
    while max_passes is None or total["passes"] < max_passes:
        summary = await run_pass(engine, policy)
        if summary["skipped"]:
            # Another session holds the pass lock and does the work; it is not ours to repeat.
            total["skipped"] = total["passes"] == 0
            break
        total["passes"] += 1
        for key in COUNTS:
            total[key] += summary[key]
        if summary["analyzed"]:
            total["analyzed"].append(summary["analyzed"])
        total["work_remaining"] = summary["work_remaining"]
        total["duration_ms"] = round(total["duration_ms"] + summary["duration_ms"], 1)
        if not summary["work_remaining"]:
            break
    return total


async def keep_maintaining(
    settings: Settings,
    engine: AsyncEngine,
    on_run: Callable[[Mapping[str, Any]], None] | None = None,
) -> None:
    """A run at start and then every `MAINTENANCE_INTERVAL_SECONDS` (0: never); `on_run` gets the
    summary of each run this process did (the metrics). Safe on any number of processes: passes
    never overlap."""
    if not settings.maintenance_interval_seconds:
        return
    policy = RetentionPolicy.from_settings(settings)
    log = logger.bind(component="maintenance")
    while True:
        async with error_context("maintenance", "maintenance run failed", level="WARNING"):
            summary = await run(engine, policy)
            if summary["skipped"]:
                log.debug("maintenance: another session is running a pass")
            else:
                if on_run is not None:
                    on_run(summary)
                changed = any(summary[key] for key in COUNTS)
                log.log("INFO" if changed else "DEBUG", "maintenance: {}", summary)
        await asyncio.sleep(settings.maintenance_interval_seconds)
