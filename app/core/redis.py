"""The Redis client: optional, shared, and quick to give up.

Every use of Redis has an in-process fallback, so a slow or absent Redis must cost a request at
most a few milliseconds: short socket timeouts, one immediate retry (for a connection a restart
cut), and a blocking pool so a burst waits briefly for a connection instead of failing.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        # One immediate retry, on connection errors only (the pool's setting is the one the
        # client uses): a pooled connection that a Redis restart cut fails on first use, and
        # the retry opens a fresh one. A Redis that is really down is refused twice at once; a
        # timeout is not retried, every caller bounds the whole call with its own budget.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return Redis(connection_pool=pool)


# What a Redis call that did not answer in time raises (our own budget or the socket's).
TIMEOUTS = (TimeoutError, RedisTimeoutError)


class OutageJudge:
    """Decides when failing Redis calls amount to an outage, for the users of Redis that fall
    back to process memory (rate limits, circuit breakers).

    Any error but a timeout is an outage at once (connection refused or reset, protocol
    errors). A timeout is not, on its own: under load one answer can miss a 100 ms budget
    while Redis is fine, and falling back for that would make shared state per process for a
    probe interval. Timeouts make an outage once they have gone on for `patience` seconds with
    no answer in between. The failing call itself is decided from memory either way.
    """

    def __init__(self, patience: float = 1.0, clock: Callable[[], float] = time.monotonic):
        self.patience = patience
        self._clock = clock
        # When the current run of timeouts (no answer from Redis in between) began.
        self._timing_out_since: float | None = None

    def answered(self) -> None:
        self._timing_out_since = None

    def is_outage(self, exc: BaseException) -> bool:
        if not isinstance(exc, TIMEOUTS):
            self._timing_out_since = None
            return True
        now = self._clock()
        if self._timing_out_since is None:
            self._timing_out_since = now
        if now - self._timing_out_since >= self.patience:
            self._timing_out_since = None
            return True
        return False
