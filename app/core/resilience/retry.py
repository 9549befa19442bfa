"""Retries with stamina: exponential backoff with jitter, `retry_after` as a floor, never a retry
of a refusal (`CircuitOpenError`) or of a client's own mistake (`ClientFault`)."""

from __future__ import annotations

import functools
import inspect
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import stamina
from loguru import logger

from app.core.resilience.errors import CircuitOpenError, ClientFault

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])
ExceptionTypes = type[Exception] | tuple[type[Exception], ...]

_NEVER_RETRIED = (CircuitOpenError, ClientFault)


def backoff(attempt: int, base_delay: float, exponential_base: float, max_delay: float) -> float:
    """The jittered delay after failed attempt number `attempt` (1-based), as stamina computes it
    with `wait_jitter=base_delay`: jitter in proportion to the base spreads a burst of callers
    without dwarfing short delays."""
    try:
        delay = base_delay * exponential_base ** (attempt - 1)
    except OverflowError:
        return max_delay
    return min(max_delay, delay + random.uniform(0, base_delay))


def build_retry(
    count_retry: Callable[[str], None],
    *,
    max_attempts: int,
    base_delay: float,
    exponential_base: float,
    max_delay: float,
    on: ExceptionTypes,
    name: str | None,
) -> Callable[[F], F]:
    if max_attempts < 1:
        raise ValueError("max_attempts must be >= 1")
    if base_delay < 0 or max_delay < 0 or exponential_base < 1:
        raise ValueError("delays must be >= 0 and exponential_base >= 1")
    kinds = on if isinstance(on, tuple) else (on,)
    if not kinds or not all(isinstance(k, type) and issubclass(k, Exception) for k in kinds):
        raise TypeError("on must be an exception class or a tuple of them")

    def decorator(func: F) -> F:
        if not inspect.iscoroutinefunction(func):
            raise TypeError("retry_async decorates async functions")
        # Under a breaker the retry counters use the breaker's name, so metrics line up.
        label = name or getattr(func, "__breaker_name__", None) or func.__qualname__

        @functools.wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            attempt_number = 1

            def should_retry(exc: Exception) -> bool | float:
                if isinstance(exc, _NEVER_RETRIED) or not isinstance(exc, kinds):
                    return False
                hint = getattr(exc, "retry_after", None)
                if not isinstance(hint, int | float) or hint != hint:  # absent or NaN
                    return True
                # A returned float replaces stamina's backoff for this wait; stamina still
                # makes it 0 in test mode.
                own = backoff(attempt_number, base_delay, exponential_base, max_delay)
                return max(own, min(float(hint), max_delay))

            # retry_context rather than stamina.retry: the attempt number is needed for the
            # floor above, and stamina's retry hooks then never see the call's arguments.
            async for attempt in stamina.retry_context(
                on=should_retry,
                attempts=max_attempts,
                timeout=None,
                wait_initial=base_delay,
                wait_max=max_delay,
                wait_jitter=base_delay,
                wait_exp_base=exponential_base,
            ):
                attempt_number = attempt.num
                if attempt_number > 1:
                    count_retry(label)
                    logger.bind(component="resilience", event="retry").debug(
                        "retrying {} (attempt {} of {})", label, attempt_number, max_attempts
                    )
                with attempt:
                    return await func(*args, **kwargs)
            raise AssertionError("unreachable: stamina re-raises the last failure")

        return cast(F, wrapper)

    return decorator
