"""`ResilienceManager`: breakers shared through Redis when it is healthy, in process otherwise.

See the package docstring for the design; this module holds the bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, TypeVar, cast

from loguru import logger
from purgatory.domain.model import Context, OpenedState
from purgatory.typing import StateName
from redis.asyncio import Redis
from redis.exceptions import MaxConnectionsError

from app.config import Settings
from app.core.redis import OutageJudge
from app.core.resilience.errors import CircuitOpenError, ClientFault, TransientError
from app.core.resilience.redis_store import RedisBreakerStore, Snapshot, State
from app.core.resilience.retry import ExceptionTypes, build_retry

__all__ = ["ResilienceManager", "StateChangeCallback", "resilience_manager"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
StateChangeCallback = Callable[[str, State, State], object]

# Names end up in Redis keys, log lines and metric labels.
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
_FROM_PURGATORY: Final[dict[StateName, State]] = {
    "closed": "closed",
    "opened": "open",
    "half-opened": "half_open",
}
_TO_PURGATORY: Final[dict[State, StateName]] = {v: k for k, v in _FROM_PURGATORY.items()}


@dataclass(slots=True)
class _Breaker:
    """What this process knows of one breaker: the last state it saw, and its overrides."""

    name: str
    threshold: int | None = None
    timeout: float | None = None
    state: State = "closed"
    failures: int = 0
    opened_at: float | None = None


@dataclass(frozen=True, slots=True)
class _Ticket:
    name: str
    shared: bool  # admitted through Redis rather than by the in-process breaker
    trial: bool  # the one half-open trial call


def _failed(exc: BaseException | None) -> bool | None:
    """True for a failure, False for a success, None when the call gave no verdict at all
    (cancelled by our side, interpreter shutting down): the neighbour did nothing wrong."""
    if exc is None or isinstance(exc, ClientFault):
        return False
    return True if isinstance(exc, Exception) else None


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"invalid circuit breaker name: {name!r}")


def _check_limits(threshold: int | None, timeout: float | None) -> None:
    if threshold is not None and threshold < 1:
        raise ValueError("failure_threshold must be >= 1")
    if timeout is not None and not timeout > 0:
        raise ValueError("timeout must be > 0 seconds")


class _Guard:
    """One protected call: admitted on entry, its outcome settled on exit."""

    __slots__ = ("_manager", "_name", "_threshold", "_ticket", "_timeout")

    def __init__(
        self,
        manager: ResilienceManager,
        name: str,
        threshold: int | None,
        timeout: float | None,
    ) -> None:
        self._manager = manager
        self._name = name
        self._threshold = threshold
        self._timeout = timeout
        self._ticket: _Ticket | None = None

    async def __aenter__(self) -> None:
        self._ticket = await self._manager._admit(self._name, self._threshold, self._timeout)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ticket, self._ticket = self._ticket, None
        if ticket is not None:
            await self._manager._settle(ticket, exc)


class ResilienceManager:
    def __init__(
        self,
        *,
        redis_timeout: float = 0.1,
        probe_interval: float = 5.0,
        prefix: str = "cb:",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._redis_timeout = redis_timeout
        self._probe_interval = probe_interval
        self._prefix = prefix
        self._clock = clock
        self._store: RedisBreakerStore | None = None
        self._degraded = False
        self._judge = OutageJudge(clock=clock)
        self._next_probe = 0.0
        self._declared: dict[str, tuple[int | None, float | None]] = {}
        self._breakers: dict[str, _Breaker] = {}
        # purgatory's in-process breakers; in Redis mode each holds the last shared state seen.
        self._contexts: dict[str, Context] = {}
        self._trials: set[str] = set()
        self._retries: Counter[str] = Counter()
        self._transitions: Counter[tuple[str, State]] = Counter()
        self._callbacks: list[StateChangeCallback] = []
        self._pending: set[asyncio.Future[Any]] = set()
        defaults = Settings()
        self._default_threshold = defaults.circuit_breaker_failure_threshold
        self._default_timeout = defaults.circuit_breaker_timeout

    # --- configuration and reporting ---------------------------------------------------------

    def configure(self, settings: Settings, redis: Redis | None = None) -> None:
        """Apply the settings' breaker defaults and choose the state store; no I/O."""
        self._default_threshold = settings.circuit_breaker_failure_threshold
        self._default_timeout = settings.circuit_breaker_timeout
        self._store = RedisBreakerStore(redis, self._prefix) if redis is not None else None
        self._degraded = False
        self._judge.answered()
        self._next_probe = 0.0

    @property
    def backend(self) -> str:
        return "redis" if self._store is not None and not self._degraded else "memory"

    @property
    def retries_total(self) -> dict[str, int]:
        """Retries scheduled, by breaker (or function) name."""
        return dict(self._retries)

    @property
    def opened_total(self) -> dict[str, int]:
        """Transitions into open caused by this process (first openings and failed trials)."""
        return {name: n for (name, state), n in self._transitions.items() if state == "open"}

    @property
    def closed_total(self) -> dict[str, int]:
        return {name: n for (name, state), n in self._transitions.items() if state == "closed"}

    def on_state_change(self, callback: StateChangeCallback) -> Callable[[], None]:
        """Call `callback(name, old_state, new_state)` on each transition this process causes.

        It runs inline, so it must be quick; if it returns an awaitable, that is scheduled as a
        task (an alert post, say). Its errors are logged, never raised into the protected call.
        Returns a function that unsubscribes it.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    def get_health_status(self) -> dict[str, Any]:
        """Every breaker declared or used, as this process last saw it (see `refresh`)."""
        breakers: dict[str, Any] = {}
        for name in sorted(self._breakers):
            breaker = self._breakers[name]
            threshold, timeout = self._limits(breaker)
            opened_at = breaker.opened_at
            breakers[name] = {
                "state": breaker.state,
                "failure_count": breaker.failures,
                "threshold": threshold,
                "timeout": timeout,
                "opened_at": None
                if opened_at is None
                else datetime.fromtimestamp(opened_at, UTC).isoformat(),
            }
        return {
            "backend": self.backend,
            "redis_configured": self._store is not None,
            "breakers": breakers,
        }

    async def refresh(self) -> None:
        """Pull the shared state of every known breaker, so the health report also shows what
        other processes did. A no-op without Redis; a Redis failure degrades as a call would."""
        store = self._store
        if store is None or self._degraded or not self._breakers:
            return
        try:
            async with asyncio.timeout(self._redis_timeout):
                snapshots = await store.fetch(list(self._breakers))
        except MaxConnectionsError:
            return
        except Exception as exc:
            self._redis_failed(exc)
            return
        self._judge.answered()
        for name, snapshot in snapshots.items():
            breaker = self._breakers[name]
            self._apply(breaker, breaker.state, snapshot, announce=False)

    async def reset(self) -> None:
        """Forget all breaker state (here and in Redis) and counters; for tests.

        Configuration, declared breakers and subscriptions stay.
        """
        names = set(self._breakers) | set(self._declared)
        if self._store is not None and names:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(max(self._redis_timeout, 0.5)):
                    await self._store.delete(names)
        self._breakers = {
            name: _Breaker(name, threshold, timeout)
            for name, (threshold, timeout) in self._declared.items()
        }
        self._contexts.clear()
        self._trials.clear()
        self._retries.clear()
        self._transitions.clear()
        self._degraded = False
        self._next_probe = 0.0

    # --- decorators --------------------------------------------------------------------------

    def guard(
        self, name: str, failure_threshold: int | None = None, timeout: float | None = None
    ) -> _Guard:
        """`async with manager.guard("evolution"): ...`: the breaker around one block."""
        _check_name(name)
        _check_limits(failure_threshold, timeout)
        return _Guard(self, name, failure_threshold, timeout)

    def circuit_breaker(
        self, name: str, failure_threshold: int | None = None, timeout: float | None = None
    ) -> Callable[[F], F]:
        _check_name(name)
        _check_limits(failure_threshold, timeout)
        self._declared[name] = (failure_threshold, timeout)
        self._breaker(name, failure_threshold, timeout)

        def decorator(func: F) -> F:
            if not inspect.iscoroutinefunction(func):
                raise TypeError("with_circuit_breaker decorates async functions")

            @functools.wraps(func)
            async def wrapper(*args: Any, **kwargs: Any) -> Any:
                async with _Guard(self, name, failure_threshold, timeout):
                    return await func(*args, **kwargs)

            # Read by retry_async to count retries under the breaker's name.
            wrapper.__breaker_name__ = name  # type: ignore[attr-defined]
            return cast(F, wrapper)

        return decorator

    def retry(
        self,
        max_attempts: int = 3,
        base_delay: float = 0.5,
        exponential_base: float = 2.0,
        max_delay: float = 10.0,
        on: ExceptionTypes = TransientError,
        *,
        name: str | None = None,
    ) -> Callable[[F], F]:
        return build_retry(
            self._count_retry,
            max_attempts=max_attempts,
            base_delay=base_delay,
            exponential_base=exponential_base,
            max_delay=max_delay,
            on=on,
            name=name,
        )

    # --- the state machine -------------------------------------------------------------------

    async def _admit(self, name: str, threshold: int | None, open_for: float | None) -> _Ticket:
        breaker = self._breaker(name, threshold, open_for)
        store = self._store
        if store is not None and (not self._degraded or self._probe_due()):
            probing = self._degraded
            admission = None
            try:
                async with asyncio.timeout(self._redis_timeout):
                    if probing:
                        await store.ping()
                    admission = await store.admit(name, self._limits(breaker)[1])
            except MaxConnectionsError:
                # Our own pool is exhausted (a local burst), not an outage: this one call is
                # decided in process, Redis stays in use.
                pass
            except Exception as exc:
                # A caller cancelled while the Redis step timed out: asyncio.timeout reports
                # TimeoutError, but the cancellation must still win, or the call would go on.
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from exc
                # Whatever goes wrong with Redis must cost the call an in-process decision,
                # never an error. CancelledError is a BaseException and still propagates.
                self._redis_failed(exc)
            if admission is not None:
                self._judge.answered()
                if probing:
                    self._redis_recovered()
                self._apply(breaker, admission.before, admission.after)
                if not admission.allowed:
                    raise CircuitOpenError(name, admission.retry_after)
                return _Ticket(name, shared=True, trial=admission.trial)
        return self._admit_in_process(breaker)

    async def _settle(self, ticket: _Ticket, exc: BaseException | None) -> None:
        failed = _failed(exc)
        # setdefault: reset() may have run while the call was in flight.
        breaker = self._breakers.setdefault(ticket.name, _Breaker(ticket.name))
        store = self._store
        if failed is None:
            if not ticket.shared and ticket.trial:
                self._trials.discard(ticket.name)
            # A shared trial keeps its lease until it expires after `timeout` seconds.
            return
        if ticket.shared and store is not None and not self._degraded:
            threshold, timeout = self._limits(breaker)
            try:
                async with asyncio.timeout(self._redis_timeout):
                    settlement = await store.settle(
                        ticket.name,
                        failed=failed,
                        trial=ticket.trial,
                        threshold=threshold,
                        open_for=timeout,
                    )
            except MaxConnectionsError:
                pass
            except Exception as error:
                self._redis_failed(error)
            else:
                self._judge.answered()
                self._apply(breaker, settlement.before, settlement.after)
                return
        self._settle_in_process(breaker, ticket, exc if failed else None)

    def _admit_in_process(self, breaker: _Breaker) -> _Ticket:
        context = self._context(breaker)
        if context.state == "half-opened" and breaker.name in self._trials:
            raise CircuitOpenError(breaker.name)
        before = breaker.state
        try:
            context.handle_new_request()
        except OpenedState as opened:
            context.messages.clear()
            # purgatory raises its state object itself; drop the traceback so the frames (and
            # the arguments of the refused call) are not kept alive by the breaker.
            opened.__traceback__ = None
            wait = max(0.0, opened.opened_at + context.ttl - time.time())
            raise CircuitOpenError(breaker.name, wait) from None
        trial = context.state == "half-opened"
        if trial:
            self._trials.add(breaker.name)
        self._adopt(breaker, context, before)
        return _Ticket(breaker.name, shared=False, trial=trial)

    def _settle_in_process(
        self, breaker: _Breaker, ticket: _Ticket, failure: BaseException | None
    ) -> None:
        context = self._context(breaker)
        if ticket.trial:
            self._trials.discard(breaker.name)
        # Same rule as the Redis script: only a call made while closed, or the trial, decides.
        if not (context.state == "closed" or (ticket.trial and context.state == "half-opened")):
            return
        before = breaker.state
        if failure is not None:
            context.handle_exception(failure)
            breaker.failures += 1
        else:
            context.handle_end_request()
            breaker.failures = 0
        self._adopt(breaker, context, before)

    def _adopt(self, breaker: _Breaker, context: Context, before: State) -> None:
        """Take the state of purgatory's breaker after it handled an event."""
        context.messages.clear()  # purgatory's domain events; unused, they would pile up
        state = _FROM_PURGATORY[context.state]
        if state == "open":
            breaker.opened_at = context.opened_at
        elif state == "closed":
            breaker.opened_at = None
        breaker.state = state
        if state != before:
            self._transition(breaker, before, state)

    def _apply(
        self, breaker: _Breaker, before: State, after: Snapshot, *, announce: bool = True
    ) -> None:
        """Take a state read from Redis, and mirror it into the in-process breaker so that a
        switch to memory carries on from the last shared state instead of starting afresh."""
        breaker.state, breaker.failures, breaker.opened_at = (
            after.state,
            after.failures,
            after.opened_at,
        )
        threshold, timeout = self._limits(breaker)
        self._contexts[breaker.name] = Context(
            breaker.name,
            threshold,
            timeout,
            state=_TO_PURGATORY[after.state],
            failure_count=after.failures,
            opened_at=after.opened_at,
        )
        if announce and before != after.state:
            self._transition(breaker, before, after.state)

    # --- helpers -----------------------------------------------------------------------------

    def _breaker(self, name: str, threshold: int | None, timeout: float | None) -> _Breaker:
        breaker = self._breakers.get(name)
        if breaker is None:
            breaker = self._breakers[name] = _Breaker(name)
        # Settings are read at call time: decorators run at import, before configure().
        breaker.threshold, breaker.timeout = threshold, timeout
        return breaker

    def _limits(self, breaker: _Breaker) -> tuple[int, float]:
        return (
            breaker.threshold or self._default_threshold,
            breaker.timeout or self._default_timeout,
        )

    def _context(self, breaker: _Breaker) -> Context:
        threshold, timeout = self._limits(breaker)
        context = self._contexts.get(breaker.name)
        if context is None:
            context = self._contexts[breaker.name] = Context(breaker.name, threshold, timeout)
        context.threshold, context.ttl = threshold, timeout
        return context

    def _count_retry(self, name: str) -> None:
        self._retries[name] += 1

    def _probe_due(self) -> bool:
        now = self._clock()
        if now < self._next_probe:
            return False
        # Pushed forward before awaiting, so concurrent calls do not all probe.
        self._next_probe = now + self._probe_interval
        return True

    def _redis_failed(self, exc: BaseException) -> None:
        """This call is decided in process; the store degrades when the judge sees an outage
        (a lone slow answer is not one)."""
        if not self._degraded and not self._judge.is_outage(exc):
            return
        self._next_probe = self._clock() + self._probe_interval
        if not self._degraded:
            self._degraded = True
            logger.bind(component="resilience", event="breaker_store_degraded").warning(
                "circuit breakers: Redis unavailable ({}); breaker state is per process, "
                "probing every {}s",
                type(exc).__name__,
                self._probe_interval,
            )

    def _redis_recovered(self) -> None:
        self._degraded = False
        logger.bind(component="resilience", event="breaker_store_recovered").info(
            "circuit breakers: Redis reachable again; breaker state is shared again"
        )

    def _transition(self, breaker: _Breaker, old: State, new: State) -> None:
        self._transitions[(breaker.name, new)] += 1
        timeout = self._limits(breaker)[1]
        log = logger.bind(component="resilience", event=f"breaker_{new}")
        if new == "open" and old == "closed":
            log.critical(
                "circuit breaker {} opened after {} consecutive failures; calls fail fast for {}s",
                breaker.name,
                breaker.failures,
                timeout,
            )
        elif new == "open":
            # The same incident going on: the opening above is the one worth a page.
            log.warning(
                "circuit breaker {} trial call failed; open again for {}s", breaker.name, timeout
            )
        elif new == "half_open":
            log.info("circuit breaker {} half-open; letting one trial call through", breaker.name)
        else:
            log.info("circuit breaker {} closed", breaker.name)
        for callback in list(self._callbacks):
            self._notify(callback, breaker.name, old, new)

    def _notify(self, callback: StateChangeCallback, name: str, old: State, new: State) -> None:
        try:
            result = callback(name, old, new)
            if inspect.isawaitable(result):
                task = asyncio.ensure_future(result)
                self._pending.add(task)
                task.add_done_callback(self._callback_done)
        except Exception:
            logger.opt(exception=True).bind(component="resilience").error(
                "circuit breaker state-change callback failed"
            )

    def _callback_done(self, task: asyncio.Future[Any]) -> None:
        self._pending.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.opt(exception=task.exception()).bind(component="resilience").error(
                "circuit breaker state-change callback failed"
            )


resilience_manager = ResilienceManager()


def with_circuit_breaker(
    name: str, failure_threshold: int | None = None, timeout: float | None = None
) -> Callable[[F], F]:
    """Protect an async function with the breaker `name` of `resilience_manager`.

    Defaults (CIRCUIT_BREAKER_FAILURE_THRESHOLD, CIRCUIT_BREAKER_TIMEOUT) are read at call time.
    """
    return resilience_manager.circuit_breaker(name, failure_threshold, timeout)


def retry_async(
    max_attempts: int = 3,
    base_delay: float = 0.5,
    exponential_base: float = 2.0,
    max_delay: float = 10.0,
    on: ExceptionTypes = TransientError,
    *,
    name: str | None = None,
) -> Callable[[F], F]:
    """Retry an async function on `on` (TransientError by default), never on CircuitOpenError
    or ClientFault, with exponential backoff and jitter; retries counted by `resilience_manager`
    under `name`, the breaker's name, or the function's qualified name."""
    return resilience_manager.retry(
        max_attempts, base_delay, exponential_base, max_delay, on, name=name
    )
