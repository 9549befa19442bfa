"""Logging: loguru is the one sink; stdlib loggers (uvicorn, litestar, sqlalchemy, alembic) feed it.

With structured logging on, each record is one JSON object per line on stdout with `timestamp`,
`level`, `message`, `service`, `request_id`, and `exception: {type, message}` on errors. The
request id comes from a context variable set by the request middleware, so every line logged
while serving a request carries it without any caller passing it along.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC
from typing import TYPE_CHECKING, Any

import msgspec
from loguru import logger

if TYPE_CHECKING:
    from loguru import Message, Record

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

SERVICE = "botlyne"
_encoder = msgspec.json.Encoder()
# Context keys a caller may bind; anything else bound stays out of the JSON line so a careless
# `logger.bind(body=...)` cannot leak a payload.
_EXTRA_KEYS = (
    "org_id",
    "integration_id",
    "conversation_id",
    "job_id",
    "route",
    "method",
    "status_code",
    "reason",
    "component",
    "duration_ms",
    "event",
)


def _patch_request_id(record: Record) -> None:
    record["extra"].setdefault("request_id", request_id_var.get())


def _json_sink(message: Message) -> None:
    record = message.record
    entry: dict[str, Any] = {
        "timestamp": record["time"].astimezone(UTC).isoformat(timespec="milliseconds"),
        "level": record["level"].name,
        "message": record["message"],
        "service": SERVICE,
        "request_id": record["extra"].get("request_id"),
        "logger": record["name"],
    }
    for key in _EXTRA_KEYS:
        if key in record["extra"]:
            entry[key] = record["extra"][key]
    if record["exception"] is not None and record["exception"].type is not None:
        entry["exception"] = {
            "type": record["exception"].type.__name__,
            "message": str(record["exception"].value),
        }
    sys.stdout.write(_encoder.encode(entry).decode() + "\n")
    sys.stdout.flush()


class _InterceptHandler(logging.Handler):
    """Hands stdlib log records to loguru, keeping the original logger name and level."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level: str | int = logger.level(record.levelname).name
        except ValueError:
            level = record.levelno
        logger.patch(lambda r: r.update({"name": record.name})).opt(
            exception=record.exc_info if record.exc_info else None
        ).log(level, record.getMessage())


# loguru's TRACE and SUCCESS sit between the stdlib levels.
_STDLIB_LEVELS = {
    "TRACE": 5,
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "SUCCESS": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


def configure_logging(level: str = "INFO", structured: bool = True) -> None:
    """Install the one sink. Safe to call again (tests, CLI sub-commands): it replaces sinks."""
    logger.remove()
    logger.configure(patcher=_patch_request_id)
    if structured:
        logger.add(_json_sink, level=level.upper(), backtrace=False, diagnose=False)
    else:
        logger.add(
            sys.stderr,
            level=level.upper(),
            backtrace=False,
            diagnose=False,
            format=(
                "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> <level>{level: <8}</level> "
                "<cyan>{extra[request_id]}</cyan> {name}: <level>{message}</level>"
            ),
        )
    handler = _InterceptHandler()
    # The stdlib loggers filter at the same level as the sink: a record below it is never built.
    # (Level 0 here would make uvicorn log TRACE lines for every connection and request, each
    # formatted and then thrown away.)
    threshold = _STDLIB_LEVELS.get(level.upper(), logging.INFO)
    logging.basicConfig(handlers=[handler], level=threshold, force=True)
    for name in ("uvicorn", "uvicorn.error", "litestar", "alembic"):
        named = logging.getLogger(name)
        named.handlers = [handler]
        named.propagate = False
        named.setLevel(threshold)
    # No access lines: they would repeat what the request metrics already count, and uvicorn's
    # print raw paths with query strings, which may carry tokens. A logger with no handler that
    # does not propagate is what turns them off in uvicorn itself (`hasHandlers()`); a merely
    # disabled one would still have the line's arguments (path quoting, client address) built
    # for every request.
    access = logging.getLogger("uvicorn.access")
    access.handlers = []
    access.propagate = False
    access.disabled = True
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    # httpx logs every request's full URL at INFO, and a URL can be a credential (a callback or
    # alert webhook URL with its token, a stream `?token=`); httpcore traces each connection.
    for name in ("httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Throttled:
    """A WARNING for a condition that recurs on every request while it lasts (the database
    away, Gemini down): at most one line per `interval` seconds, saying how many like it were
    held back, so an outage does not bury everything else in the log. The condition stays
    counted in the metrics either way."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self._clock = clock
        self._next = float("-inf")
        self._held = 0

    def warning(self, message: str, *args: Any) -> None:
        now = self._clock()
        if now < self._next:
            self._held += 1
            return
        held, self._held, self._next = self._held, 0, now + self.interval
        if held:
            message += f" ({held} more like it in the last {self.interval:g} s)"
        logger.opt(depth=1).warning(message, *args)
