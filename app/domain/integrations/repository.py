"""Data access for integrations: ORM for the management API, core SQL for the webhook's hot path."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import itertools
import re
import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import asyncpg
import msgspec
from loguru import logger

from app.core.security.ip import Address
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


# Not frozen: one is built per webhook attempt, and a frozen dataclass sets each field through
# object.__setattr__.
@dataclass(slots=True)
class EventRecord:
    outcome: str
    status_code: int
    reason: str
    client_ip: str | None
    latency_ms: float
    delivery_key: str | None = None
    event_type: str | None = None
    org_id: uuid.UUID | None = None
    integration_id: uuid.UUID | None = None
    # When the attempt was made; when it is added to the batch writer if not given.
    received_at: datetime | None = None


class _Statement:
    """SQL written with `:name` parameters, run through asyncpg as `$n`."""

    def __init__(self, sql: str) -> None:
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            if match.group(1) not in names:
                names.append(match.group(1))
            return f"${names.index(match.group(1)) + 1}"

        self.sql = re.sub(r"(?<![:\w]):([a-z_]+)", number, sql)
        self.names = tuple(names)

    def bind(self, params: dict[str, Any]) -> tuple[Any, ...]:
        return (self.sql, *(params[name] for name in self.names))


_TARGET = _Statement(
    "SELECT i.id, i.org_id, i.type, i.status, i.deleted_at IS NOT NULL AS deleted, "
    "c.secrets, c.allowed_ips, c.rate_limit_per_minute, c.rate_limit_per_hour, c.settings "
    "FROM integrations i JOIN integration_configs c ON c.integration_id = i.id "
    "WHERE i.id = :id"
)

# The columns the batch writer copies, in the order `EventWriter.add` lays a row out.
_RECORD_COLUMNS = (
    "org_id",
    "integration_id",
    "outcome",
    "status_code",
    "reason",
    "client_ip",
    "latency_ms",
    "delivery_key",
    "event_type",
    "received_at",
)

# One round trip: claim the delivery key (the partial unique index makes a concurrent copy wait
# and then do nothing), find or create the conversation (reopening a resolved one), store the
# message and queue the bot's turn. Nothing after the event insert runs when the key was taken.
# A conversation this message changes nothing in (open, same name, channel already holding the
# values) is only locked, as the upsert's update would have locked it, instead of being written
# again: row versions, index entries and the audit trigger's check are most of an upsert's cost.
# A conversation the statement's snapshot does not see yet (created concurrently) or one that
# was resolved meanwhile (the lock re-reads the row) takes the upsert.
_ACCEPT_MESSAGE = _Statement(
    """
