"""Data access for integrations: ORM for the management API, core SQL for the webhook's hot path."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from app.db.models import Integration, IntegrationConfig, IntegrationEvent
from app.db.repository import OrgScopedRepository


class IntegrationRepository(OrgScopedRepository[Integration]):
    model = Integration

    async def get_live(self, integration_id: uuid.UUID) -> Integration | None:
        return await self.one_or_none(
            self.select().where(Integration.id == integration_id, Integration.deleted_at.is_(None))
        )

    async def list_live(self) -> Sequence[Integration]:
        return await self.all(
            self.select()
            .where(Integration.deleted_at.is_(None))
            .order_by(Integration.created_at, Integration.id)
        )


class IntegrationConfigRepository(OrgScopedRepository[IntegrationConfig]):
    model = IntegrationConfig

    async def for_integration(self, integration_id: uuid.UUID) -> IntegrationConfig:
        config = await self.one_or_none(
            self.select().where(IntegrationConfig.integration_id == integration_id)
        )
        assert config is not None, "every integration is created with its config"
        return config

    async def for_integrations(
        self, integration_ids: Sequence[uuid.UUID]
    ) -> dict[uuid.UUID, IntegrationConfig]:
        rows = await self.all(
            self.select().where(IntegrationConfig.integration_id.in_(integration_ids))
        )
        return {row.integration_id: row for row in rows}


class IntegrationEventRepository(OrgScopedRepository[IntegrationEvent]):
    model = IntegrationEvent

    async def page(
        self, integration_id: uuid.UUID, outcome: str | None, limit: int, before: int | None
    ) -> Sequence[IntegrationEvent]:
        statement = self.select().where(IntegrationEvent.integration_id == integration_id)
        if outcome is not None:
            statement = statement.where(IntegrationEvent.outcome == outcome)
        if before is not None:
            statement = statement.where(IntegrationEvent.id < before)
        return await self.all(statement.order_by(IntegrationEvent.id.desc()).limit(limit))


# The webhook path ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebhookTarget:
    id: uuid.UUID
    org_id: uuid.UUID
    type: str
    status: str
    deleted: bool
    secrets: list[dict[str, Any]]
    allowed_ips: list[str]
    rate_limit_per_minute: int | None
    rate_limit_per_hour: int | None
    settings: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InboundMessage:
    thread_key: str
    contact_id: str
    contact_name: str | None
    text: str
    external_id: str | None
    channel: dict[str, Any]
    # Typed on the business's own phone (Evolution `fromMe`), not by the end user.
    from_business: bool = False


@dataclass(frozen=True, slots=True)
class Accepted:
    """What an accepted delivery stored: the message, its conversation and who holds it."""

    event_id: int | None
    message_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    agent_id: uuid.UUID | None = None
    # A message typed on the business phone took the conversation from the bot or the queue.
    taken_over: bool = False


@dataclass(frozen=True, slots=True)
class EventRecord:
    outcome: str
    status_code: int
    reason: str
    client_ip: str | None
    latency_ms: float
    delivery_key: str | None = None
    event_type: str | None = None


_TARGET = text(
    "SELECT i.id, i.org_id, i.type, i.status, i.deleted_at IS NOT NULL AS deleted, "
    "c.secrets, c.allowed_ips, c.rate_limit_per_minute, c.rate_limit_per_hour, c.settings "
    "FROM integrations i JOIN integration_configs c ON c.integration_id = i.id "
    "WHERE i.id = :id"
)

_RECORD = text(
    "INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason, "
    "client_ip, latency_ms, delivery_key, event_type) "
    "VALUES (:org_id, :integration_id, :outcome, :status_code, :reason, CAST(:client_ip AS inet), "
    ":latency_ms, :delivery_key, :event_type) RETURNING id"
)

# One round trip: claim the delivery key (the partial unique index makes a concurrent copy wait
# and then do nothing), find or create the conversation (reopening a resolved one), store the
# message and queue the bot's turn. Nothing after the event insert runs when the key was taken.
_ACCEPT_MESSAGE = text(
    """
WITH event AS (
    INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason,
                                    client_ip, latency_ms, delivery_key, event_type, message_id)
    VALUES (:org_id, :integration_id, 'accepted', 202, 'accepted', CAST(:client_ip AS inet),
            :latency_ms, :delivery_key, :event_type, :message_id)
    ON CONFLICT (integration_id, delivery_key) WHERE outcome = 'accepted' DO NOTHING
    RETURNING id
), conversation AS (
    INSERT INTO conversations (org_id, integration_id, thread_key, contact_external_id,
                               contact_name, channel)
    SELECT :org_id, :integration_id, :thread_key, :contact_id, :contact_name,
           CAST(:channel AS jsonb)
    FROM event
    ON CONFLICT (integration_id, thread_key) DO UPDATE
    SET contact_name = coalesce(excluded.contact_name, conversations.contact_name),
        channel = conversations.channel || excluded.channel,
        status = CASE WHEN conversations.status = 'resolved' THEN 'bot'
                      ELSE conversations.status END,
        resolved_at = CASE WHEN conversations.status = 'resolved' THEN NULL
                           ELSE conversations.resolved_at END,
        resolution_reason = CASE WHEN conversations.status = 'resolved' THEN NULL
                                 ELSE conversations.resolution_reason END
    RETURNING id, assigned_agent_id
), message AS (
    INSERT INTO messages (id, org_id, conversation_id, role, content, external_id)
    SELECT :message_id, :org_id, conversation.id, 'user', :text, :external_id FROM conversation
    RETURNING id, conversation_id
), job AS (
    INSERT INTO jobs (kind, org_id, conversation_id, message_id)
    SELECT 'bot_reply', :org_id, message.conversation_id, message.id FROM message
)
SELECT (SELECT id FROM event) AS event_id, (SELECT id FROM message) AS message_id,
       (SELECT id FROM conversation) AS conversation_id,
       (SELECT assigned_agent_id FROM conversation) AS agent_id
