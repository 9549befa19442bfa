"""The request observer: one X-Request-ID per request (in the response and in every log line) and
the request metrics, in one pass.

It is a plain ASGI callable rather than a Litestar `AbstractMiddleware`: it runs on every request,
the probes included, so it does the least work possible. And it wraps the whole application
(`app.asgi_handler`), not each route: Litestar runs `middleware=[...]` only after routing found
a handler, so a 404 or a 405 would carry no request id and go uncounted. Routing still happens
before the response, so the route template is read from the scope once the app returns
(`scope["path_template"]`, set by Litestar's router; absent when nothing matched).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable
from time import perf_counter
from typing import TYPE_CHECKING, Protocol, cast

from app.core.logging import request_id_var

if TYPE_CHECKING:
    from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
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
        # Whatever escapes the app's own exception handlers reaches the server as a 500.
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        in_flight = self.recorder.in_flight
        key = id(scope)
        in_flight[key] = http_scope
        started = perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = perf_counter() - started
            del in_flight[key]
            request_id_var.reset(token)
            self.recorder.observe(method, scope.get("path_template"), status, elapsed)
