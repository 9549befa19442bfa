"""The one way a gateway protects its calls to the outside world.

Wrapping order, outermost first::

    @retry_async(max_attempts=3)              # stamina: backoff with jitter
    @with_circuit_breaker("gemini")           # fails fast with CircuitOpenError when open
    async def generate(...):                  # the call, always with its own explicit timeout
        ...                                   # raise TransientError / ClientFault from HTTP codes

Each attempt passes through the breaker, so each failed attempt counts toward the threshold.
That is deliberate: the breaker counts what the neighbour did, and three timeouts in a row are
three pieces of evidence however they were grouped. It also stops a retry loop early: once the
breaker opens, the next attempt gets `CircuitOpenError`, which is never retried.

Failure classes
    `TransientError` (timeouts, connection errors, 408/425/429, 5xx; `is_transient_status`
    tells) counts as a failure and is retried, at least `retry_after` apart when set.
    `ClientFault` (other 4xx) means the neighbour answered: the breaker sees a success and it
    is not retried. Any other exception counts as a failure and is not retried. Cancellation
    (our side gave up) counts as nothing.

States
    closed → `threshold` consecutive failures → open (logged CRITICAL, state-change callbacks
    run) → after `timeout` seconds exactly one trial call goes through (half-open; concurrent
    callers still get CircuitOpenError) → success closes (INFO), failure re-opens for another
    `timeout` (WARNING: the same incident, already paged). A call admitted while closed that
    finishes after the breaker opened does not move it: only calls made while closed, and the
    trial, decide.

Why purgatory's own Redis storage is not used
    purgatory 3.0.1's `AsyncRedisUnitOfWork` builds its own client from a URL with no timeouts,
    updates state with non-atomic read-modify-write (two processes racing lose transitions),
    writes after the protected call returned (so a Redis error would turn a successful call
    into an exception), has no fallback, and lets every concurrent caller through while
    half-open. So the state machine is implemented twice, with one contract and one test suite
    run against both:

    * in process, by purgatory's own breaker model (`purgatory.domain.model.Context`), driven
      directly so that cancellation and the single half-open trial are handled as above;
    * in Redis (`redis_store`), as two Lua scripts, one before and one after the call, each
      atomic and timed by the Redis server clock; the trial holds a lease of `timeout`
      seconds so a process that dies mid-trial cannot wedge the breaker half-open.

Redis outage
    Every Redis step is bounded by 100 ms. On any error the manager switches to the in-process
    breakers (one WARNING), which carry on from the last shared state this process saw; at most
    once every 5 s one call probes Redis (PING plus its real step, within the same 100 ms) and
    on success switches back (one INFO), where Redis's state wins. A call is thus never failed
    by Redis and slowed by at most ~100 ms when Redis breaks. An exhausted client pool is local
    backpressure, not an outage: that call alone is decided in process.

Reading it
    `resilience_manager.get_health_status()` reports every declared or used breaker as this
    process last saw it (`await resilience_manager.refresh()` first pulls the shared state),
    `retries_total` / `opened_total` / `closed_total` feed metrics, and `on_state_change`
    subscribes alerts to transitions (each transition is announced once, by the process that
    caused it). Tests make retries instant with `stamina.set_testing(True, attempts=N,
    cap=True)` and start clean with `await resilience_manager.reset()`.
"""

from app.core.resilience.errors import (
    CircuitOpenError,
    ClientFault,
    TransientError,
    is_transient_status,
)
from app.core.resilience.manager import (
    ResilienceManager,
    StateChangeCallback,
    resilience_manager,
    retry_async,
    with_circuit_breaker,
)
from app.core.resilience.redis_store import State

__all__ = [
    "CircuitOpenError",
    "ClientFault",
    "ResilienceManager",
    "State",
    "StateChangeCallback",
    "TransientError",
    "is_transient_status",
    "resilience_manager",
    "retry_async",
    "with_circuit_breaker",
]
