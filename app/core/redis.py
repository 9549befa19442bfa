"""The Redis client: optional, shared, and quick to give up.

Every use of Redis has an in-process fallback, so a slow or absent Redis must cost a request at
most a few milliseconds: short socket timeouts, one immediate retry (for a connection a restart
cut), and a blocking pool so a burst waits briefly for a connection instead of failing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.config import Settings

POOL_SIZE = 64
SOCKET_TIMEOUT_SECONDS = 0.1
# Connections a `RedisLane` keeps at most.
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


class RedisLane:
    """A few connections of the client's own configuration (address, credentials, database,
    TLS, protocol) kept for one caller's short commands on a hot path.

    redis-py's client wraps every command in its pool's bookkeeping (a condition and a lock,
    checks for pending data on release, telemetry hooks, its retry wrapper) and every socket
    write and read in a timer of its own: on the webhook that was more server time than the
    command's round trip. A lane takes one of its connections (waiting while all `size` are
    busy; never more than the client's own pool allows), writes commands the caller packed
    (`pack`, once for a command sent again and again), reads the replies without timers and
    gives the connection back: the caller bounds the whole call with its own budget. A
    connection interrupted mid-call (timeout, cancellation, I/O error) is closed by redis-py
    before the error reaches the lane, so none is reused with a reply pending; the next call
    on it connects afresh. A connection a Redis restart cut gets one more try at once, as the
    client's retry gives it.
    """

    def __init__(self, redis: Redis, size: int = LANE_SIZE) -> None:
        pool = redis.connection_pool
        options = {**pool.connection_kwargs, "socket_timeout": None, "health_check_interval": 0}
        new = partial(pool.connection_class, **options)
        self._connections = [new() for _ in range(min(size, pool.max_connections))]
        self._idle: asyncio.LifoQueue[AbstractConnection] = asyncio.LifoQueue()
        for connection in self._connections:
            self._idle.put_nowait(connection)

    def pack(self, *args: str | int | bytes) -> list[bytes]:
        """The command in wire form (with the client's encoding), for `call` or `call_all`."""
        return self._connections[0].pack_command(*args)

    async def call(self, command: list[bytes]) -> Any:
        """Send a packed command and return its reply; an error reply raises, as redis-py's
        `ResponseError` (subclasses included, e.g. `NoScriptError`)."""
        return (await self._run(command, 1))[0]

    async def call_all(self, commands: Sequence[list[bytes]]) -> list[Any]:
        """Send packed commands in one write (a pipeline) and return their replies in order;
        the first error reply raises once every reply is read."""
        return await self._run([part for command in commands for part in command], len(commands))

    async def _run(self, wire: list[bytes], replies: int) -> list[Any]:
        connection = await self._idle.get()
        try:
            try:
                return await _exchange(connection, wire, replies)
            except RedisConnectionError:
                # A connection cut since its last use: once more, connecting afresh.
                return await _exchange(connection, wire, replies)
        finally:
            self._idle.put_nowait(connection)

    async def aclose(self) -> None:
        await asyncio.gather(*(connection.disconnect() for connection in self._connections))


async def _exchange(connection: AbstractConnection, wire: list[bytes], replies: int) -> list[Any]:
    await connection.send_packed_command(wire, check_health=False)
    answers: list[Any] = []
    error: ResponseError | None = None
    for _ in range(replies):
        try:
            answers.append(await connection.read_response())
        except ResponseError as exc:
            error = error or exc
            answers.append(exc)
    if error is not None:
        raise error
    return answers


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