"""
)

# A message typed on the business phone: our own echo (same provider id, or the same text we
# sent moments ago) changes nothing; anything else means a person took the conversation over,
# so it leaves the bot and the queue and the message is kept as an agent's.
_ACCEPT_BUSINESS_MESSAGE = text(
    """
WITH event AS (
    INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason,
                                    client_ip, latency_ms, delivery_key, event_type, message_id)
    VALUES (:org_id, :integration_id, 'accepted', 202, 'accepted', CAST(:client_ip AS inet),
            :latency_ms, :delivery_key, :event_type, :message_id)
    ON CONFLICT (integration_id, delivery_key) WHERE outcome = 'accepted' DO NOTHING
    RETURNING id
), conversation AS (
    SELECT c.id FROM conversations c, event
    WHERE c.integration_id = :integration_id AND c.thread_key = :thread_key
    FOR UPDATE OF c
), echo AS (
    SELECT 1 FROM messages m JOIN conversation c ON m.conversation_id = c.id
    WHERE m.role IN ('bot', 'agent', 'system')
      AND (m.external_id = :external_id
           OR (m.content = :text AND m.created_at > now() - interval '10 minutes'))
    LIMIT 1
), takeover AS (
    UPDATE conversations SET status = 'assigned', escalation_reason = 'human_takeover'
    FROM conversation
    WHERE conversations.id = conversation.id AND conversations.status IN ('bot', 'queued')
      AND NOT EXISTS (SELECT 1 FROM echo)
    RETURNING conversations.id
), dequeued AS (
    UPDATE agent_queue SET status = 'cancelled', dequeued_at = now()
    FROM takeover
    WHERE agent_queue.conversation_id = takeover.id AND agent_queue.status = 'waiting'
), message AS (
    INSERT INTO messages (id, org_id, conversation_id, role, content, external_id,
                          delivery_status)
    SELECT :message_id, :org_id, conversation.id, 'agent', :text, :external_id, 'sent'
    FROM conversation
    WHERE NOT EXISTS (SELECT 1 FROM echo)
    RETURNING id
)
SELECT (SELECT id FROM event) AS event_id, (SELECT id FROM message) AS message_id,
       (SELECT id FROM conversation) AS conversation_id, CAST(NULL AS uuid) AS agent_id,
       EXISTS (SELECT 1 FROM takeover) AS taken_over
"""
)

_ACCEPT_EVENT = text(
    "INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason, "
    "client_ip, latency_ms, delivery_key, event_type) "
    "VALUES (:org_id, :integration_id, 'accepted', 202, 'accepted', CAST(:client_ip AS inet), "
    ":latency_ms, :delivery_key, :event_type) "
    "ON CONFLICT (integration_id, delivery_key) WHERE outcome = 'accepted' DO NOTHING "
    "RETURNING id"
)


class WebhookRepository:
    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection

    async def target(self, integration_id: uuid.UUID) -> WebhookTarget | None:
        row = (await self.connection.execute(_TARGET, {"id": integration_id})).mappings().first()
        return WebhookTarget(**row) if row is not None else None

    async def record(self, target: WebhookTarget | None, event: EventRecord) -> int:
        result = await self.connection.execute(
            _RECORD,
            {
                "org_id": target.org_id if target else None,
                "integration_id": target.id if target else None,
                "outcome": event.outcome,
                "status_code": event.status_code,
                "reason": event.reason,
                "client_ip": event.client_ip,
                "latency_ms": event.latency_ms,
                "delivery_key": event.delivery_key,
                "event_type": event.event_type,
            },
        )
        return int(result.scalar_one())

    async def accept(
        self, target: WebhookTarget, event: EventRecord, inbound: InboundMessage | None
    ) -> Accepted:
        """Store an accepted delivery; `event_id` is None when its key was already accepted."""
        params: dict[str, Any] = {
            "org_id": target.org_id,
            "integration_id": target.id,
            "client_ip": event.client_ip,
            "latency_ms": event.latency_ms,
            "delivery_key": event.delivery_key,
            "event_type": event.event_type,
        }
        if inbound is None:
            event_id = (await self.connection.execute(_ACCEPT_EVENT, params)).scalar_one_or_none()
            return Accepted(event_id)
        params.update(
            message_id=uuid.uuid4(),
            thread_key=inbound.thread_key,
            contact_id=inbound.contact_id,
            contact_name=inbound.contact_name,
            channel=msgspec.json.encode(inbound.channel).decode(),
            text=inbound.text,
            external_id=inbound.external_id,
        )
        statement = _ACCEPT_BUSINESS_MESSAGE if inbound.from_business else _ACCEPT_MESSAGE
        row = (await self.connection.execute(statement, params)).one()
        return Accepted(
            row.event_id,
            row.message_id,
            row.conversation_id,
            row.agent_id,
            bool(getattr(row, "taken_over", False)),
        )
