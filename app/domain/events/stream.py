"""One client's event stream: its subscriptions, presence and heartbeats, as SSE messages."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import Any

import anyio
import msgspec
from litestar.channels import ChannelsPlugin
from litestar.response import ServerSentEventMessage
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.events import subscriptions
from app.domain.agents.presence import Presence
from app.domain.orgs.auth import Principal
from app.domain.orgs.repository import ApiKeyLookup

# An open stream re-checks its key this often and ends once the key is revoked.
KEY_CHECK_SECONDS = 60.0
RETRY_MILLISECONDS = 3000


def _message(kind: str, data: dict[str, Any]) -> ServerSentEventMessage:
    return ServerSentEventMessage(
        data=msgspec.json.encode({"type": kind, **data}).decode(), event=kind
    )


def _event_message(data: bytes) -> ServerSentEventMessage:
    try:
        decoded = msgspec.json.decode(data)
        kind, event_id = str(decoded["type"]), decoded.get("id")
    except (msgspec.DecodeError, KeyError, TypeError):
        return ServerSentEventMessage(data=data.decode(errors="replace"))
    return ServerSentEventMessage(data=data.decode(), event=kind, id=event_id)


async def _key_active(sessionmaker: async_sessionmaker[AsyncSession], principal: Principal) -> bool:
    try:
        async with sessionmaker() as session:
            return await ApiKeyLookup(session).active(principal.key_id) is not None
    except Exception:
        return True  # a database hiccup does not cut streams; the next check decides


async def event_stream(
    channels: ChannelsPlugin,
    presence: Presence,
    sessionmaker: async_sessionmaker[AsyncSession],
    principal: Principal,
    heartbeat_seconds: float,
) -> AsyncGenerator[ServerSentEventMessage, None]:
    """Every event the principal may see, a `: keepalive` comment every `heartbeat_seconds`, and
    for an agent a presence touch several times per grace period while the stream is open."""
    log = logger.bind(component="events", key_id=str(principal.key_id))
    names = subscriptions(principal.org_id, principal.role, principal.agent_id)
    agent_id = principal.agent_id if principal.role == "agent" else None
    try:
        subscriber = await channels.subscribe(names)
    except Exception as exc:
        log.warning("event stream refused: cannot subscribe ({})", type(exc).__name__)
        yield ServerSentEventMessage(
            data='{"type": "stream.error"}', event="stream.error", retry=RETRY_MILLISECONDS
        )
        return
    clock = asyncio.get_running_loop().time
    touch_every = presence.touch_interval
    tick = min(heartbeat_seconds, touch_every) if agent_id else heartbeat_seconds
    last_sent = last_touch = last_check = clock()
    events = subscriber.iter_events()
    pending: asyncio.Future[bytes] | None = None
    log.debug("event stream opened")
    try:
        if agent_id is not None:
            await presence.touch(principal.org_id, agent_id)
        # Subscribed: from here on nothing is missed. Clients re-read their state on this event.
        open_message = _message(
            "stream.open",
            {
                "org_id": str(principal.org_id),
                "role": principal.role,
                "agent_id": str(agent_id) if agent_id else None,
                "heartbeat_seconds": heartbeat_seconds,
                "presence_grace_seconds": presence.grace_seconds,
            },
        )
        open_message.retry = RETRY_MILLISECONDS
        yield open_message
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(events))
            done, _ = await asyncio.wait({pending}, timeout=tick)
            now = clock()
            if pending in done:
                try:
                    data = pending.result()
                except StopAsyncIteration:
                    return
                pending = None
                yield _event_message(data)
                last_sent = now
            if agent_id is not None and now - last_touch >= touch_every:
                await presence.touch(principal.org_id, agent_id)
                last_touch = now
            if now - last_check >= KEY_CHECK_SECONDS:
                last_check = now
                if not await _key_active(sessionmaker, principal):
                    yield _message("stream.closed", {"reason": "key_revoked"})
                    return
            if now - last_sent >= heartbeat_seconds:
                yield ServerSentEventMessage(comment="keepalive", data=None)
                last_sent = now
    finally:
        if pending is not None:
            pending.cancel()
        # The client is gone (or we stop): clean up even though this task is being cancelled.
        with anyio.CancelScope(shield=True):
            with contextlib.suppress(Exception):
                await channels.unsubscribe(subscriber, names)
            if agent_id is not None:
                # The grace period runs from the moment the stream closed.
                await presence.touch(principal.org_id, agent_id)
        log.debug("event stream closed")
