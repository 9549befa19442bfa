"""The only door to generic integrations' callback URLs: signed POSTs of outbound messages.

The request is signed with the integration's current secret in the same `X-Timestamp` /
`X-Signature` scheme Botlyne verifies, so a receiver can reuse one verification routine. Each
integration has its own breaker (`callback:<integration id>`): one customer's broken endpoint
must not hold back every other customer's replies.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec

from app.core.resilience import resilience_manager
from app.core.security.signatures import sign_hmac
from app.gateways.http import post_json


class CallbackGateway:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(
        self, integration_id: str, url: str, secret: str, payload: dict[str, Any]
    ) -> None:
        body = msgspec.json.encode(payload)
        headers = sign_hmac(secret, body, int(time.time()))
        async with resilience_manager.guard(f"callback:{integration_id}"):
            await post_json(self.client, url, content=body, headers=headers)
