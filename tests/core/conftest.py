"""Fixtures for the security-core tests.

Redis-backed tests use the ``redis_url`` fixture: they skip when ``REDIS_URL`` is unset (a fresh
machine), and *fail* when it is set but the server is unreachable. CI sets it and forbids skips,
so a limiter test can never be skipped silently there.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs the real Redis")


@pytest.fixture
async def real_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.fail(f"Redis at {redis_url} is unreachable: {type(exc).__name__}: {exc}")
    yield client
    await client.aclose()


@pytest.fixture
async def key_prefix(real_redis: Redis) -> AsyncIterator[str]:
    """A prefix no other test (or concurrent run) uses; its keys are deleted afterwards."""
    prefix = f"test:rl:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in real_redis.scan_iter(match=prefix + "*", count=1000)]
    if keys:
        await real_redis.delete(*keys)
