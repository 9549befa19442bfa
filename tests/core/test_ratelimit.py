"""GCRA rate limiting: exactness, multi-limit atomicity, Redis/memory parity, fallback."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import TimeoutError as RedisTimeoutError

from app.core.security.ratelimit import (
    GCRA_LUA,
    Decision,
    FallbackRateLimiter,
    Limit,
    LocalFirstLimiter,
    MemoryRateLimiter,
    RedisRateLimiter,
    policy_header,
    ratelimit_header,
)
from tests.helpers import TcpProxy

MINUTE = Limit("minute", 60, 60)
HOUR = Limit("hour", 1000, 3600)


class FakeClock:
    """Monotonic clock in whole microseconds, so tests can step exactly."""

    def __init__(self) -> None:
        self.us = 1_000_000_000

    def __call__(self) -> float:
        return self.us / 1_000_000

    def advance(self, seconds: float) -> None:
        self.us += round(seconds * 1_000_000)


def summary(decision: Decision) -> tuple[object, ...]:
    return (
        decision.allowed,
        decision.remaining,
        decision.reset_seconds,
        decision.retry_after,
        decision.limit.name,
        tuple((s.limit.name, s.blocked, s.remaining) for s in decision.limits),
    )


# --- value objects and headers ------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "quota", "window"),
    [("", 1, 1), ("a:b", 1, 1), ('a"b', 1, 1), ("ok", 0, 1), ("ok", 1, 0), ("ok", 2_000_001, 2)],
)
def test_limit_validation(name: str, quota: int, window: int) -> None:
    with pytest.raises(ValueError, match=r"limit name|must be >= 1|quota too large"):
        Limit(name, quota, window)


def test_limit_intervals() -> None:
    assert MINUTE.interval_us == 1_000_000
    assert HOUR.interval_us == 3_600_000
    odd = Limit("odd", 7, 60)
    assert odd.interval_us == 8_571_428
    assert odd.tolerance_us == 7 * 8_571_428


def test_headers() -> None:
    assert policy_header([MINUTE, HOUR]) == '"minute";q=60;w=60, "hour";q=1000;w=3600'
    limiter = MemoryRateLimiter(clock=FakeClock())
    decision = limiter.hit_now("k", [MINUTE, HOUR])
    assert ratelimit_header(decision) == '"minute";r=59;t=1'


async def test_bad_calls_raise() -> None:
    limiter = MemoryRateLimiter()
    with pytest.raises(ValueError, match="non-empty string"):
        await limiter.hit("", [MINUTE])
    with pytest.raises(ValueError, match="at least one limit"):
        await limiter.hit("k", [])
    with pytest.raises(ValueError, match="unique"):
        await limiter.hit("k", [MINUTE, Limit("minute", 5, 5)])
    with pytest.raises(ValueError, match="max_keys"):
        MemoryRateLimiter(max_keys=0)


# --- memory limiter (deterministic clock) -------------------------------------------


def test_memory_exact_burst_then_refill() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    decisions = [limiter.hit_now("k", [MINUTE]) for _ in range(60)]
    assert all(d.allowed for d in decisions)
    assert [d.remaining for d in decisions] == list(range(59, -1, -1))
    assert decisions[-1].reset_seconds == 60

    denied = limiter.hit_now("k", [MINUTE])
    assert (denied.allowed, denied.remaining, denied.retry_after) == (False, 0, 1)

    clock.advance(0.999_999)
    assert not limiter.hit_now("k", [MINUTE]).allowed
    clock.advance(0.000_001)
    assert limiter.hit_now("k", [MINUTE]).allowed  # exactly one cell came back
    assert not limiter.hit_now("k", [MINUTE]).allowed

    clock.advance(60)
    assert sum(limiter.hit_now("k", [MINUTE]).allowed for _ in range(70)) == 60


def test_memory_non_integer_interval_keeps_exact_burst() -> None:
    limiter = MemoryRateLimiter(clock=FakeClock())
    odd = Limit("odd", 7, 60)
    assert [limiter.hit_now("k", [odd]).allowed for _ in range(8)] == [True] * 7 + [False]


def test_memory_rejection_by_one_limit_does_not_consume_the_other() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    short, long = Limit("short", 2, 1), Limit("long", 5, 3600)
    for _ in range(10):
        limiter.hit_now("k", [short, long])
    decision = limiter.hit_now("k", [short, long])
    statuses = {s.limit.name: s for s in decision.limits}
    assert decision.limit == short
    assert statuses["short"].blocked
    assert not statuses["long"].blocked
    assert statuses["long"].remaining == 3  # only the 2 admitted requests counted


def test_memory_most_constraining_limit_is_reported() -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    minute, hour = Limit("minute", 5, 60), Limit("hour", 3, 3600)
    results = [limiter.hit_now("k", [minute, hour]) for _ in range(4)]
    assert [r.limit.name for r in results] == ["hour"] * 4
    assert [r.remaining for r in results[:3]] == [2, 1, 0]
    assert not results[3].allowed
    assert results[3].retry_after == 1200


def test_memory_evicts_least_recently_used() -> None:
    limiter = MemoryRateLimiter(max_keys=3, clock=FakeClock())
    one = Limit("one", 1, 3600)
    for key in "abc":
        assert limiter.hit_now(key, [one]).allowed
    assert not limiter.hit_now("a", [one]).allowed  # touches "a": now most recent
    limiter.hit_now("d", [one])
    assert len(limiter) == 3
    assert "b" not in limiter
    assert "a" in limiter
    # Evicted history is forgotten: "b" gets a fresh allowance, "a" still does not.
    assert limiter.hit_now("b", [one]).allowed
    assert not limiter.hit_now("a", [one]).allowed


def test_memory_bounded_under_key_flood() -> None:
    limiter = MemoryRateLimiter(max_keys=100, clock=FakeClock())
    for i in range(5_000):
        limiter.hit_now(f"k{i}", [MINUTE])
    assert len(limiter) == 100


@given(
    steps=st.lists(st.integers(0, 2_000_000), max_size=120),
    quota=st.integers(1, 8),
    window=st.integers(1, 6),
)
def test_gcra_rate_bound_and_exact_retry(steps: list[int], quota: int, window: int) -> None:
    clock = FakeClock()
    limiter = MemoryRateLimiter(clock=clock)
    limit = Limit("l", quota, window)
    start, admitted = clock.us, 0
    for step in steps:
        clock.us += step
        decision = limiter.hit_now("k", [limit])
        admitted += decision.allowed
        # Never more than the burst plus what has been earned since the start.
        assert admitted <= quota + (clock.us - start) // limit.interval_us
        if not decision.allowed:
            wait = decision.limits[0].wait_us
            assert decision.retry_after == -(-wait // 1_000_000)
            clock.us += wait - 1
            assert not limiter.hit_now("k", [limit]).allowed
            clock.us += 1
            assert limiter.hit_now("k", [limit]).allowed
            admitted += 1


# --- Redis limiter -----------------------------------------------------------------


@pytest.mark.redis
async def test_redis_exact_burst_then_retry_after(real_redis: Redis, key_prefix: str) -> None:
    limiter = RedisRateLimiter(real_redis, prefix=key_prefix)
    decisions = [await limiter.hit("client", [MINUTE]) for _ in range(61)]
    assert [d.allowed for d in decisions] == [True] * 60 + [False]
    assert [d.remaining for d in decisions[:60]] == list(range(59, -1, -1))
    assert decisions[60].retry_after == 1
    assert decisions[60].reset_seconds == 60
    ttl = await real_redis.pttl(f"{key_prefix}minute:client")
    assert 58_000 < ttl <= 60_000


@pytest.mark.redis
async def test_redis_refills_one_cell_per_interval(real_redis: Redis, key_prefix: str) -> None:
    limiter = RedisRateLimiter(real_redis, prefix=key_prefix)
    fast = Limit("fast", 10, 1)  # one cell per 100 ms
    assert sum([(await limiter.hit("k", [fast])).allowed for _ in range(12)]) == 10
    await asyncio.sleep(0.12)
    assert (await limiter.hit("k", [fast])).allowed
    assert not (await limiter.hit("k", [fast])).allowed


@pytest.mark.redis
async def test_redis_both_limits_enforced(real_redis: Redis, key_prefix: str) -> None:
    limiter = RedisRateLimiter(real_redis, prefix=key_prefix)
    minute, hour = Limit("minute", 3, 60), Limit("hour", 5, 3600)
    results = [await limiter.hit("a", [minute, hour]) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[3].limit == minute
    hour_key = f"{key_prefix}hour:a"
    hour_tat = await real_redis.get(hour_key)
    assert {s.limit.name: s.remaining for s in results[3].limits}["hour"] == 2
    await limiter.hit("a", [minute, hour])  # rejected again: hour TAT must not move
    assert await real_redis.get(hour_key) == hour_tat

    minute, hour = Limit("minute", 5, 60), Limit("hour", 3, 3600)
    results = [await limiter.hit("b", [minute, hour]) for _ in range(4)]
    assert [r.allowed for r in results] == [True, True, True, False]
    assert results[3].limit == hour
    assert results[3].retry_after == 1200


@pytest.mark.redis
@pytest.mark.usefixtures("real_redis")
async def test_redis_concurrent_hits_admit_exactly_quota(key_prefix: str, redis_url: str) -> None:
    # A blocking pool smaller than the burst: requests queue for a connection instead
    # of failing with MaxConnectionsError (the default pool allows only 100).
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=32, timeout=5)
    client = Redis(connection_pool=pool)
    try:
        limiter = RedisRateLimiter(client, prefix=key_prefix)
        decisions = await asyncio.gather(*(limiter.hit("hot", [MINUTE, HOUR]) for _ in range(200)))
    finally:
        await client.aclose()
        await pool.aclose()
    assert sum(d.allowed for d in decisions) == 60
    assert all(d.retry_after is not None and d.retry_after >= 1 for d in decisions if not d.allowed)
    assert sorted(d.remaining for d in decisions if d.allowed) == list(range(60))


@pytest.mark.redis
async def test_fallback_waits_for_a_busy_connection(key_prefix: str, redis_url: str) -> None:
    # One connection for five concurrent hits: they take turns on Redis, none is decided from
    # memory, and the count stays exact.
    client = Redis.from_url(redis_url, max_connections=1)
    limiter = FallbackRateLimiter(client, timeout=1.0, prefix=key_prefix)
    try:
        decisions = await asyncio.gather(*(limiter.hit("k", [MINUTE]) for _ in range(5)))
    finally:
        await limiter.aclose()
        await client.aclose()
    assert all(d.allowed for d in decisions)
    assert sorted(d.remaining for d in decisions) == [55, 56, 57, 58, 59]
    assert limiter.mode == "redis"
    assert limiter.fallback_decisions == 0


@pytest.mark.redis
async def test_memory_and_redis_agree(real_redis: Redis, key_prefix: str) -> None:
    remote = RedisRateLimiter(real_redis, prefix=key_prefix)
    # A frozen clock is the ideal instantaneous burst; the Redis run takes a few ms,
    # far less than any interval below, so both must produce identical decisions.
    local = MemoryRateLimiter(clock=FakeClock())
    limits = [Limit("a", 5, 60), Limit("b", 8, 3600), Limit("c", 100, 86400)]
    sequence = ["x"] * 12 + ["y"] * 3 + ["x"] * 2
    for key in sequence:
        expected = summary(local.hit_now(key, limits))
        assert summary(await remote.hit(key, limits)) == expected


# --- fallback limiter ----------------------------------------------------------------


@pytest.fixture
async def proxied_redis(real_redis: Redis, redis_url: str) -> AsyncIterator[tuple[TcpProxy, Redis]]:
    kwargs = real_redis.connection_pool.connection_kwargs
    proxy = TcpProxy(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    await proxy.start()
    client = Redis.from_url(redis_url, socket_connect_timeout=0.2)
    client.connection_pool.connection_kwargs.update(host="127.0.0.1", port=proxy.port)
    yield proxy, client
    await client.aclose()
    await proxy.stop()


def levels(records: list[Any], level: str) -> list[str]:
    return [
        r["message"] for r in records if r["level"].name == level and "rate limiter" in r["message"]
    ]


async def test_fallback_without_redis_is_memory_unconfigured() -> None:
    limiter = FallbackRateLimiter(None)
    assert limiter.mode == "memory-unconfigured"
    decisions = [await limiter.hit("k", [MINUTE]) for _ in range(61)]
    assert sum(d.allowed for d in decisions) == 60
    assert limiter.fallback_decisions == 0


async def test_fallback_on_closed_port_answers_fast_from_memory(
    log_records: list[Any],
) -> None:
    # Without client-side retries, as app.core.redis builds the client: refused at once.
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0))
    limiter = FallbackRateLimiter(dead, prefix=f"test:rl:{uuid.uuid4().hex}:")
    assert limiter.mode == "redis"
    try:
        allowed = 0
        for _ in range(61):
            started = time.perf_counter()
            decision = await limiter.hit("k", [MINUTE])
            assert time.perf_counter() - started < 0.5
            allowed += decision.allowed
        assert allowed == 60  # the in-memory GCRA still enforces the limit exactly
        assert limiter.mode == "memory"
        assert limiter.fallback_decisions == 61
        assert len(levels(log_records, "WARNING")) == 1
    finally:
        await dead.aclose()


async def test_fallback_bounds_a_stalled_redis(log_records: list[Any]) -> None:
    proxy = TcpProxy("127.0.0.1", 6379, blackhole=True)  # accepts, never answers
    await proxy.start()
    client = Redis(host="127.0.0.1", port=proxy.port, socket_connect_timeout=1)
    limiter = FallbackRateLimiter(
        client, timeout=0.1, degrade_after=0.3, prefix=f"test:rl:{uuid.uuid4().hex}:"
    )
    try:
        for hit in range(3):
            started = time.perf_counter()
            assert (await limiter.hit("k", [MINUTE])).allowed
            # Two tries of 100 ms at most, then an answer from memory.
            assert time.perf_counter() - started < 0.5
            # Timeouts alone degrade only once they have lasted `degrade_after`.
            assert limiter.mode == ("memory" if hit == 2 else "redis")
        assert limiter.fallback_decisions == 3
        assert len(levels(log_records, "WARNING")) == 1
    finally:
        await client.aclose()
        await proxy.stop()


@pytest.mark.redis
async def test_one_slow_answer_keeps_shared_limits(
    key_prefix: str, redis_url: str, log_records: list[Any]
) -> None:
    """One Redis step slower than the budget (here the client's only connection is busy for
    150 ms; in a cold process it is first-request work on a saturated event loop) is tried
    again, not a reason to leave Redis for limits of the process's own."""
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=1)
    client = Redis(connection_pool=pool)
    limiter = FallbackRateLimiter(client, timeout=0.1, prefix=key_prefix)
    try:
        await limiter.warm(connections=1)
        held = await pool.get_connection()

        async def release_later() -> None:
            await asyncio.sleep(0.15)
            await pool.release(held)

        releasing = asyncio.create_task(release_later())
        assert (await limiter.hit("k", [MINUTE])).allowed
        await releasing
        assert limiter.mode == "redis"
        assert limiter.fallback_decisions == 0
        # Every decision was Redis's: the shared state holds both requests.
        assert (await limiter.hit("k", [MINUTE])).remaining == 58
        assert not levels(log_records, "WARNING")
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_warm_opens_connections_and_loads_the_script(
    real_redis: Redis, redis_url: str
) -> None:
    name = f"warm-{uuid.uuid4().hex[:8]}"
    pool = BlockingConnectionPool.from_url(redis_url, max_connections=16, client_name=name)
    client = Redis(connection_pool=pool)
    limiter = FallbackRateLimiter(client)
    try:
        await limiter.warm(connections=4)
        opened = [c for c in await real_redis.client_list() if c.get("name") == name]
        # Four of the client's pool, four of the limiter's lane.
        assert len(opened) == 8
        sha = client.register_script(GCRA_LUA).sha
        assert await client.script_exists(sha) == [True]
        assert limiter.mode == "redis"
    finally:
        await limiter.aclose()
        await client.aclose()


