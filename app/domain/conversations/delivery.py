"""Sending outbound messages: the `deliver` jobs of the outbox.

Each job sends one message through its channel's gateway (Evolution API, or the generic
integration's signed callback). A transient failure is retried with backoff and jitter until the
job is `DELIVERY_MAX_AGE_SECONDS` old, then the message is marked `failed`; an open circuit makes
the job wait without spending an attempt; a refusal by the receiver (4xx) fails at once. The
message's `delivery_status` always says where it stands.

A message can be sent twice only when a worker dies after the channel accepted it and before the
result was recorded (the lease then lapses and another worker sends again). A database outage at
that moment does not do it: the result is recorded as soon as the database is back, for as long
as the job's lease leaves room (`RECORD_PATIENCE_SECONDS`).
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.errors import database_unavailable
from app.core.events import EventBus
from app.core.resilience import CircuitOpenError, ClientFault, TransientError
from app.domain.integrations.service import active_secrets
from app.gateways.callback import CallbackGateway
from app.gateways.evolution import EvolutionGateway
from app.workers.queue import ClaimedJob, backoff_seconds, complete, fail, retry_later

_LOAD = text(
    """
SELECT m.content, m.role, m.created_at, m.delivery_status, c.channel, c.thread_key,
       c.contact_external_id, c.id AS conversation_id, c.org_id, c.assigned_agent_id,
       i.id AS integration_id, i.type,
       cfg.settings, cfg.secrets
FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN integrations i ON i.id = c.integration_id
JOIN integration_configs cfg ON cfg.integration_id = i.id
WHERE m.id = :message_id
"""
)
_SENT = text(
    "UPDATE messages SET delivery_status = 'sent', "
    "external_id = coalesce(:external_id, external_id) WHERE id = :message_id"
)
_FAILED = text("UPDATE messages SET delivery_status = 'failed' WHERE id = :message_id")
CIRCUIT_WAIT_SECONDS = 5.0
# How long a sent message's result waits for the database to come back; well inside the job's
# 60 s lease, so no other worker takes the job and sends it again meanwhile.
RECORD_PATIENCE_SECONDS = 30.0


class DeliveryHandler:
    def __init__(
        self,
        engine: AsyncEngine,
        evolution: EvolutionGateway,
        callbacks: CallbackGateway,
        max_age_seconds: float,
        retry_base_seconds: float,
        events: EventBus | None = None,
    ) -> None:
        self.engine = engine
        self.events = events or EventBus()
        self.retry_base_seconds = retry_base_seconds
        self.evolution = evolution
        self.callbacks = callbacks
        self.max_age_seconds = max_age_seconds

    async def __call__(self, job: ClaimedJob) -> None:
        async with self.engine.connect() as connection:
            row = (
                (await connection.execute(_LOAD, {"message_id": job.message_id})).mappings().first()
            )
        if row is None or row["delivery_status"] == "sent":
            await self._finish(job, None, failed=None)
            return
        log = logger.bind(conversation_id=str(job.conversation_id), component="delivery")
        try:
            external_id = await self.send(dict(row), job)
        except CircuitOpenError as exc:
            await self._later(job, exc.retry_after or CIRCUIT_WAIT_SECONDS, str(exc), count=False)
            return
        except ClientFault as exc:
            log.warning("delivery refused: {}", exc)
            await self._finish(job, None, failed=str(exc))
            await self._tell_failed(row, job, str(exc))
            return
        except TransientError as exc:
            age = (datetime.now(UTC) - job.created_at).total_seconds()
            if age >= self.max_age_seconds:
                log.warning("delivery given up after {} attempts: {}", job.attempts, exc)
                await self._finish(job, None, failed=f"gave up: {exc}")
                await self._tell_failed(row, job, f"gave up: {exc}")
            else:
                delay = max(
                    backoff_seconds(job.attempts, self.retry_base_seconds), exc.retry_after or 0
                )
                await self._later(job, delay, str(exc))
            return
        await self._record_sent(job, external_id)

    async def _record_sent(self, job: ClaimedJob, external_id: str | None) -> None:
        """The channel has the message: record it, waiting out a database outage (giving up
        would let the lease lapse and the message be sent again)."""
        deadline = time.monotonic() + RECORD_PATIENCE_SECONDS
        delay = 0.25
        while True:
            try:
                await self._finish(job, external_id, failed=None)
                return
            except Exception as exc:
                if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                    raise
                logger.bind(component="delivery").warning(
                    "delivery sent, recording it waits for the database: {}", type(exc).__name__
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async def send(self, row: dict[str, Any], job: ClaimedJob) -> str | None:
        settings: dict[str, Any] = row["settings"]
        if row["type"] == "evolution":
            instance = row["channel"].get("instance") or settings.get("instance")
            if not instance:
                raise ClientFault("no Evolution instance known for this conversation")
            jid = row["channel"].get("remote_jid") or row["contact_external_id"]
            return await self.evolution.send_text(
                instance, jid, row["content"], settings.get("api_key")
            )
        secrets = active_secrets(row["secrets"], datetime.now(UTC))
        if not secrets or not settings.get("callback_url"):
            raise ClientFault("the integration has no callback_url or secret")
        await self.callbacks.post(
            str(row["integration_id"]),
            settings["callback_url"],
            secrets[0],
            {
                "type": "message",
                "message_id": str(job.message_id),
                "conversation_id": row["thread_key"],
                "recipient": {"id": row["contact_external_id"]},
                "role": row["role"],
                "text": row["content"],
                "created_at": row["created_at"].isoformat(),
            },
        )
        return None

    async def _tell_failed(self, row: Any, job: ClaimedJob, error: str) -> None:
        """`delivery.failed`: to the agent holding the conversation, and to the admins."""
        await self.events.publish(
            row["org_id"],
            {
                "type": "delivery.failed",
                "conversation_id": row["conversation_id"],
                "message_id": job.message_id,
                "agent_id": row["assigned_agent_id"],
                "role": row["role"],
                "error": error[:500],
            },
            agent_id=row["assigned_agent_id"],
        )

    async def _finish(self, job: ClaimedJob, external_id: str | None, failed: str | None) -> None:
        async with self.engine.begin() as connection:
            if failed is None:
                await connection.execute(
                    _SENT, {"message_id": job.message_id, "external_id": external_id}
                )
                await complete(connection, job.id)
            else:
                await connection.execute(_FAILED, {"message_id": job.message_id})
                await fail(connection, job.id, failed)

    async def _later(
        self, job: ClaimedJob, delay: float, error: str, *, count: bool = True
    ) -> None:
        async with self.engine.connect() as connection:
            await retry_later(connection, job.id, delay, error, count=count)
            await connection.commit()
