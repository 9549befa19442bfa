"""HTTP for real-time events: stream tokens, the Server-Sent Events stream, heartbeats."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
from litestar import Controller, Request, get, post
from litestar.channels import ChannelsPlugin
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.exceptions import NotAuthorizedException
from litestar.params import FromQuery
from litestar.response import ServerSentEvent

from app.core.db import DbSession
from app.domain.events.stream import event_stream
from app.domain.events.tokens import issue_token, principal_for_token, token_key_hash
from app.domain.orgs.auth import Caller, Principal, authenticate, presented_key


class EventToken(msgspec.Struct):
    token: str
    expires_at: datetime
    stream_url: str


class Heartbeat(msgspec.Struct):
    tracked: bool
    presence_grace_seconds: float


class EventController(Controller):
    path = "/events"
    tags = ["events"]

    @post(
        "/token",
        summary="A short-lived token that opens the event stream (for EventSource)",
        description=(
            "Browsers' EventSource cannot send an API key header: open "
            "`GET /api/v1/events/stream?token=…` with this token instead. It expires in two "
            "minutes (an open stream stays open) and opens the stream only."
        ),
    )
    async def create_token(self, db_session: DbSession, principal: Caller) -> EventToken:
        key_hash = await token_key_hash(db_session, principal.key_id)
        if key_hash is None:
            raise NotAuthorizedException("Invalid API key")
        token, expires = issue_token(principal.key_id, key_hash)
        return EventToken(
            token=token,
            expires_at=datetime.fromtimestamp(expires, UTC),
            stream_url=f"/api/v1/events/stream?token={token}",
        )

    @post(
        "/heartbeat",
        summary="An agent is still there (keeps its presence without an open stream)",
        status_code=200,
    )
    async def heartbeat(self, state: State, principal: Caller) -> Heartbeat:
        tracked = principal.role == "agent" and principal.agent_id is not None
        if tracked:
            assert principal.agent_id is not None
            await state.presence.touch(principal.org_id, principal.agent_id)
        return Heartbeat(tracked=tracked, presence_grace_seconds=state.presence.grace_seconds)


async def stream_principal(request: Request, db_session: DbSession, token: str | None) -> Principal:
    """A stream is opened with a stream token (`?token=`) or an API key header; never a key in
    the URL."""
    principal = None
    if token:
        principal = await principal_for_token(db_session, token)
    else:
        key = presented_key(request)
        if key is not None:
            principal = await authenticate(db_session, key)
    if principal is None:
        raise NotAuthorizedException(
            "A valid stream token or API key is required", headers={"WWW-Authenticate": "Bearer"}
        )
    return principal


class EventStreamController(Controller):
    path = "/events"
    tags = ["events"]

    @get(
        "/stream",
        summary="Server-Sent Events for the caller's organization or agent",
        media_type="text/event-stream",
        description=(
            "Authenticated by `?token=` (from `POST /api/v1/events/token`) or an API key header. "
            "Each event is a JSON object with a `type`, sent as the SSE `event` too. An agent key "
            "receives its agent's events and its organization's `queue.changed` and "
            "`agent.status`; an admin key everything of its organization. The first event, "
            "`stream.open`, says the subscription is live; `: keepalive` comments follow when "
            "the stream is idle."
        ),
    )
    async def stream(
        self,
        request: Request,
        db_session: DbSession,
        state: State,
        channels: NamedDependency[ChannelsPlugin],
        token: FromQuery[str | None] = None,
    ) -> ServerSentEvent:
        principal = await stream_principal(request, db_session, token)
        return ServerSentEvent(
            event_stream(
                channels,
                state.presence,
                state.sessionmaker,
                principal,
                state.settings.events_heartbeat_seconds,
            ),
            headers={"Cache-Control": "no-store"},
        )