async def test_warm_against_a_dead_redis_starts_degraded(
    log_records: list[Any],
) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05)
    limiter = FallbackRateLimiter(dead)
    try:
        await limiter.warm()
        assert limiter.mode == "memory"
        assert len(levels(log_records, "WARNING")) == 1
        assert (await limiter.hit("k", [MINUTE])).allowed
    finally:
        await dead.aclose()


class CancellationToTimeout(Redis):
    """A client that turns a cancellation into its own timeout error, as a library's socket
    timeout firing at the same moment as the caller's cancellation does."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        try:
            return await super().execute_command(*args, **options)
        except asyncio.CancelledError:
            raise RedisTimeoutError("Timeout reading from socket") from None


async def test_cancellation_is_never_swallowed_by_the_fallback() -> None:
    proxy = TcpProxy("127.0.0.1", 6379, blackhole=True)
    await proxy.start()
    client = CancellationToTimeout(host="127.0.0.1", port=proxy.port, socket_connect_timeout=1)
    limiter = FallbackRateLimiter(client, timeout=5.0, prefix=f"test:rl:{uuid.uuid4().hex}:")
    try:
        task = asyncio.create_task(limiter.hit("k", [MINUTE]))
        await asyncio.sleep(0.05)  # waiting for an answer that never comes
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert limiter.mode == "redis"
        assert limiter.fallback_decisions == 0
    finally:
        await client.aclose()
        await proxy.stop()


@pytest.mark.redis
async def test_fallback_recovers_when_redis_returns(
    proxied_redis: tuple[TcpProxy, Redis],
    key_prefix: str,
    log_records: list[Any],
) -> None:
    proxy, client = proxied_redis
    limiter = FallbackRateLimiter(client, timeout=0.3, probe_interval=0.05, prefix=key_prefix)
    assert (await limiter.hit("k", [MINUTE])).allowed
    assert limiter.mode == "redis"

    await proxy.stop()
    started = time.perf_counter()
    assert (await limiter.hit("k", [MINUTE])).allowed
    assert time.perf_counter() - started < 0.5
    assert limiter.mode == "memory"
    await limiter.hit("k", [MINUTE])  # still degraded, probe not yet due
    assert limiter.fallback_decisions == 2

    await proxy.start()  # same port again
    await asyncio.sleep(0.06)
    decision = await limiter.hit("k", [MINUTE])
    assert limiter.mode == "redis"
    # Served by Redis again: the shared state already holds the first request.
    assert decision.remaining == 58
    assert limiter.fallback_decisions == 2
    assert len(levels(log_records, "WARNING")) == 1
    assert len(levels(log_records, "INFO")) == 1


# --- local first, shared afterwards --------------------------------------------------


async def settle() -> None:
    """Let the limiters' background reports reach Redis and come back."""
    await asyncio.sleep(0.2)


