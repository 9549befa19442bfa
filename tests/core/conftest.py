"""Fixtures for the security-core tests.

Redis-backed tests use ``REDIS_URL`` when set, else the local ``127.0.0.1:6379``. They
are marked ``redis`` and *fail* (never skip) when the server is unreachable: a silently
skipped limiter test would hide exactly the regressions it exists to catch.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "redis: needs the real Redis")


def core_redis_url() -> str:
    return os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


@pytest.fixture
async def real_redis() -> AsyncIterator[Redis]:
    client = Redis.from_url(core_redis_url(), socket_connect_timeout=2, socket_timeout=5)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        pytest.fail(f"Redis at {core_redis_url()} is unreachable: {exc!r}")
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
