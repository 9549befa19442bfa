"""Real-time events: the one publisher every part of the application hands its events to.

Events are JSON objects with a `type` (`assignment.offered`, `assignment.removed`,
`message.received`, `queue.changed`, `agent.status`, `delivery.failed`), published on Litestar
channels: Redis pub/sub when `REDIS_URL` is set (so a subscriber on any process sees an event
raised on any other), in memory otherwise. Who receives what is decided here, by channel:

- `botlyne:org:<org>`          queue and status events, for every key of the organization;
- `botlyne:org:<org>:admin`    everything else of the organization, for its admin keys;
- `botlyne:agent:<agent>`      one agent's own events (its assignments, its messages).

An event of an agent goes to that agent's channel and to the admin channel; an organization-wide
event goes to the organization channel only, so an admin (subscribed to both organization
channels) receives every event once.

Publishing never fails the operation that raised the event: errors are logged and dropped, and
each publish has a short time budget. Events raised inside a database transaction are held on the
session and published once it commits (`publish_after_commit`), dropped if it rolls back. Delivery
is at most once: a subscriber that was not connected when an event was published does not get it
later, so clients re-read state through the API when they (re)connect.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec
from litestar.channels.backends.base import ChannelsBackend
from litestar.channels.backends.memory import MemoryChannelsBackend
from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from loguru import logger
from sqlalchemy import event as orm_event
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from sqlalchemy.orm import Session

    from app.config import Settings
    from app.core.redis import RedisLane

# Events every key of an organization may see; all others are an agent's or the admins' only.
ORG_WIDE = frozenset({"queue.changed", "agent.status"})
PUBLISH_TIMEOUT_SECONDS = 1.0
# Connections of the `RedisLane` a process publishes on (`redis_publisher`).
PUBLISH_CONNECTIONS = 4
BACKLOG_LIMIT = 10_000
# Events published in one round trip at most, by the background publisher.
PUBLISH_BATCH = 200
_SESSION_KEY = "botlyne.events"
_PENDING_KEY = "botlyne.events.pending"

# Publishes a batch of encoded events, each to its channels, in one go.
Publisher = Callable[[Sequence[tuple[bytes, list[str]]]], Awaitable[None]]
Event = tuple[uuid.UUID, Mapping[str, Any], uuid.UUID | None]

_QUEUE_SNAPSHOT = text(
    "SELECT count(*) AS depth, min(enqueued_at) AS oldest, now() AS now "
    "FROM agent_queue WHERE org_id = :org_id AND status = 'waiting'"
)


def org_channel(org_id: uuid.UUID | str) -> str:
    return f"botlyne:org:{org_id}"


def admin_channel(org_id: uuid.UUID | str) -> str:
    return f"botlyne:org:{org_id}:admin"


def agent_channel(agent_id: uuid.UUID | str) -> str:
    return f"botlyne:agent:{agent_id}"


def channels_for(
    org_id: uuid.UUID | str, event_type: str, agent_id: uuid.UUID | str | None
) -> list[str]:
    """Where an event goes (see the module docstring)."""
    if event_type in ORG_WIDE:
        return [org_channel(org_id)]
    channels = [admin_channel(org_id)]
    if agent_id is not None:
        channels.append(agent_channel(agent_id))
    return channels


def subscriptions(org_id: uuid.UUID, role: str, agent_id: uuid.UUID | None) -> list[str]:
    """The channels a key of `role` listens to: never another organization's."""
    if role == "admin":
        return [org_channel(org_id), admin_channel(org_id)]
    channels = [org_channel(org_id)]
    if agent_id is not None:
        channels.append(agent_channel(agent_id))
    return channels