async def test_local_first_alone_is_exact_without_redis() -> None:
    limiter = LocalFirstLimiter(FallbackRateLimiter(None), Limit("failures", 20, 60))
    try:
        refusals = [limiter.refuse("ip") for _ in range(25)]
        assert [refusal is None for refusal in refusals] == [True] * 20 + [False] * 5
        refusal = refusals[-1]
        assert refusal is not None and not refusal.allowed
        assert refusal.retry_after == 3  # one emission interval of 20/min
        assert limiter.refuse("another ip") is None
    finally:
        await limiter.aclose()


async def test_local_first_memory_is_bounded() -> None:
    """Past `max_keys` the least recently hit key is forgotten (a fresh burst for it), so a flood
    of distinct addresses cannot grow the process."""
    clock = FakeClock()
    limiter = LocalFirstLimiter(
        FallbackRateLimiter(None), Limit("failures", 1, 60), max_keys=2, clock=clock
    )
    try:
        assert limiter.refuse("a") is None
        assert limiter.refuse("a") is not None
        assert limiter.refuse("b") is None
        assert limiter.refuse("a") is not None  # a refused hit keeps its key fresh
        assert limiter.refuse("c") is None  # b goes
        assert limiter.refuse("a") is not None
        assert limiter.refuse("b") is None  # forgotten: a fresh burst
    finally:
        await limiter.aclose()


