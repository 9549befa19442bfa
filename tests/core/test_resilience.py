"""Breakers and retries: the state machine on both backends, retry rules, shared state through
Redis, and calls that keep working when Redis does not."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import stamina
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from sqlalchemy.engine import make_url

from app.config import Settings
from app.core.redis import create_redis
from app.core.resilience import (
    CircuitOpenError,
    ClientFault,
    ResilienceManager,
    TransientError,
    is_transient_status,
    resilience_manager,
    retry_async,
    with_circuit_breaker,
)
from app.core.resilience import manager as manager_module
from app.core.resilience.retry import backoff
from tests.helpers import TcpProxy

OPEN_FOR = 0.2  # breaker timeout in these tests; long enough to observe, short enough to wait out
PAST_OPEN = OPEN_FOR + 0.05
SETTINGS = Settings(circuit_breaker_failure_threshold=3, circuit_breaker_timeout=OPEN_FOR)


class Neighbour:
    """A stand-in remote service: counts calls and fails the way it is told to."""

    def __init__(self) -> None:
        self.calls = 0
        self.failure: Callable[[], BaseException] | None = None
        self.gate: asyncio.Event | None = None

    async def call(self) -> str:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failure is not None:
            raise self.failure()
        return "ok"


NO_RETRY = Retry(NoBackoff(), 0)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    # cap=True keeps each decorator's own max_attempts; test mode makes every backoff 0.
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


@pytest.fixture
def name() -> str:
    return f"test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def prefix() -> str:
    return f"test:cb:{uuid.uuid4().hex}:"


@pytest.fixture
async def redis_client(redis_url: str, prefix: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture(params=["memory", "redis"])
def backend_url(request: pytest.FixtureRequest) -> str | None:
    return request.getfixturevalue("redis_url") if request.param == "redis" else None


@pytest.fixture
async def manager(backend_url: str | None, prefix: str) -> AsyncIterator[ResilienceManager]:
    """The same behaviour is required whichever backend holds the state."""
    client = Redis.from_url(backend_url) if backend_url is not None else None
    # A generous Redis budget here: these tests are about the state machine, not latency.
    manager = ResilienceManager(prefix=prefix, redis_timeout=2.0)
    manager.configure(SETTINGS, redis=client)
    try:
        yield manager
        expected = "memory" if client is None else "redis"
        assert manager.backend == expected, "a Redis error silently degraded the test"
    finally:
        await manager.reset()
        if client is not None:
            await client.aclose()


def protect(manager: ResilienceManager, name: str, neighbour: Neighbour, **kw: Any) -> Any:
    return manager.circuit_breaker(name, **kw)(neighbour.call)


async def open_breaker(call: Any, neighbour: Neighbour, times: int = 3) -> None:
    neighbour.failure = lambda: TransientError("boom")
    for _ in range(times):
        with pytest.raises(TransientError):
            await call()


def levels(records: list[Any], name: str) -> list[str]:
    return [r["level"].name for r in records if name in r["message"]]


# --- classification -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "transient"),
    [
        *[(400, False), (401, False), (404, False), (408, True), (422, False), (425, True)],
        *[(429, True), (500, True), (502, True), (503, True), (599, True), (200, False)],
    ],
)
def test_is_transient_status(status: int, transient: bool) -> None:
    assert is_transient_status(status) is transient


def test_names_and_limits_are_validated() -> None:
    manager = ResilienceManager()
    for bad in ("", "has space", "x" * 101):
        with pytest.raises(ValueError, match="name"):
            manager.circuit_breaker(bad)
    with pytest.raises(ValueError, match="failure_threshold"):
        manager.circuit_breaker("ok", failure_threshold=0)
    with pytest.raises(ValueError, match="timeout"):
        manager.circuit_breaker("ok", timeout=0)
    with pytest.raises(TypeError):
        manager.circuit_breaker("ok")(lambda: None)  # type: ignore[arg-type, return-value]


# --- the state machine, on both backends ---------------------------------------------------


async def test_threshold_opens_then_fails_fast(
    manager: ResilienceManager, name: str, log_records: list[Any]
) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour)

    with pytest.raises(CircuitOpenError) as refused:
        await call()
    assert refused.value.name == name
    assert refused.value.retry_after is not None
    assert 0 < refused.value.retry_after <= OPEN_FOR
    assert neighbour.calls == 3, "an open breaker must not touch the neighbour"

    status = manager.get_health_status()["breakers"][name]
    assert status["state"] == "open"
    assert status["failure_count"] == 3
    assert status["threshold"] == 3
    assert status["timeout"] == OPEN_FOR
    assert status["opened_at"] is not None
    assert manager.opened_total == {name: 1}
    assert levels(log_records, name) == ["CRITICAL"]


async def test_half_open_success_closes(
    manager: ResilienceManager, name: str, log_records: list[Any]
) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour)
    await asyncio.sleep(PAST_OPEN)

    neighbour.failure = None
    assert await call() == "ok"
    status = manager.get_health_status()["breakers"][name]
    assert (status["state"], status["failure_count"], status["opened_at"]) == ("closed", 0, None)
    assert manager.closed_total == {name: 1}
    assert levels(log_records, name) == ["CRITICAL", "INFO", "INFO"]  # opened, half-open, closed


async def test_half_open_failure_reopens(
    manager: ResilienceManager, name: str, log_records: list[Any]
) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour)
    await asyncio.sleep(PAST_OPEN)

    with pytest.raises(TransientError):
        await call()  # the trial
    with pytest.raises(CircuitOpenError):
        await call()
    assert neighbour.calls == 4
    assert manager.get_health_status()["breakers"][name]["state"] == "open"
    assert manager.opened_total == {name: 2}
    # Re-opening is the same incident: only the first opening is CRITICAL.
    assert levels(log_records, name) == ["CRITICAL", "INFO", "WARNING"]

    await asyncio.sleep(PAST_OPEN)
    neighbour.failure = None
    assert await call() == "ok"
    assert manager.get_health_status()["breakers"][name]["state"] == "closed"


async def test_half_open_lets_exactly_one_trial_through(
    manager: ResilienceManager, name: str
) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour)
    await asyncio.sleep(PAST_OPEN)

    neighbour.failure, neighbour.gate = None, asyncio.Event()
    trial = asyncio.create_task(call())
    await asyncio.sleep(0.02)
    assert manager.get_health_status()["breakers"][name]["state"] == "half_open"
    with pytest.raises(CircuitOpenError):
        await call()
    neighbour.gate.set()
    assert await trial == "ok"
    assert await call() == "ok"
    assert neighbour.calls == 5


async def test_client_fault_is_not_a_failure(manager: ResilienceManager, name: str) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    neighbour.failure = lambda: ClientFault("bad request", status=400)
    for _ in range(10):
        with pytest.raises(ClientFault):
            await call()
    assert manager.get_health_status()["breakers"][name]["state"] == "closed"

    # The neighbour answered, so a ClientFault also ends a run of failures.
    await open_breaker(call, neighbour, times=2)
    neighbour.failure = lambda: ClientFault("not found", status=404)
    with pytest.raises(ClientFault):
        await call()
    await open_breaker(call, neighbour, times=2)
    status = manager.get_health_status()["breakers"][name]
    assert (status["state"], status["failure_count"]) == ("closed", 2)


async def test_success_ends_a_run_of_failures(manager: ResilienceManager, name: str) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour, times=2)
    neighbour.failure = None
    await call()
    await open_breaker(call, neighbour, times=2)
    assert manager.get_health_status()["breakers"][name]["state"] == "closed"


async def test_cancelled_call_is_no_verdict(manager: ResilienceManager, name: str) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour, failure_threshold=1)
    neighbour.gate = asyncio.Event()
    task = asyncio.create_task(call())
    await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    status = manager.get_health_status()["breakers"][name]
    assert (status["state"], status["failure_count"], status["threshold"]) == ("closed", 0, 1)


async def test_any_other_exception_counts(manager: ResilienceManager, name: str) -> None:
    neighbour = Neighbour()
    call = protect(manager, name, neighbour, failure_threshold=2, timeout=30)
    neighbour.failure = lambda: TimeoutError()
    for _ in range(2):
        with pytest.raises(TimeoutError):
            await call()
    with pytest.raises(CircuitOpenError):
        await call()
    assert manager.get_health_status()["breakers"][name]["timeout"] == 30


async def test_state_change_callbacks(manager: ResilienceManager, name: str) -> None:
    seen: list[tuple[str, str, str]] = []
    posted: list[tuple[str, str, str]] = []

    async def post_alert(breaker: str, old: str, new: str) -> None:
        posted.append((breaker, old, new))

    def broken(breaker: str, old: str, new: str) -> None:
        raise RuntimeError("a broken subscriber must not break the call")

    unsubscribe = manager.on_state_change(lambda *change: seen.append(change))
    manager.on_state_change(post_alert)
    manager.on_state_change(broken)

    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    await open_breaker(call, neighbour)
    await asyncio.sleep(PAST_OPEN)
    neighbour.failure = None
    await call()
    await asyncio.sleep(0)  # let the scheduled async callbacks run

    expected = [
        (name, "closed", "open"),
        (name, "open", "half_open"),
        (name, "half_open", "closed"),
    ]
    assert seen == expected
    assert posted == expected
    unsubscribe()
    await open_breaker(call, neighbour)
    assert len(seen) == 3


async def test_defaults_are_read_at_call_time(name: str) -> None:
    manager = ResilienceManager()
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)  # decorated before configure(), as at import time
    assert manager.get_health_status()["breakers"][name]["threshold"] == 5
    manager.configure(Settings(circuit_breaker_failure_threshold=2, circuit_breaker_timeout=9))
    await open_breaker(call, neighbour, times=2)
    with pytest.raises(CircuitOpenError):
        await call()
    status = manager.get_health_status()
    assert status["backend"] == "memory"
    assert status["redis_configured"] is False
    assert status["breakers"][name]["threshold"] == 2
    assert status["breakers"][name]["timeout"] == 9


async def test_reset_keeps_declared_breakers(name: str) -> None:
    manager = ResilienceManager()
    manager.configure(SETTINGS)
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    async with manager.guard(f"{name}-inline"):  # used, never declared
        pass
    await open_breaker(call, neighbour)
    await manager.reset()
    breakers = manager.get_health_status()["breakers"]
    assert list(breakers) == [name]
    assert breakers[name]["state"] == "closed"
    assert manager.opened_total == {}
    neighbour.failure = None
    assert await call() == "ok"


# --- retries ---------------------------------------------------------------------------------


async def test_retries_transient_errors_up_to_max_attempts(name: str) -> None:
    manager = ResilienceManager()
    neighbour = Neighbour()
    neighbour.failure = lambda: TransientError("503")
    call = manager.retry(max_attempts=4, name=name)(neighbour.call)
    with pytest.raises(TransientError):
        await call()
    assert neighbour.calls == 4
    assert manager.retries_total == {name: 3}


async def test_retry_succeeds_on_a_later_attempt() -> None:
    manager = ResilienceManager()
    outcomes: list[Exception | None] = [TransientError("timeout"), None]

    async def flaky() -> str:
        error = outcomes.pop(0)
        if error is not None:
            raise error
        return "ok"

    assert await manager.retry()(flaky)() == "ok"
    assert outcomes == []
    assert manager.retries_total == {flaky.__qualname__: 1}


@pytest.mark.parametrize(
    ("failure", "on"),
    [
        (lambda: ClientFault("401", status=401), Exception),
        (lambda: CircuitOpenError("x"), Exception),
        (lambda: ValueError("not transient"), TransientError),
    ],
)
async def test_no_retry_for_client_faults_refusals_and_others(
    failure: Callable[[], Exception], on: type[Exception]
) -> None:
    manager = ResilienceManager()
    neighbour = Neighbour()
    neighbour.failure = failure
    # ClientFault and CircuitOpenError are never retried, even when `on` would match them.
    with pytest.raises(type(failure())):
        await manager.retry(max_attempts=5, on=on)(neighbour.call)()
    assert neighbour.calls == 1
    assert manager.retries_total == {}


async def test_retry_on_other_exception_types() -> None:
    manager = ResilienceManager()
    neighbour = Neighbour()
    neighbour.failure = lambda: ValueError("parse")
    with pytest.raises(ValueError, match="parse"):
        await manager.retry(max_attempts=2, on=ValueError, name="parse")(neighbour.call)()
    assert neighbour.calls == 2


async def test_retry_does_not_retry_an_open_breaker(name: str) -> None:
    manager = ResilienceManager()
    manager.configure(SETTINGS)
    neighbour = Neighbour()
    breaker = manager.circuit_breaker(name)(neighbour.call)
    await open_breaker(breaker, neighbour)
    call = manager.retry(max_attempts=5)(breaker)
    with pytest.raises(CircuitOpenError):
        await call()
    assert neighbour.calls == 3
    assert manager.retries_total == {}


async def test_each_retried_attempt_counts_toward_the_threshold(name: str) -> None:
    manager = ResilienceManager()
    manager.configure(SETTINGS)
    neighbour = Neighbour()
    neighbour.failure = lambda: TransientError("502")
    call = manager.retry(max_attempts=5)(manager.circuit_breaker(name)(neighbour.call))
    # Attempts 1-3 fail and open the breaker; attempt 4 is refused, and a refusal ends the
    # retries: one logical call, three failures, one opening.
    with pytest.raises(CircuitOpenError):
        await call()
    assert neighbour.calls == 3
    assert manager.retries_total == {name: 3}  # counted under the breaker's name
    assert manager.opened_total == {name: 1}


async def test_retry_after_is_a_capped_minimum_delay() -> None:
    manager = ResilienceManager()
    neighbour = Neighbour()
    with stamina.set_testing(False):
        neighbour.failure = lambda: TransientError("429", retry_after=0.15)
        call = manager.retry(max_attempts=2, base_delay=0.0, max_delay=1.0)(neighbour.call)
        started = time.perf_counter()
        with pytest.raises(TransientError):
            await call()
        assert 0.15 <= time.perf_counter() - started < 0.5

        neighbour.failure = lambda: TransientError("429", retry_after=3600)
        call = manager.retry(max_attempts=2, base_delay=0.0, max_delay=0.05)(neighbour.call)
        started = time.perf_counter()
        with pytest.raises(TransientError):
            await call()
        assert time.perf_counter() - started < 0.5


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    for attempt, low in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        assert low <= backoff(attempt, 0.5, 2.0, 10.0) <= low + 0.5
    assert backoff(50, 0.5, 2.0, 10.0) == 10.0
    assert backoff(5000, 0.5, 2.0, 10.0) == 10.0  # no OverflowError


async def test_module_level_decorators_use_the_singleton(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert isinstance(resilience_manager, ResilienceManager)
    # A stand-in for the singleton, so this test leaves no breaker declared in the real one.
    singleton = ResilienceManager()
    monkeypatch.setattr(manager_module, "resilience_manager", singleton)
    neighbour = Neighbour()
    neighbour.failure = lambda: TransientError("down")

    @retry_async(max_attempts=2)
    @with_circuit_breaker(name, failure_threshold=2, timeout=60)
    async def send() -> str:
        return await neighbour.call()

    with pytest.raises(TransientError):
        await send()
    with pytest.raises(CircuitOpenError):
        await send()
    assert singleton.get_health_status()["breakers"][name]["state"] == "open"
    assert singleton.retries_total == {name: 1}
    assert send.__name__ == "send"


# --- Redis: shared state and outages ---------------------------------------------------------


@pytest.mark.usefixtures("redis_client")  # deletes the prefix's keys even on failure
async def test_two_processes_share_one_breaker(redis_url: str, prefix: str, name: str) -> None:
    clients = [Redis.from_url(redis_url), Redis.from_url(redis_url)]
    first, second = (ResilienceManager(prefix=prefix, redis_timeout=2.0) for _ in clients)
    first.configure(SETTINGS, redis=clients[0])
    second.configure(SETTINGS, redis=clients[1])
    here, there = Neighbour(), Neighbour()
    call_here, call_there = protect(first, name, here), protect(second, name, there)
    try:
        await open_breaker(call_here, here)
        with pytest.raises(CircuitOpenError):
            await call_there()
        assert there.calls == 0, "the other process must see the open breaker"
        assert second.get_health_status()["breakers"][name]["state"] == "open"
        assert second.opened_total == {}  # announced once, by the process that opened it

        await asyncio.sleep(PAST_OPEN)
        here.failure, here.gate = None, asyncio.Event()
        trial = asyncio.create_task(call_here())
        await asyncio.sleep(0.05)
        with pytest.raises(CircuitOpenError):
            await call_there()  # one trial across all processes
        here.gate.set()
        assert await trial == "ok"

        assert await call_there() == "ok"
        await second.refresh()
        assert second.get_health_status()["breakers"][name]["state"] == "closed"
        assert (first.backend, second.backend) == ("redis", "redis")
    finally:
        await first.reset()
        for client in clients:
            await client.aclose()


async def test_refresh_shows_state_set_by_another_process(
    redis_client: Redis, prefix: str, name: str
) -> None:
    first, second = ResilienceManager(prefix=prefix), ResilienceManager(prefix=prefix)
    for manager in (first, second):
        manager.configure(SETTINGS, redis=redis_client)
    protect(second, name, Neighbour())  # declared there, never called
    neighbour = Neighbour()
    await open_breaker(protect(first, name, neighbour), neighbour)
    assert second.get_health_status()["breakers"][name]["state"] == "closed"
    await second.refresh()
    status = second.get_health_status()["breakers"][name]
    assert (status["state"], status["failure_count"]) == ("open", 3)
    await first.reset()
    assert await redis_client.exists(f"{prefix}{name}") == 0


async def test_unreachable_redis_degrades_to_memory(name: str, log_records: list[Any]) -> None:
    # Without client-side retries, as the application's client: a refused connection is an
    # error at once, not a timeout after retries.
    dead = Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.05, retry=NO_RETRY)
    manager = ResilienceManager()  # the production budget: 100 ms per Redis step
    manager.configure(SETTINGS, redis=dead)
    neighbour = Neighbour()
    call = protect(manager, name, neighbour)
    try:
        durations = []
        for _ in range(3):
            started = time.perf_counter()
            assert await call() == "ok"
            durations.append(time.perf_counter() - started)
        assert max(durations) < 0.15, durations

        await open_breaker(call, neighbour)  # and the breaker still works, in memory
        started = time.perf_counter()
        with pytest.raises(CircuitOpenError):
            await call()
        assert time.perf_counter() - started < 0.15
        status = manager.get_health_status()
        assert (status["backend"], status["redis_configured"]) == ("memory", True)
        assert status["breakers"][name]["state"] == "open"
        warnings = [r for r in log_records if r["level"].name == "WARNING"]
        assert len(warnings) == 1
        assert "Redis unavailable" in warnings[0]["message"]
    finally:
        await dead.aclose()


@pytest.fixture
async def proxy(redis_url: str) -> AsyncIterator[TcpProxy]:
    pool = Redis.from_url(redis_url).connection_pool
    kwargs = pool.connection_kwargs
    await pool.disconnect()
    relay = TcpProxy(kwargs.get("host", "127.0.0.1"), kwargs.get("port", 6379))
    await relay.start()
    yield relay
    await relay.stop()


@pytest.mark.usefixtures("redis_client")  # deletes the prefix's keys even on failure
async def test_redis_outage_and_recovery(
    proxy: TcpProxy, redis_url: str, prefix: str, name: str, log_records: list[Any]
) -> None:
    clock = FakeClock()
    db = Redis.from_url(redis_url).connection_pool.connection_kwargs.get("db", 0)
    client = Redis(
        host="127.0.0.1", port=proxy.port, db=db, socket_connect_timeout=0.05, retry=NO_RETRY
    )
    manager = ResilienceManager(prefix=prefix, clock=clock, redis_timeout=0.5)
    manager.configure(SETTINGS, redis=client)
    neighbour = Neighbour()
    # Open for longer than any Redis timeout below, so every call here meets an open breaker.
    call = protect(manager, name, neighbour, timeout=30)
    try:
        await open_breaker(call, neighbour)
        assert manager.backend == "redis"

        await proxy.stop()
        with pytest.raises(CircuitOpenError):
            await call()  # still refused: memory carries on from the last shared state
        assert manager.backend == "memory"
        with pytest.raises(CircuitOpenError):
            await call()  # no probe before the interval is up

        await proxy.start()
        clock.now += 5.0
        with pytest.raises(CircuitOpenError):
            await call()  # this one probes, and finds the shared (still open) breaker
        assert manager.backend == "redis"
        messages = [(r["level"].name, r["message"]) for r in log_records]
        assert [level for level, m in messages if "Redis" in m] == ["WARNING", "INFO"]
    finally:
        await manager.reset()
        with contextlib.suppress(Exception):
            await client.aclose()


async def test_a_slow_redis_answer_is_not_an_outage(name: str, log_records: list[Any]) -> None:
    """One call whose Redis step misses its budget is decided in process without giving up on
    Redis; timeouts that go on for a second with no answer between them are an outage."""
    stalled = TcpProxy("127.0.0.1", 6379, blackhole=True)  # accepts, never answers
    await stalled.start()
    client = Redis(host="127.0.0.1", port=stalled.port, socket_connect_timeout=1)
    clock = FakeClock()
    manager = ResilienceManager(clock=clock, redis_timeout=0.05)
    manager.configure(SETTINGS, redis=client)
    call = protect(manager, name, Neighbour())
    try:
        assert await call() == "ok"
        assert await call() == "ok"
        assert manager.backend == "redis"
        clock.now += 1.0
        assert await call() == "ok"
        assert manager.backend == "memory"
        warnings = [r for r in log_records if r["level"].name == "WARNING"]
        assert len(warnings) == 1
        assert "Redis unavailable" in warnings[0]["message"]
    finally:
        await client.aclose()
        await stalled.stop()


@pytest.mark.usefixtures("redis_client")  # deletes the prefix's keys even on failure
async def test_a_connection_broken_by_a_redis_restart_is_replaced_not_an_outage(
    proxy: TcpProxy, redis_url: str, prefix: str, name: str
) -> None:
    """After Redis restarts, the pooled connections are dead; the application's client opens a
    new one instead of reporting an outage that is already over."""
    url = make_url(redis_url).set(host="127.0.0.1", port=proxy.port)
    client = create_redis(Settings(redis_url=url.render_as_string(hide_password=False)))
    assert client is not None
    manager = ResilienceManager(prefix=prefix)
    manager.configure(SETTINGS, redis=client)
    call = protect(manager, name, Neighbour())
    try:
        assert await call() == "ok"
        await proxy.stop()  # the restart: every open connection is cut
        await proxy.start()
        assert await call() == "ok"
        assert manager.backend == "redis"
    finally:
        await manager.reset()
        await client.aclose()
