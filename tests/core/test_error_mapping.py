"""Errors raised outside Litestar's routing (the webhook door) get the same answers as inside."""

from __future__ import annotations

from typing import Any

import asyncpg
import msgspec
import pytest

from app.core.errors import answer_exception


def scope() -> dict[str, Any]:
    return {
        "type": "http",
        "method": "POST",
        "path": "/api/v1/integrations/webhook/x",
        "raw_path": b"/api/v1/integrations/webhook/x",
        "query_string": b"",
        "headers": [],
        "path_template": "/api/v1/integrations/webhook/{integration_id:str}",
    }


@pytest.mark.parametrize(
    ("exc", "status", "retry_after"),
    [
        (asyncpg.exceptions.DeadlockDetectedError("deadlock detected"), 503, b"1"),
        (asyncpg.exceptions.QueryCanceledError("canceling statement"), 503, b"1"),
        (asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed"), 503, b"5"),
        (asyncpg.exceptions.CannotConnectNowError("the database system is starting up"), 503, b"5"),
        (asyncpg.exceptions.UniqueViolationError("duplicate key"), 409, None),
        (ConnectionRefusedError(111, "Connection refused"), 503, b"5"),
        (asyncpg.exceptions.InterfaceError("another operation is in progress"), 500, None),
    ],
)
async def test_driver_errors_map_by_sqlstate(
    exc: Exception, status: int, retry_after: bytes | None
) -> None:
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    await answer_exception(scope(), receive, send, exc)  # type: ignore[arg-type]
    start, body = sent
    assert start["status"] == status
    assert dict(start["headers"]).get(b"retry-after") == retry_after
    assert msgspec.json.decode(body["body"])["status_code"] == status
