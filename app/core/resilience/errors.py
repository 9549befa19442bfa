"""The exceptions a gateway raises (or sees) around a protected call."""

from __future__ import annotations


class CircuitOpenError(Exception):
    """The breaker `name` is open: the call was refused without being made. Never retried.

    `retry_after` is the number of seconds until the breaker lets a trial call through, when
    known; callers that queue work (outbound delivery) can schedule the next attempt with it.
    """

    def __init__(self, name: str, retry_after: float | None = None) -> None:
        super().__init__(f"circuit breaker {name!r} is open")
        self.name = name
        self.retry_after = retry_after


class ClientFault(Exception):
    """A failure that is not the neighbour's fault (HTTP 4xx other than 408/425/429).

    The neighbour answered, so for the breaker it is a sign of life, like a success: it ends a
    run of failures and, as the half-open trial call, closes the breaker. It is never retried:
    the same request would fail the same way.
    """

    def __init__(self, *args: object, status: int | None = None) -> None:
        super().__init__(*args)
        self.status = status


class TransientError(Exception):
    """A failure worth retrying: timeout, connection error, 408/425/429, 5xx.

    `retry_after` (seconds, e.g. from a `Retry-After` header) is honoured by `retry_async` as the
    minimum delay before the next attempt, capped at the decorator's `max_delay`.
    """

    def __init__(self, *args: object, retry_after: float | None = None) -> None:
        super().__init__(*args)
        self.retry_after = retry_after


def is_transient_status(status: int) -> bool:
    """Whether an HTTP status is worth retrying: 408, 425, 429 and every 5xx."""
    return status in (408, 425, 429) or 500 <= status <= 599