@pytest.mark.redis
@pytest.mark.usefixtures("real_redis")
async def test_local_first_replicas_share_their_counts(key_prefix: str, redis_url: str) -> None:
    """Two processes' limiters on one Redis. A key new to the second gets that process's own
    burst; once both have reported, what they admitted beyond the limit together makes the key
    wait everywhere, in the state the per-request limiter reads as well."""
    clients = [Redis.from_url(redis_url) for _ in range(2)]
    shared = [FallbackRateLimiter(client, prefix=key_prefix) for client in clients]
    limit = Limit("failures", 20, 60)  # one hit back every 3 s
    first, second = (LocalFirstLimiter(fallback, limit, interval=0.01) for fallback in shared)
    try:
        assert all(first.refuse("ip") is None for _ in range(15))
        await settle()
        assert all(second.refuse("ip") is None for _ in range(20))
        await settle()  # 35 admitted of 20: 15 over, 45 s of waiting
        refusal = second.refuse("ip")
        assert refusal is not None and refusal.retry_after is not None
        assert 40 <= refusal.retry_after <= 48
        # The first knows as soon as its next report comes back.
        first.refuse("ip")
        await settle()
        assert first.refuse("ip") is not None
        assert not (await shared[0].hit("ip", [limit])).allowed
        assert first.refuse("another ip") is None
    finally:
        for limiter in (first, second):
            await limiter.aclose()
        for client in clients:
            await client.aclose()


async def test_local_first_holds_per_process_when_redis_is_away(log_records: list[Any]) -> None:
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, retry=Retry(NoBackoff(), 0))
    fallback = FallbackRateLimiter(dead, prefix=f"test:rl:{uuid.uuid4().hex}:")
    limiter = LocalFirstLimiter(fallback, Limit("failures", 20, 60), interval=0.01)
    try:
        assert sum(limiter.refuse("ip") is None for _ in range(10)) == 10
        await settle()  # the report fails: Redis is away, say so once
        assert fallback.mode == "memory"
        assert sum(limiter.refuse("ip") is None for _ in range(20)) == 10
        assert len(levels(log_records, "WARNING")) == 1
    finally:
        await limiter.aclose()
        await dead.aclose()
