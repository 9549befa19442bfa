"""Unexpected errors outside a request: logged with their context, counted, never re-raised.

Inside a request the one error mapper (`app.core.errors`) does this. Background loops (workers,
timeouts, the health sampler) and fire-and-forget tasks (alerts) have no mapper above them, so
each used to carry its own `except Exception: logger...` block. These two helpers replace them:

    async with error_context("worker:deliver", "job failed", job_id=job.id, org_id=job.org_id):
        await handler(job)              # an exception is logged, counted and swallowed here

    @error_handler("alerts", "alert delivery failed")
    async def send(...) -> bool: ...    # returns None instead of raising

Each caught exception is logged once (the bound context fields, plus `exception: {type,
message}` in the JSON line) and counted by component and exception type; the counts are exported
as `botlyne_errors_total` next to the request handler's own (component `http`). The counts are
per process, like the circuit breakers' counters. `asyncio.CancelledError` is not an error and
always propagates.
"""

from __future__ import annotations

import contextlib
import functools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import ParamSpec, TypeVar

from loguru import logger

P = ParamSpec("P")
T = TypeVar("T")

_errors: Counter[tuple[str, str]] = Counter()


def count_error(component: str, exc: BaseException) -> None:
    _errors[(component, type(exc).__name__)] += 1


def errors_total() -> dict[tuple[str, str], int]:
    """Unexpected errors so far, by (component, exception type)."""
    return dict(_errors)


def log_error(
    component: str, message: str, exc: BaseException, level: str = "ERROR", **context: object
) -> None:
    count_error(component, exc)
    fields = {key: str(value) for key, value in context.items() if value is not None}
    logger.bind(component=component, **fields).opt(exception=exc).log(
        level, "{}: {}", message, type(exc).__name__
    )


@contextlib.asynccontextmanager
async def error_context(
    component: str, message: str, *, level: str = "ERROR", **context: object
) -> AsyncIterator[None]:
    """Log, count and swallow an exception raised in the block, so the caller's loop goes on.

    `context` (org_id, conversation_id, job_id, ...) is bound to the log line; keep it to ids.
    """
    try:
        yield
    except Exception as exc:
        log_error(component, message, exc, level, **context)


def error_handler(
    component: str, message: str, *, level: str = "ERROR"
) -> Callable[[Callable[P, Awaitable[T]]], Callable[P, Awaitable[T | None]]]:
    """The decorator form of `error_context`: the function returns None when it failed."""

    def decorate(func: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T | None]]:
        @functools.wraps(func)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T | None:
            try:
                return await func(*args, **kwargs)
            except Exception as exc:
                log_error(component, message, exc, level)
                return None

        return wrapper

    return decorate
