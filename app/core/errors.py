"""The one error mapper: every exception becomes Litestar's JSON error shape, never a stack trace.

Database errors map by SQLSTATE, whether they come through SQLAlchemy or straight from asyncpg
(the webhook's own pool). Triggers that raise on purpose use their own codes in the `BL`
class (see `TRIGGER_ERRORS`) so the mapper can tell a business rule from a broken constraint.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import asyncpg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import (
    HTTP_409_CONFLICT,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from loguru import logger
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from app.core.logging import Throttled
from app.core.middleware import CLIENT_GONE
from app.core.observability import count_error

if TYPE_CHECKING:
    from litestar.types import Receive, Scope, Send

# SQLSTATE → (HTTP status, public detail). Anything not here is a server error.
SQLSTATE_ERRORS: dict[str, tuple[int, str]] = {
    "23505": (HTTP_409_CONFLICT, "Conflicts with an existing resource"),
    "23503": (HTTP_422_UNPROCESSABLE_ENTITY, "Refers to a resource that does not exist"),
    "23514": (HTTP_422_UNPROCESSABLE_ENTITY, "Violates a rule of the data model"),
    "23502": (HTTP_422_UNPROCESSABLE_ENTITY, "A required value is missing"),
    "22001": (HTTP_422_UNPROCESSABLE_ENTITY, "A value is too long"),
    "22P02": (HTTP_422_UNPROCESSABLE_ENTITY, "A value has the wrong format"),
    "22003": (HTTP_422_UNPROCESSABLE_ENTITY, "A number is out of range"),
    "22007": (HTTP_422_UNPROCESSABLE_ENTITY, "A date or time has the wrong format"),
    "22008": (HTTP_422_UNPROCESSABLE_ENTITY, "A date or time is out of range"),
    "40001": (HTTP_503_SERVICE_UNAVAILABLE, "Concurrent update, retry the request"),
    "40P01": (HTTP_503_SERVICE_UNAVAILABLE, "Concurrent update, retry the request"),
    "55P03": (HTTP_503_SERVICE_UNAVAILABLE, "The resource is busy, retry the request"),
    "57014": (HTTP_503_SERVICE_UNAVAILABLE, "The database took too long, retry the request"),
}
# Codes raised by Botlyne's own triggers and functions (`RAISE ... USING ERRCODE = 'BL409'`).
TRIGGER_ERRORS: dict[str, int] = {
    "BL409": HTTP_409_CONFLICT,
    "BL422": HTTP_422_UNPROCESSABLE_ENTITY,
}
# Any other data exception (class 22: a NUL in text, a number beyond int64 refused by the
# driver) is a value that does not fit, not a server fault.
DATA_EXCEPTION_CLASS = "22"
# Connection-level trouble: the database is away, not the request wrong.
UNAVAILABLE_CLASSES = ("08", "53", "57P")
RETRY_AFTER_SECONDS = "5"
CLIENT_CLOSED_REQUEST = 499
# Every request answers 503 while the database is away: one line per 10 s says so.
_unavailable_log = Throttled()


def _driver_error(exc: DBAPIError | asyncpg.PostgresError) -> BaseException | None:
    return exc.orig if isinstance(exc, DBAPIError) else exc


def sqlstate_of(exc: DBAPIError | asyncpg.PostgresError) -> str | None:
    orig = _driver_error(exc)
    code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    return code if isinstance(code, str) else None


def database_unavailable(exc: BaseException) -> bool:
    """Connection-level trouble (the database is away), as opposed to a statement it refused."""
    if isinstance(exc, OSError):  # refused or reset while connecting
        return True
    if isinstance(exc, asyncpg.PostgresError):
        code = sqlstate_of(exc)
        return code is not None and code.startswith(UNAVAILABLE_CLASSES)
    if not isinstance(exc, DBAPIError):
        return False
    code = sqlstate_of(exc)
    return (
        isinstance(exc, OperationalError | InterfaceError)
        or exc.connection_invalidated
        or (code is not None and code.startswith(UNAVAILABLE_CLASSES))
    )


def _error(status: int, detail: str, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail},
        status_code=status,
        media_type=MediaType.JSON,
        headers=headers,
    )


def unavailable(detail: str = "The database is unavailable, retry shortly") -> Response[Any]:
    return _error(HTTP_503_SERVICE_UNAVAILABLE, detail, {"Retry-After": RETRY_AFTER_SECONDS})


def database_error_handler(
    request: Request[Any, Any, Any], exc: DBAPIError | asyncpg.PostgresError
) -> Response[Any]:
    code = sqlstate_of(exc)
    if code in TRIGGER_ERRORS:
        # The trigger's MESSAGE is written for users; PostgreSQL prefixes nothing to it.
        message = str(getattr(_driver_error(exc), "args", [""])[0]).split("\n", 1)[0]
        return _error(TRIGGER_ERRORS[code], message.rsplit(": ", 1)[-1])
    if code in SQLSTATE_ERRORS:
        status, detail = SQLSTATE_ERRORS[code]
        headers = {"Retry-After": "1"} if status == HTTP_503_SERVICE_UNAVAILABLE else None
        return _error(status, detail, headers)
    if code is not None and code.startswith(DATA_EXCEPTION_CLASS):
        return _error(HTTP_422_UNPROCESSABLE_ENTITY, "A value cannot be stored as given")
    if database_unavailable(exc):
        _unavailable_log.warning("database unavailable: {}", type(_driver_error(exc)).__name__)
        return unavailable()
    return internal_error_handler(request, exc)


def connection_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    _unavailable_log.warning("database unavailable: {}", type(exc).__name__)
    return unavailable()


def validation_error_handler(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[Any]:
    # With field details the input was well-formed but did not fit: 422. Without, it could not
    # even be read (truncated JSON, wrong encoding): 400.
    if exc.extra:
        body = {
            "status_code": HTTP_422_UNPROCESSABLE_ENTITY,
            "detail": exc.detail,
            "extra": exc.extra,
        }
        return Response(body, status_code=HTTP_422_UNPROCESSABLE_ENTITY, media_type=MediaType.JSON)
    return _error(exc.status_code, exc.detail)


def http_error_handler(request: Request[Any, Any, Any], exc: HTTPException) -> Response[Any]:
    if exc.status_code >= HTTP_500_INTERNAL_SERVER_ERROR and exc.status_code != 503:
        return internal_error_handler(request, exc)
    body: dict[str, Any] = {"status_code": exc.status_code, "detail": exc.detail}
    if exc.extra:
        body["extra"] = exc.extra
    return Response(
        body, status_code=exc.status_code, media_type=MediaType.JSON, headers=exc.headers
    )


def internal_error_handler(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    route = request.scope.get("path_template") or "unmatched"
    if request.scope.get(CLIENT_GONE):
        # Nobody is left to answer, and nothing failed on this side: counted under 499, the
        # status proxies use for a client that closed its request.
        logger.bind(route=route, method=request.method).info(
            "client disconnected before the request was read"
        )
        return _error(CLIENT_CLOSED_REQUEST, "Client closed the request")
    logger.bind(route=route, method=request.method).opt(exception=exc).error("unhandled error")
    count_error("http", exc)
    return _error(HTTP_500_INTERNAL_SERVER_ERROR, "Internal server error")


EXCEPTION_HANDLERS: dict[type[Exception] | int, Any] = {
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    DBAPIError: database_error_handler,
    asyncpg.PostgresError: database_error_handler,
    PoolTimeoutError: connection_error_handler,
    ConnectionError: connection_error_handler,
    OSError: connection_error_handler,
    Exception: internal_error_handler,
}


async def answer_exception(scope: Scope, receive: Receive, send: Send, exc: Exception) -> None:
    """Answer `exc` as the handlers above do, for a request served outside Litestar's routing
    (the webhook door)."""
    handler = next(
        EXCEPTION_HANDLERS[kind] for kind in type(exc).__mro__ if kind in EXCEPTION_HANDLERS
    )
    request: Request[Any, Any, Any] = Request(scope, receive, send)
    response = handler(request, exc)
    await response.to_asgi_response(app=None, request=request)(scope, receive, send)
