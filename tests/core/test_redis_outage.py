"""Redis going away while webhooks stream in: no request fails, the limit keeps holding from
memory, the health report turns `degraded` within seconds and back to `healthy` on its own once
Redis returns."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.helpers import PeerOverride, ThreadedTcpProxy, create_integration, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
LIMIT = 20
# The contract's promises: `degraded` within 5 s of Redis stopping, `healthy` within 30 s of it
# coming back.
DEGRADED_WITHIN = 5.0
HEALTHY_WITHIN = 30.0

Client = AsyncTestClient[Any]


@pytest.fixture
def redis_proxy(redis_url: str) -> Iterator[ThreadedTcpProxy]:
    url = make_url(redis_url)
    relay = ThreadedTcpProxy(url.host or "127.0.0.1", url.port or 6379)
    relay.start()
    yield relay
    relay.close()


class Stream:
    """Signed webhook deliveries, one message each, with every status kept."""

    def __init__(self, client: Client, integration: dict[str, Any]) -> None:
        self.client = client
        self.integration = integration
        self.statuses: Counter[int] = Counter()
        self.sent = 0

    async def send(self, count: int) -> Counter[int]:
        statuses: Counter[int] = Counter()
        for _ in range(count):
            self.sent += 1
            payload = {"message": {"body": f"message {self.sent}"}, "sender": {"id": "u-1"}}
            body, headers = signed(self.integration["secret"], payload)
            response = await self.client.post(
                f"/api/v1/integrations/webhook/{self.integration['id']}",
                content=body,
                headers=headers,
            )
            statuses[response.status_code] += 1
        self.statuses.update(statuses)
        return statuses


async def redis_status(client: Client) -> str:
    return str((await client.get("/health/detailed")).json()["checks"]["redis"]["status"])


async def wait_for_redis(client: Client, wanted: str, within: float, stream: Stream) -> None:
    """Fails unless `/health/detailed` reports Redis `wanted` within `within` seconds; the
    webhook stream goes on meanwhile."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await redis_status(client) == wanted:
            return
        await stream.send(1)
        await asyncio.sleep(0.2)
    pytest.fail(f"/health/detailed did not report Redis {wanted!r} within {within} s")


async def test_redis_outage_during_a_webhook_stream(
    database_url: str, redis_url: str, redis_proxy: ThreadedTcpProxy, clean_db: AsyncEngine
) -> None:
    through_proxy = make_url(redis_url).set(host="127.0.0.1", port=redis_proxy.port)
    settings = make_settings(
        database_url, redis_url=through_proxy.render_as_string(hide_password=False)
    )
    app = create_app(settings)
    async with AsyncTestClient(app=PeerOverride(app)) as client:  # type: ignore[arg-type]
        integration = await create_integration(
            client, ADMIN, name="outage", rate_limit_per_minute=LIMIT
        )
        stream = Stream(client, integration)
        assert await redis_status(client) == "healthy"
        assert await stream.send(5) == Counter({202: 5})

        redis_proxy.stop()
        await wait_for_redis(client, "degraded", DEGRADED_WITHIN, stream)
        report = (await client.get("/health/detailed")).json()
        assert report["overall_status"] == "degraded"  # serving on fallbacks, not unhealthy
        # The limit keeps holding from memory: the in-process limiter starts with a full
        # quota, so at most LIMIT more are admitted while Redis is away, and the rest are 429.
        during = await stream.send(2 * LIMIT)
        assert set(during) <= {202, 429}, during
        assert during[429] >= LIMIT
        assert stream.statuses[202] <= 5 + LIMIT

        redis_proxy.start()  # the same address again
        await wait_for_redis(client, "healthy", HEALTHY_WITHIN, stream)

        assert not [status for status in stream.statuses if status >= 500], stream.statuses
        assert set(stream.statuses) <= {202, 429}, stream.statuses

    # Nothing accepted was lost: every 202 has its message.
    async with clean_db.connect() as connection:
        stored = (
            await connection.execute(text("SELECT count(*) FROM messages WHERE role = 'user'"))
        ).scalar_one()
    assert stored == stream.statuses[202]
