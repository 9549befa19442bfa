"""The reads behind the probes, the health report and the work gauges of the metrics."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

# One round trip. Every subquery is served by a partial index of live rows (ix_jobs_claim,
# ix_agent_queue_waiting_order), so its cost follows the backlog, not the history.
_WORK = text(
    """
SELECT
  (SELECT extract(epoch FROM now() - min(j.created_at))
     FROM jobs j JOIN conversations c ON c.id = j.conversation_id
    WHERE j.kind = 'bot_reply' AND j.status IN ('pending', 'running') AND c.status = 'bot')
    AS oldest_unanswered_seconds,
  (SELECT count(*) FROM agent_queue WHERE status = 'waiting') AS queue_depth,
  (SELECT extract(epoch FROM now() - min(enqueued_at)) FROM agent_queue WHERE status = 'waiting')
    AS oldest_queue_wait_seconds,
  (SELECT count(*) FROM support_agents WHERE status = 'online') AS agents_online,
  (SELECT count(*) FROM jobs WHERE kind = 'deliver' AND status IN ('pending', 'running'))
    AS outbox_backlog
"""
)
# Finished jobs have no index of their own, so this one scans; only the health report (cached,
# sampled once a minute) asks it.
_FAILED_DELIVERIES = text(
    "SELECT count(*) FROM jobs WHERE kind = 'deliver' AND status = 'failed' "
    "AND finished_at > now() - make_interval(secs => :seconds)"
)


@dataclass(frozen=True, slots=True)
class WorkSnapshot:
    """What is waiting, across every organization, at one moment."""

    oldest_unanswered_seconds: float | None  # inbound message in a `bot` conversation
    queue_depth: int
    oldest_queue_wait_seconds: float | None
    agents_online: int
    outbox_backlog: int  # outbound messages not yet delivered (pending `deliver` jobs)


async def schema_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return result.scalar_one_or_none()


async def work_snapshot(connection: AsyncConnection) -> WorkSnapshot:
    row = (await connection.execute(_WORK)).one()
    return WorkSnapshot(
        oldest_unanswered_seconds=_seconds(row.oldest_unanswered_seconds),
        queue_depth=row.queue_depth,
        oldest_queue_wait_seconds=_seconds(row.oldest_queue_wait_seconds),
        agents_online=row.agents_online,
        outbox_backlog=row.outbox_backlog,
    )


async def failed_deliveries(connection: AsyncConnection, within_seconds: int) -> int:
    result = await connection.execute(_FAILED_DELIVERIES, {"seconds": within_seconds})
    return int(result.scalar_one())


def _seconds(value: Decimal | None) -> float | None:
    # extract(epoch ...) is numeric, which asyncpg returns as Decimal.
    return None if value is None else round(float(value), 3)