class EventBus:
    """The application's one publisher. Without a `publisher` it is a no-op (a worker process
    without Redis has nobody to tell)."""

    def __init__(self, publisher: Publisher | None = None, engine: AsyncEngine | None = None):
        self._publisher = publisher
        # Used only to read the queue's depth for `queue.changed`, after the change committed.
        self._engine = engine
        self._backlog: deque[tuple[list[Event], list[uuid.UUID]]] = deque()
        self._drainer: asyncio.Task[None] | None = None
        self._closed = False
        self._overflowing = False
        # One warning per outage, not one per event: a Redis that is down fails every publish.
        self._failing = False

    @property
    def enabled(self) -> bool:
        return self._publisher is not None and not self._closed

    def bind(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        """Sessions made by `sessionmaker` carry this bus, for `publish_after_commit`."""
        sessionmaker.configure(info={_SESSION_KEY: self})

    async def publish(
        self, org_id: uuid.UUID, event: Mapping[str, Any], agent_id: uuid.UUID | None = None
    ) -> None:
        """Publish now; never raises."""
        await self._publish([(org_id, event, agent_id)])

    async def _publish(self, events: Sequence[Event]) -> None:
        if not self.enabled or not events:
            return
        assert self._publisher is not None
        try:
            batch = [
                (
                    msgspec.json.encode(_envelope(org_id, event)),
                    channels_for(org_id, str(event["type"]), agent),
                )
                for org_id, event, agent in events
            ]
            async with asyncio.timeout(PUBLISH_TIMEOUT_SECONDS):
                await self._publisher(batch)
        except Exception as exc:
            if self._closed:
                return
            log = logger.bind(component="events", event_type=str(events[0][1]["type"]))
            if self._failing:
                log.debug("events not published: {}: {}", type(exc).__name__, exc)
            else:
                self._failing = True
                log.warning(
                    "events not published until the backend answers again: {}: {}",
                    type(exc).__name__,
                    exc,
                )
            return
        if self._failing:
            self._failing = False
            logger.bind(component="events").info("events are published again")

    async def publish_queue_changed(self, org_id: uuid.UUID) -> None:
        if not self.enabled or self._engine is None:
            return
        try:
            async with self._engine.connect() as connection:
                row = (await connection.execute(_QUEUE_SNAPSHOT, {"org_id": org_id})).one()
        except Exception as exc:
            logger.bind(component="events").warning("queue snapshot failed: {}", type(exc).__name__)
            return
        wait = (row.now - row.oldest).total_seconds() if row.oldest is not None else None
        await self.publish(
            org_id,
            {
                "type": "queue.changed",
                "depth": int(row.depth),
                "oldest_enqueued_at": row.oldest,
                "oldest_wait_seconds": round(wait, 3) if wait is not None else None,
            },
        )

    def publish_soon(
        self, events: Iterable[Event] = (), queue_orgs: Iterable[uuid.UUID] = ()
    ) -> None:
        """Publish in the background, in order, without making the caller wait.

        One background task publishes everything handed over: the events waiting when it
        comes round, up to `PUBLISH_BATCH`, in one round trip, then the queues of those
        batches, each once. A busy process thus publishes over one Redis connection and pays
        one round trip for many events, instead of one per event. At most `BACKLOG_LIMIT`
        batches wait; past that the oldest are dropped (events are at most once anyway, and a
        Redis that stalls must not grow the process)."""
        events, queue_orgs = list(events), list(queue_orgs)
        if not self.enabled or not (events or queue_orgs):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if len(self._backlog) >= BACKLOG_LIMIT:
            self._backlog.popleft()
            if not self._overflowing:
                self._overflowing = True
                logger.bind(component="events").warning(
                    "event backlog full ({} waiting); dropping the oldest", BACKLOG_LIMIT
                )
        self._backlog.append((events, queue_orgs))
        if self._drainer is None:
            self._drainer = loop.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self._backlog:
                events: list[Event] = []
                queue_orgs: dict[uuid.UUID, None] = {}
                while self._backlog and len(events) < PUBLISH_BATCH:
                    more, orgs = self._backlog.popleft()
                    events += more
                    queue_orgs.update(dict.fromkeys(orgs))
                await self._publish(events)
                for org_id in queue_orgs:
                    await self.publish_queue_changed(org_id)
        finally:
            self._drainer = None
            self._overflowing = False

    def close(self) -> None:
        """Stop publishing (the channels are shutting down); later events are dropped."""
        self._closed = True

    async def aclose(self) -> None:
        """Let events already handed over finish (briefly), then stop."""
        if self._drainer is not None:
            await asyncio.wait([self._drainer], timeout=2.0)
        self._closed = True


def _envelope(org_id: uuid.UUID, event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "type": event["type"],
        "id": uuid.uuid4().hex,
        "at": datetime.now(UTC),
        "org_id": org_id,
        **{key: value for key, value in event.items() if key != "type"},
    }


class _Pending:
    """Events raised in a session's transaction, published when it commits."""

    def __init__(self, bus: EventBus) -> None:
        self.bus = bus
        self.events: list[Event] = []
        self.queue_orgs: dict[uuid.UUID, None] = {}

    def after_commit(self, _session: Session) -> None:
        events, orgs = self.events, list(self.queue_orgs)
        self.events, self.queue_orgs = [], {}
        self.bus.publish_soon(events, orgs)

    def after_rollback(self, _session: Session) -> None:
        self.events, self.queue_orgs = [], {}


def _pending(session: AsyncSession) -> _Pending | None:
    bus = session.info.get(_SESSION_KEY)
    if not isinstance(bus, EventBus) or not bus.enabled:
        return None
    pending = session.info.get(_PENDING_KEY)
    if pending is None:
        pending = session.info[_PENDING_KEY] = _Pending(bus)
        orm_event.listen(session.sync_session, "after_commit", pending.after_commit)
        orm_event.listen(session.sync_session, "after_rollback", pending.after_rollback)
    return pending


def publish_after_commit(
    session: AsyncSession,
    org_id: uuid.UUID,
    event: Mapping[str, Any],
    agent_id: uuid.UUID | None = None,
) -> None:
    """Publish `event` once the session's transaction commits (nothing if it rolls back, or if
    the session was not made by a sessionmaker bound to a bus)."""
    pending = _pending(session)
    if pending is not None:
        pending.events.append((org_id, event, agent_id))


def queue_changed_after_commit(session: AsyncSession, org_id: uuid.UUID) -> None:
    """Publish the organization's queue depth and oldest wait once the transaction commits."""
    pending = _pending(session)
    if pending is not None:
        pending.queue_orgs[org_id] = None


class ResilientRedisPubSubBackend(RedisChannelsPubSubBackend):
    """Redis pub/sub that outlives a Redis outage: the listening loop logs, waits and resumes
    (redis-py subscribes again on reconnect) instead of ending silently."""

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        failing = False
        while True:
            try:
                async for item in super().stream_events():
                    if failing:
                        logger.bind(component="events").info("event stream: Redis is back")
                        failing = False
                    yield item
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    logger.bind(component="events").warning(
                        "event stream: Redis failed ({}); retrying", type(exc).__name__
                    )
                failing = True
                await asyncio.sleep(1.0)


def create_events_redis(settings: Settings) -> Redis | None:
    """The event stream's own Redis client: pub/sub holds a connection open and waits on it, so
    it does not share the pool (and the 100 ms budget) of the request path's client."""
    if settings.redis_url is None:
        return None
    from redis.asyncio import Redis

    return Redis.from_url(
        settings.redis_url,
        socket_connect_timeout=2.0,
        socket_timeout=5.0,
        health_check_interval=30,
    )


def channels_backend(redis: Redis | None) -> ChannelsBackend:
    if redis is None:
        return MemoryChannelsBackend()
    return ResilientRedisPubSubBackend(redis=redis, key_prefix="BOTLYNE_CHANNELS")


def redis_publisher(lane: RedisLane) -> Publisher:
    """Publish straight to Redis pub/sub: a batch is one pipelined round trip of PUBLISH
    commands (what the channels' Redis backend subscribes to), on `lane` (of
    `PUBLISH_CONNECTIONS`)."""

    async def publish(batch: Sequence[tuple[bytes, list[str]]]) -> None:
        commands = [
            lane.pack("PUBLISH", channel, data) for data, channels in batch for channel in channels
        ]
        await lane.call_all(commands)

    return publish


def channels_publisher(backend: ChannelsBackend) -> Publisher:
    """Publish through a channels backend, one event after another (the in-memory one)."""

    async def publish(batch: Sequence[tuple[bytes, list[str]]]) -> None:
        for data, channels in batch:
            await backend.publish(data, channels)

    return publish
