"""Errors outside requests: logged once with their context, counted, swallowed; and a 404 carries
its request id like any other response."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.logging import configure_logging
from app.core.observability import error_context, error_handler, errors_total
from app.workers.queue import ClaimedJob, JobRunner
from tests.helpers import create_integration


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]


async def test_error_context_logs_counts_and_swallows(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", structured=True)
    org = uuid.uuid4()
    before = errors_total().get(("loop", "ValueError"), 0)
    async with error_context("loop", "step failed", level="WARNING", org_id=org, job_id=None):
        raise ValueError("bad value")
    (line,) = json_lines(capsys.readouterr().out)
    assert line["level"] == "WARNING"
    assert line["message"] == "step failed: ValueError"
    assert (line["component"], line["org_id"]) == ("loop", str(org))
    assert "job_id" not in line  # None ids are left out
    assert line["exception"] == {"type": "ValueError", "message": "bad value"}
    assert errors_total()[("loop", "ValueError")] == before + 1


async def test_cancellation_is_not_an_error() -> None:
    before = errors_total()
    with pytest.raises(asyncio.CancelledError):
        async with error_context("loop", "step failed"):
            raise asyncio.CancelledError
    assert errors_total() == before


async def test_error_handler_returns_none_instead_of_raising() -> None:
    @error_handler("decorated", "call failed")
    async def divide(a: int, b: int) -> float:
        return a / b

    assert await divide(4, 2) == 2
    before = errors_total().get(("decorated", "ZeroDivisionError"), 0)
    assert await divide(1, 0) is None
    assert errors_total()[("decorated", "ZeroDivisionError")] == before + 1


async def test_a_failing_job_is_logged_with_its_ids(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", structured=True)

    async def handler(job: ClaimedJob) -> None:
        raise RuntimeError("handler bug")

    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1:1/none")
    job = ClaimedJob(7, uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 1, datetime.now(UTC))
    await JobRunner(engine, "deliver", handler)._run(job)  # does not raise
    await engine.dispose()
    (line,) = json_lines(capsys.readouterr().out)
    assert line["level"] == "ERROR"
    assert line["component"] == "worker:deliver"
    assert (line["job_id"], line["conversation_id"]) == ("7", str(job.conversation_id))
    assert line["org_id"] == str(job.org_id)


async def test_unmatched_requests_carry_a_request_id(client: AsyncTestClient[Litestar]) -> None:
    missing = await client.get("/no/such/page", headers={"X-Request-ID": "req-404"})
    assert (missing.status_code, missing.headers["x-request-id"]) == (404, "req-404")
    wrong_method = await client.delete("/health/live")
    assert wrong_method.status_code == 405
    assert len(wrong_method.headers["x-request-id"]) == 32


@pytest.mark.parametrize("target", ["api", "webhook"])
async def test_a_client_gone_before_its_body_is_not_a_server_error(
    app: Litestar,
    client: AsyncTestClient[Litestar],
    admin_headers: dict[str, str],
    log_records: list[Any],
    target: str,
) -> None:
    """The body never arrives (the client disconnected): logged at INFO and counted as 499,
    neither an ERROR line nor a counted server error; through a Litestar route as through the
    webhook's door."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: Any) -> None:
        sent.append(message)

    if target == "api":
        path = route = "/api/v1/integrations"
        headers = [(k.lower().encode(), v.encode()) for k, v in admin_headers.items()]
    else:
        integration = await create_integration(client, admin_headers)
        path = f"/api/v1/integrations/webhook/{integration['id']}"
        route = "/api/v1/integrations/webhook/{integration_id:str}"
        headers = []
        # The app serves on the client's event loop: one request there reads the integration
        # into the gate's cache, so the call below touches no connection of that loop.
        unsigned = await client.post(path, json={})
        assert unsigned.status_code == 401
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [*headers, (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
        "state": {},
    }
    errors_before = sum(errors_total().values())
    await app(scope, receive, send)  # type: ignore[arg-type]

    assert sent[0]["status"] == 499
    assert not [r for r in log_records if r["level"].name in ("ERROR", "CRITICAL")]
    assert [r["message"] for r in log_records if r["level"].name == "INFO"][-1] == (
        "client disconnected before the request was read"
    )
    assert sum(errors_total().values()) == errors_before
    metrics = (await client.get("/metrics")).text
    assert f'route="{route}",status="499"' in metrics
