"""The job queue's operations and the loop that runs a kind of job.

Claims are one autocommitted `UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED)`: any
number of workers in any number of processes take disjoint jobs without waiting on each other.
A claim is a lease (`locked_until`); a job whose worker died is claimed again once it lapses, so
work is never lost, and may be done twice only when a worker dies between doing it and
recording it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from app.core.observability import error_context

_CLAIM = text(
    """
UPDATE jobs SET status = 'running', attempts = attempts + 1,
       locked_until = now() + make_interval(secs => :lease)
WHERE id IN (
    SELECT id FROM jobs
    WHERE kind = :kind AND status IN ('pending', 'running') AND run_at <= now()
      AND (status = 'pending' OR locked_until < now())
    ORDER BY run_at
    LIMIT :batch
    FOR UPDATE SKIP LOCKED
)
RETURNING id, org_id, conversation_id, message_id, attempts, created_at
"""
)
_DONE = text(
    "UPDATE jobs SET status = 'done', finished_at = now(), locked_until = NULL WHERE id = :id"
)
_FAILED = text(
    "UPDATE jobs SET status = 'failed', finished_at = now(), locked_until = NULL, "
    "last_error = :error WHERE id = :id"
)
_LATER = text(
    "UPDATE jobs SET status = 'pending', locked_until = NULL, last_error = :error, "
    "run_at = now() + make_interval(secs => :delay), attempts = attempts - :uncount "
    "WHERE id = :id"
)
_ENQUEUE = text(
    "INSERT INTO jobs (kind, org_id, conversation_id, message_id) "
    "VALUES (:kind, :org_id, :conversation_id, :message_id) "
    "ON CONFLICT (kind, message_id) DO NOTHING"
)


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    id: int
    org_id: uuid.UUID
    conversation_id: uuid.UUID
    message_id: uuid.UUID
    attempts: int
    created_at: datetime


async def enqueue(
    connection: AsyncConnection,
    kind: str,
    org_id: uuid.UUID,
    conversation_id: uuid.UUID,
    message_id: uuid.UUID,
) -> None:
    await connection.execute(
        _ENQUEUE,
        {
            "kind": kind,
            "org_id": org_id,
            "conversation_id": conversation_id,
            "message_id": message_id,
        },
    )


async def complete(connection: AsyncConnection, job_id: int) -> None:
    await connection.execute(_DONE, {"id": job_id})


async def fail(connection: AsyncConnection, job_id: int, error: str) -> None:
    await connection.execute(_FAILED, {"id": job_id, "error": error[:500]})


async def retry_later(
    connection: AsyncConnection, job_id: int, delay: float, error: str, *, count: bool = True
) -> None:
    """Put the job back for `delay` seconds; `count=False` gives back the attempt (the call was
    never made, e.g. an open circuit)."""
    await connection.execute(
        _LATER, {"id": job_id, "delay": delay, "error": error[:500], "uncount": 0 if count else 1}
    )


def backoff_seconds(attempt: int, base: float = 2.0, cap: float = 300.0) -> float:
    """Exponential backoff with full jitter: spreads retries of many jobs over time."""
    return random.uniform(0.5, 1.0) * min(cap, base * 2 ** max(0, attempt - 1))


Handler = Callable[[ClaimedJob], Awaitable[None]]


class JobRunner:
    """Claims jobs of one kind and runs `handler` on each, `concurrency` at a time."""

    def __init__(
        self,
        engine: AsyncEngine,
        kind: str,
        handler: Handler,
        *,
        concurrency: int = 8,
        lease_seconds: float = 60.0,
        poll_interval: float = 0.5,
    ) -> None:
        self.engine = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.kind = kind
        self.handler = handler
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval = poll_interval
        self.wakeup = asyncio.Event()

    async def claim(self, limit: int) -> list[ClaimedJob]:
        async with self.engine.connect() as connection:
            rows = await connection.execute(
                _CLAIM, {"kind": self.kind, "lease": self.lease_seconds, "batch": limit}
            )
            return [ClaimedJob(**row._mapping) for row in rows]

    async def run_once(self) -> int:
        jobs = await self.claim(self.concurrency)
        if jobs:
            await asyncio.gather(*(self._run(job) for job in jobs))
        return len(jobs)

    async def _run(self, job: ClaimedJob) -> None:
        # The handler records outcomes itself; anything escaping is a bug or an outage. The
        # lease lapses and the job is tried again.
        async with error_context(
            f"worker:{self.kind}",
            "job failed unexpectedly",
            job_id=job.id,
            org_id=job.org_id,
            conversation_id=job.conversation_id,
        ):
            await self.handler(job)

    async def run_forever(self) -> None:
        while True:
            claimed = 0
            async with error_context(
                f"worker:{self.kind}", "claiming jobs failed", level="WARNING"
            ):
                claimed = await self.run_once()
            if claimed < self.concurrency:
                self.wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wakeup.wait(), timeout=self.poll_interval)
