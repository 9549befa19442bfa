from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from loguru import logger

from app.core.logging import Throttled, configure_logging


async def test_log_lines_are_json_with_the_request_id_and_no_secrets(
    client: AsyncTestClient[Litestar], capsys: pytest.CaptureFixture[str]
) -> None:
    secret_key = "bl_this-key-must-never-appear-in-logs-000"
    response = await client.get(
        "/api/v1/organization",
        headers={"Authorization": f"Bearer {secret_key}", "X-Request-ID": "req-42"},
    )
    assert response.status_code == 401
    assert response.headers["x-request-id"] == "req-42"
    out = capsys.readouterr().out
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    mine = [line for line in lines if line["request_id"] == "req-42"]
    assert mine, out
    assert {"timestamp", "level", "message", "service", "request_id"} <= set(mine[0])
    assert mine[0]["service"] == "botlyne"
    assert secret_key not in out


def test_exceptions_are_logged_as_type_and_message(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", structured=True)
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["level"] == "ERROR"
    assert line["exception"] == {"type": "ValueError", "message": "boom"}
    assert "Traceback" not in json.dumps(line)


def test_uvicorn_builds_no_access_lines() -> None:
    configure_logging("DEBUG", structured=True)
    # uvicorn formats an access line's arguments for every request unless the access logger has
    # no handler anywhere up its chain; it reads exactly this.
    assert not logging.getLogger("uvicorn.access").hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()


def test_a_recurring_warning_is_one_line_per_interval(log_records: list[Any]) -> None:
    now = [100.0]
    log = Throttled(interval=10.0, clock=lambda: now[0])
    for _ in range(5):
        log.warning("database unavailable: {}", "OSError")
    now[0] += 10.0
    log.warning("database unavailable: {}", "OSError")
    messages = [r["message"] for r in log_records if r["level"].name == "WARNING"]
    assert messages == [
        "database unavailable: OSError",
        "database unavailable: OSError (4 more like it in the last 10 s)",
    ]
