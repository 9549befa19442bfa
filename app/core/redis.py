"""The Redis client: optional, shared, and quick to give up.

Every use of Redis has an in-process fallback, so a slow or absent Redis must cost a request at
most a few milliseconds: short socket timeouts, one immediate retry (for a connection a restart
cut), and a blocking pool so a burst waits briefly for a connection instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import Settings

POOL_SIZE = 64
SOCKET_TIMEOUT_SECONDS = 0.1
# Connections a `RedisLane` keeps at most (calls beyond them go through the client).
LANE_SIZE = 32


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


class LaneBusy(Exception):
    """Every connection of a `RedisLane` is in use: send this command through the client."""


class RedisLane:
    """A few connections of the client's own configuration (address, credentials, database,
    TLS, protocol) kept for one caller's short commands on the request path.

    redis-py's client wraps every command in its pool's bookkeeping (a condition and a lock,
    checks for pending data on release, telemetry hooks, its retry wrapper) and every socket
    write and read in a timer of its own: on the webhook that was more server time than the
    command's round trip. A lane takes a connection from a plain list, writes the command
    packed once by the caller (`pack`), reads the reply without timers and gives the connection
    back: the caller bounds the whole call with its own budget. A connection interrupted
    mid-call (timeout, cancellation, I/O error) is closed by redis-py before the error reaches
    the lane, so none is reused with a reply pending; the next call on it connects afresh. A
    connection a Redis restart cut gets one more try at once, as the client's retry gives it.
    With all `size` connections busy (at most the client's own pool size), `call` raises
    `LaneBusy`.
    """

    def __init__(self, redis: Redis, size: int = LANE_SIZE) -> None:
        pool = redis.connection_pool
        options = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        self._connection = partial(pool.connection_class, **options)
        # Never connected: only its encoder is used, to pack commands.
        self._packer = self._connection()
        self._idle: list[AbstractConnection] = []
        self._opened = 0
        # No more than the client itself may open.
        self._size = min(size, pool.max_connections)

    def pack(self, *args: str | int | bytes) -> list[bytes]:
        """The command in wire form, to be sent by `call` as often as needed."""
        return self._packer.pack_command(*args)

    async def call(self, command: list[bytes]) -> Any:
        """Send a packed command and return its reply; an error reply raises, as redis-py's
        `ResponseError` (subclasses included, e.g. `NoScriptError`)."""
        if self._idle:
            connection = self._idle.pop()
        elif self._opened < self._size:
            self._opened += 1
            connection = self._connection()
        else:
            raise LaneBusy
        try:
            try:
                return await _exchange(connection, command)
            except RedisConnectionError:
                # A connection cut since its last use: once more, connecting afresh.
                return await _exchange(connection, command)
        finally:
            self._idle.append(connection)

    async def aclose(self) -> None:
        idle, self._idle = self._idle, []
        await asyncio.gather(*(connection.disconnect() for connection in idle))


async def _exchange(connection: AbstractConnection, command: list[bytes]) -> Any:
    await connection.send_packed_command(command, check_health=False)
    return await connection.read_response()


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
