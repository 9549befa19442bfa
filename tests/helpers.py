"""Helpers shared by the tests: a client with a chosen peer address, signed webhook requests."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient

from app.core.security.signatures import sign_hmac


class PeerOverride:
    """Runs the app as if the socket peer were `X-Test-Peer` (the test transport has none)."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-peer":
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


def signed(
    secret: str, payload: Any, *, timestamp: int | None = None, peer: str = "203.0.113.7"
) -> tuple[bytes, dict[str, str]]:
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    headers = sign_hmac(secret, body, timestamp if timestamp is not None else int(time.time()))
    headers["Content-Type"] = "application/json"
    headers["X-Test-Peer"] = peer
    return body, headers


async def create_integration(
    client: AsyncTestClient[Any], headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/integrations", json={"name": "site", "type": "generic", **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())
