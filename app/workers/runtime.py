"""The background workers, built one way for both homes: inside the API process (default,
`RUN_WORKERS=true`) and in `botlyne worker`. Any number of them may run at once: the queue's
`SKIP LOCKED` claims keep their work disjoint."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from datetime import UTC, datetime
from typing import Any

import httpx
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.events import EventBus
from app.core.observability import error_context
from app.domain.agents.desk import apply_timeouts
from app.domain.agents.presence import Presence, mark_lapsed_away
from app.domain.conversations.bot import Answerer, BotReplier
from app.domain.conversations.delivery import DeliveryHandler
from app.gateways.callback import CallbackGateway
from app.gateways.evolution import EvolutionGateway
from app.workers.queue import JobRunner


def build_runners(
    settings: Settings,
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    http: httpx.AsyncClient,
    answerer: Answerer,
    events: EventBus | None = None,
) -> dict[str, JobRunner]:
    delivery = DeliveryHandler(
        engine,
        EvolutionGateway(settings, http),
        CallbackGateway(http),
        settings.delivery_max_age_seconds,
        settings.delivery_retry_base_seconds,
        events,
    )
    bot = BotReplier(engine, sessionmaker, answerer, settings.bot_max_failures)
    concurrency = settings.worker_concurrency
    return {
        "bot_reply": JobRunner(engine, "bot_reply", bot, concurrency=concurrency),
        "deliver": JobRunner(engine, "deliver", delivery, concurrency=concurrency),
    }


@contextlib.asynccontextmanager
async def running(
    runners: dict[str, JobRunner], *loops: Coroutine[Any, Any, None]
) -> AsyncIterator[None]:
    """Run every runner and loop until the block exits, then stop them (jobs in flight keep
    their lease and are taken again by another worker if this one stops mid-job)."""
    tasks = [
        asyncio.create_task(runner.run_forever(), name=f"worker:{kind}")
        for kind, runner in runners.items()
    ]
    tasks += [asyncio.create_task(loop) for loop in loops]
    logger.info("workers started: {}", ", ".join(runners))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def keep_applying_timeouts(
    settings: Settings, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Queue and response timeouts, every `QUEUE_CHECK_INTERVAL_SECONDS`; safe on any number of
    processes (the rows it changes are claimed with `SKIP LOCKED`)."""
    while True:
        async with error_context("queue", "queue timeouts failed", level="WARNING"):
            async with sessionmaker.begin() as session:
                report = await apply_timeouts(
                    session,
                    datetime.now(UTC),
                    settings.queue_timeout_seconds,
                    settings.agent_response_timeout_seconds,
                )
            if report.raised or report.reassigned:
                logger.bind(component="queue").info(
                    "queue timeouts: {} raised, {} reassigned, {} dispatched",
                    report.raised,
                    report.reassigned,
                    report.dispatched,
                )
        await asyncio.sleep(settings.queue_check_interval_seconds)


async def keep_checking_presence(
    presence: Presence, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Agents silent for `PRESENCE_GRACE_SECONDS` go `away`, a few times per grace period; safe
    on any number of processes (each lapse is claimed by one of them)."""
    interval = max(0.2, min(5.0, presence.grace_seconds / 4))
    while True:
        async with error_context("presence", "presence check failed", level="WARNING"):
            await mark_lapsed_away(presence, sessionmaker)
        await asyncio.sleep(interval)
