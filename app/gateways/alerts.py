"""The only door to the alert webhook (`ALERT_WEBHOOK_URL`): incident and resolution posts.

Each alert is one JSON POST. With `ALERT_WEBHOOK_SECRET` set it is signed in the scheme Botlyne
itself verifies on inbound webhooks (`X-Timestamp`, `X-Signature: sha256=<hex HMAC-SHA256 of
"<timestamp>.<body>">`), so a receiver can check it came from us; without it, it is sent
unsigned. Wrapped the usual way: retry (3 attempts) → breaker "alerts" → the POST with the HTTP
client's timeout.

`send` never raises: an alert that cannot be delivered (receiver down, breaker open) is logged
and counted, and the incident is still in the log at CRITICAL. Whoever raised the alert, a
health check or a breaker callback, carries on.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
import msgspec

from app.config import Settings
from app.core.observability import error_handler
from app.core.resilience import retry_async, with_circuit_breaker
from app.core.security.signatures import sign_hmac
from app.gateways.http import post_json

BREAKER = "alerts"


class AlertGateway:
    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.url = settings.alert_webhook_url
        self.secret = settings.alert_webhook_secret
        self.client = client

    @property
    def configured(self) -> bool:
        return self.url is not None

    @error_handler("alerts", "alert delivery failed")
    async def send(self, alert: dict[str, Any]) -> None:
        if self.url is not None:
            await self._post(self.url, msgspec.json.encode(alert))

    @retry_async(max_attempts=3)
    @with_circuit_breaker(BREAKER)
    async def _post(self, url: str, body: bytes) -> None:
        # Signed per attempt: a retry gets a fresh timestamp.
        headers = sign_hmac(self.secret, body, int(time.time())) if self.secret else {}
        await post_json(self.client, url, content=body, headers=headers)
