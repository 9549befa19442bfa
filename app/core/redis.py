"""The Redis client: optional, shared, and quick to give up.

Every use of Redis has an in-process fallback, so a slow or absent Redis must cost a request at
most a few milliseconds: short socket timeouts, no client-side retries, and a blocking pool so a
burst waits briefly for a connection instead of failing.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from app.config import Settings

POOL_SIZE = 64
SOCKET_TIMEOUT_SECONDS = 0.1


def create_redis(settings: Settings) -> Redis | None:
    if settings.redis_url is None:
        return None
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=POOL_SIZE,
        timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
    )
    return Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
