"""Request context middleware: one X-Request-ID per request, in the response and in every log line.

Written as a plain ASGI callable rather than a Litestar `AbstractMiddleware` subclass: it runs on
every request, including the probes, so it does the least work possible.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import TYPE_CHECKING

from app.core.logging import request_id_var

if TYPE_CHECKING:
    from litestar.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID_HEADER = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:\-]{1,128}$")


def request_id_from(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The client's id when it is short and plain, else a fresh one (never trust it blindly)."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if _SANE_ID.match(value):
                return value.decode("ascii")
            break
    return uuid.uuid4().hex


def request_context_middleware(app: ASGIApp) -> ASGIApp:
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        request_id = request_id_from(scope["headers"])
        encoded = request_id.encode("ascii")
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((REQUEST_ID_HEADER, encoded))
                message["headers"] = headers
            await send(message)

        try:
            await app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)

    return middleware
