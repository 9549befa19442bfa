"""Two `botlyne serve` processes sharing PostgreSQL and Redis: an event raised on one reaches a
stream held open on the other within a second."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN_KEY
from tests.events.conftest import new_agent
from tests.events.test_stream import (
    conversation_of,
    customer_says,
    generic_integration,
    webhook,
)
from tests.live import SseClient

BOTLYNE = str(Path(sys.executable).with_name("botlyne"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    process = subprocess.Popen(
        [BOTLYNE, "serve", "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise AssertionError(f"botlyne serve exited with {process.returncode}")
        time.sleep(0.2)
    process.kill()
    raise AssertionError("botlyne serve did not start")


@pytest.fixture
def two_servers(
    tmp_path: Path, database_url: str, redis_url: str, clean_db: AsyncEngine
) -> Iterator[tuple[str, str]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "AUTO_MIGRATE": "false",
        "BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "RUN_WORKERS": "false",
        "LOG_LEVEL": "WARNING",
    }
    started: list[subprocess.Popen[bytes]] = []
    try:
        first, base_a = _serve(env, tmp_path)
        started.append(first)
        second, base_b = _serve(env, tmp_path)
        started.append(second)
        yield base_a, base_b
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()


async def test_an_event_on_one_server_reaches_a_stream_on_the_other(
    two_servers: tuple[str, str], admin_headers: dict[str, str]
) -> None:
    base_a, base_b = two_servers
    async with httpx.AsyncClient(timeout=10) as http:
        agent, agent_key = await new_agent(http, base_a, admin_headers, "Iris Costa")
        integration = await generic_integration(http, base_a, admin_headers)
        await customer_says(http, base_a, integration, "rafa", "Hello")
        conversation_id = await conversation_of(http, base_a, admin_headers, "rafa")

        async with SseClient(f"{base_b}/api/v1/events/stream", headers=agent_key) as stream:
            latencies: list[float] = []

            async def measure(request: Any, check: Any) -> dict[str, Any]:
                response = await request
                assert response.status_code < 300, response.text
                answered = time.monotonic()
                event = await stream.wait_for(check, within=1.0)
                latencies.append(time.monotonic() - answered)
                return event

            status = await measure(
                http.put(
                    f"{base_a}/api/v1/agents/{agent['id']}/status",
                    json={"status": "busy"},
                    headers=admin_headers,
                ),
                lambda e: e["type"] == "agent.status" and e["status"] == "busy",
            )
            assert status["agent_id"] == agent["id"]
            await http.put(
                f"{base_a}/api/v1/agents/{agent['id']}/status",
                json={"status": "online"},
                headers=admin_headers,
            )
            offered = await measure(
                http.post(
                    f"{base_a}/api/v1/agents/queue",
                    json={"conversation_id": conversation_id},
                    headers=admin_headers,
                ),
                lambda e: e["type"] == "assignment.offered",
            )
            assert offered == {
                **offered,
                "conversation_id": conversation_id,
                "agent_id": agent["id"],
            }
            received = await measure(
                webhook(http, base_a, integration, "rafa", "Still there?"),
                lambda e: e["type"] == "message.received",
            )
            assert received["conversation_id"] == conversation_id
    assert max(latencies) < 1.0, latencies
