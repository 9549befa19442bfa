"""The request observer: one X-Request-ID per request (in the response and in every log line),
the security headers every response carries, and the request metrics, in one pass.

It is a plain ASGI callable rather than a Litestar `AbstractMiddleware`: it runs on every request,
the probes included, so it does the least work possible. And it wraps the whole application
(`app.asgi_handler`), not each route: Litestar runs `middleware=[...]` only after routing found
a handler, so a 404 or a 405 would carry no request id and go uncounted. Routing still happens
before the response, so the route template is read from the scope once the app returns
(`scope["path_template"]`, set by Litestar's router; absent when nothing matched).

The security headers are constants appended with the request id, so they cost the probes
nothing measurable: no MIME sniffing, no framing, no referrer to other sites, and under `/api/`
no caching (keys and secrets travel in those bodies) unless the handler chose its own
`Cache-Control`. The console adds its Content-Security-Policy itself.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, cast

from app.core.logging import request_id_var

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, ReceiveMessage, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
# Set in the scope when the client went away before the request was read: the error handlers
# then log it as what it is, not as a server error.
CLIENT_GONE = "botlyne.client_gone"
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
)
CACHE_CONTROL = b"cache-control"
NO_STORE = (CACHE_CONTROL, b"no-store")
API_PREFIX = "/api/"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


class RequestRecorder(Protocol):
    """Where the observer reports requests (the application's metrics)."""

    # Requests being served, by id(scope); read at scrape time for the in-flight gauge, so a
    # request costs one dict insert and one delete instead of labelled gauge updates.
    in_flight: dict[int, HTTPScope]

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None: ...


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's id when it is short and plain, else a fresh one (never trust it blindly)."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.match(value):
                return value.decode("ascii")
            break
    # Not a secret (a client may choose its own), so the fast generator will do: uuid4 costs a
    # system call per request.
    return f"{random.getrandbits(128):032x}"


class RequestObserver:
    __slots__ = ("app", "recorder")

    def __init__(self, app: ASGIApp, recorder: RequestRecorder) -> None:
        self.app = app
        self.recorder = recorder

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Narrowed by hand: mypy does not narrow the Scope union on "type".
        http_scope = cast("HTTPScope", scope)
        method = http_scope["method"]
        request_id = request_id_from(scope["headers"])
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        token = request_id_var.set(request_id)
        api = http_scope["path"].startswith(API_PREFIX)
        # Whatever escapes the app's own exception handlers reaches the server as a 500.
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                own = message.get("headers", ())
                headers = [*own, header, *SECURITY_HEADERS]
                # Only the application's headers can name a cache policy: ours never do.
                if api and all(name.lower() != CACHE_CONTROL for name, _ in own):
                    headers.append(NO_STORE)
                message["headers"] = headers
            await send(message)

        async def receive_noting_disconnect() -> ReceiveMessage:
            message = await receive()
            if message["type"] == "http.disconnect":
                scope[CLIENT_GONE] = True  # type: ignore[literal-required]
            return message

        in_flight = self.recorder.in_flight
        key = id(scope)
        in_flight[key] = http_scope
        started = perf_counter()
        try:
            await self.app(scope, receive_noting_disconnect, send_with_id)
        finally:
            elapsed = perf_counter() - started
            del in_flight[key]
            request_id_var.reset(token)
            self.recorder.observe(method, scope.get("path_template"), status, elapsed)