WITH event AS (
    INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason,
                                    client_ip, latency_ms, delivery_key, event_type, message_id)
    VALUES (:org_id, :integration_id, 'accepted', 202, 'accepted', CAST(:client_ip AS inet),
            :latency_ms, :delivery_key, :event_type, :message_id)
    ON CONFLICT (integration_id, delivery_key) WHERE outcome = 'accepted' DO NOTHING
    RETURNING id
), unchanged AS (
    SELECT c.id, c.assigned_agent_id FROM conversations c, event
    WHERE c.integration_id = :integration_id AND c.thread_key = :thread_key
      AND c.status <> 'resolved'
      AND (CAST(:contact_name AS text) IS NULL OR c.contact_name = :contact_name)
      AND c.channel || CAST(:channel AS jsonb) = c.channel
    FOR NO KEY UPDATE OF c
), upserted AS (
    INSERT INTO conversations (org_id, integration_id, thread_key, contact_external_id,
                               contact_name, channel)
    SELECT :org_id, :integration_id, :thread_key, :contact_id, :contact_name,
           CAST(:channel AS jsonb)
    FROM event
    WHERE NOT EXISTS (SELECT 1 FROM unchanged)
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
), conversation AS (
    SELECT id, assigned_agent_id FROM unchanged
    UNION ALL
    SELECT id, assigned_agent_id FROM upserted
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
_ACCEPT_BUSINESS_MESSAGE = _Statement(
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

_ACCEPT_EVENT = _Statement(
    "INSERT INTO integration_events (org_id, integration_id, outcome, status_code, reason, "
    "client_ip, latency_ms, delivery_key, event_type) "
    "VALUES (:org_id, :integration_id, 'accepted', 202, 'accepted', CAST(:client_ip AS inet), "
    ":latency_ms, :delivery_key, :event_type) "
    "ON CONFLICT (integration_id, delivery_key) WHERE outcome = 'accepted' DO NOTHING "
    "RETURNING id"
)


class WebhookRepository:
    """The webhook's statements, on a connection of its own asyncpg pool (`create_pool`)."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self.connection = connection

    async def target(self, integration_id: uuid.UUID) -> WebhookTarget | None:
        row = await self.connection.fetchrow(*_TARGET.bind({"id": integration_id}))
        return WebhookTarget(**dict(row)) if row is not None else None

    async def record(self, records: Sequence[Sequence[Any]]) -> None:
        """Store attempts that were not accepted (see `EventWriter`), values in the order of
        `_RECORD_COLUMNS`, all in one COPY."""
        await self.connection.copy_records_to_table(
            "integration_events", records=records, columns=_RECORD_COLUMNS
        )

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
            return Accepted(await self.connection.fetchval(*_ACCEPT_EVENT.bind(params)))
        params.update(
            message_id=uuid.uuid4(),
            thread_key=inbound.thread_key,
            contact_id=inbound.contact_id,
            contact_name=inbound.contact_name,
            channel=inbound.channel,
            text=inbound.text,
            external_id=inbound.external_id,
        )
        statement = _ACCEPT_BUSINESS_MESSAGE if inbound.from_business else _ACCEPT_MESSAGE
        row = await self.connection.fetchrow(*statement.bind(params))
        assert row is not None
        return Accepted(
            row["event_id"],
            row["message_id"],
            row["conversation_id"],
            row["agent_id"],
            bool(row.get("taken_over", False)),
        )


# PostgreSQL's address families in the binary `inet` form (its own numbering, not the OS's).
_PG_AF_INET, _PG_AF_INET6 = 2, 3


@lru_cache(maxsize=4096)
def encode_inet(address: str) -> bytes:
    """A client address (text) in PostgreSQL's binary `inet` form, built once per address:
    asyncpg's own encoder parses the text again for every row, and every attempt stores one."""
    parsed = ipaddress.ip_address(address)
    packed = parsed.packed
    family = _PG_AF_INET if parsed.version == 4 else _PG_AF_INET6
    return bytes((family, len(packed) * 8, 0, len(packed))) + packed


def decode_inet(data: bytes) -> Address | ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    """Binary `inet` as asyncpg gives it: an address, or an interface when it has a netmask."""
    bits, length = data[1], data[3]
    address = ipaddress.ip_address(data[4 : 4 + length])
    return address if bits == length * 8 else ipaddress.ip_interface((address, bits))


async def _init_connection(connection: asyncpg.Connection) -> None:
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(
            kind,
            schema="pg_catalog",
            encoder=lambda value: msgspec.json.encode(value).decode(),
            decoder=msgspec.json.decode,
        )
    await connection.set_type_codec(
        "inet", schema="pg_catalog", encoder=encode_inet, decoder=decode_inet, format="binary"
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Release without asyncpg's default reset query (a round trip per checkout): the webhook's
    statements leave no session state behind (no SET, LISTEN, advisory lock or cursor), and an
    open transaction is still rolled back by asyncpg before this is called."""


async def create_pool(connect: Mapping[str, Any], size: int) -> asyncpg.Pool:
    """The webhook's own asyncpg pool (`connect`: the engine's connection arguments).

    The webhook's statements are single autocommitted round trips; run on bare asyncpg they cost
    the server about a third of what SQLAlchemy's pool and execution path add around them, which
    at hundreds of deliveries a second is most of the request. Connections open as needed, up to
    `size`, and close after five idle minutes.
    """
    pool = await asyncpg.create_pool(
        **connect,
        min_size=1,
        max_size=size,
        init=_init_connection,
        reset=_keep_session,
        timeout=5,
        command_timeout=30,
        server_settings={"application_name": "botlyne-webhook"},
    )
    assert pool is not None
    return pool


class EventWriter:
    """Stores the attempts that were not accepted (rejections, duplicates) in batches, off the
    request path: a refused request costs no database round trip of its own, so a flood of bad
    signatures cannot tie up the pool. Rows are written within `interval` seconds (or as soon as
    `batch` are waiting) with their own `received_at`; `flush()` writes what is waiting now (the
    events listing calls it, so a process shows its own attempts at once), and `aclose()` at
    shutdown writes the rest. When the database refuses a batch it is kept and tried again; past
    `max_pending` rows the oldest are dropped with a WARNING, so an outage cannot exhaust memory.
    Accepted deliveries never go through here: they are stored before their 202."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        *,
        interval: float = 0.2,
        batch: int = 500,
        max_pending: int = 100_000,
    ) -> None:
        self.pool = pool
        self.interval = interval
        self.batch = batch
        self.max_pending = max_pending
        # A deque: dropping the oldest row during an outage costs as little as adding one.
        self._pending: deque[tuple[Any, ...]] = deque()
        # Set while rows wait (the writer sleeps otherwise), and when a batch is full.
        self._waiting = asyncio.Event()
        self._full = asyncio.Event()
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._overflowing = False

    def add(self, record: EventRecord) -> None:
        self._pending.append(
            (
                record.org_id,
                record.integration_id,
                record.outcome,
                record.status_code,
                record.reason,
                record.client_ip,
                record.latency_ms,
                record.delivery_key,
                record.event_type,
                record.received_at or datetime.now(UTC),
            )
        )
        if len(self._pending) > self.max_pending:
            self._pending.popleft()
            if not self._overflowing:  # once per outage, not once per request
                self._overflowing = True
                logger.bind(component="webhook").warning(
                    "webhook events: over {} attempts unrecorded (database unavailable); "
                    "dropping the oldest",
                    self.max_pending,
                )
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
        self._waiting.set()
        if len(self._pending) >= self.batch:
            self._full.set()

    async def flush(self) -> None:
        """Write every row waiting now; raises when the database refuses them (they are kept)."""
        async with self._lock:
            while self._pending:
                rows = list(itertools.islice(self._pending, self.batch))
                async with self.pool.acquire() as connection:
                    await WebhookRepository(connection).record(rows)
                for _ in rows:
                    self._pending.popleft()

    async def _run(self) -> None:
        while True:
            await self._waiting.wait()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._full.wait()
            self._full.clear()
            try:
                await self.flush()
            except Exception as exc:
                logger.bind(component="webhook").warning(
                    "webhook events: {} attempts not recorded yet ({}); retrying",
                    len(self._pending),
                    type(exc).__name__,
                )
                await asyncio.sleep(1.0)
            if not self._pending:
                self._waiting.clear()
                self._overflowing = False

    async def aclose(self) -> None:
        """Stop the background writer and write what is left."""
        task, self._task = self._task, None
        if task is not None:
            # Under the lock: never cut a batch off between its commit and its removal.
            async with self._lock:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception as exc:
            logger.bind(component="webhook").error(
                "webhook events: {} attempts lost at shutdown ({})",
                len(self._pending),
                type(exc).__name__,
            )
