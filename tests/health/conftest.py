"""Fixtures for the health, metrics and alert tests: Gemini and Evolution stand-ins, an alert
receiver, and machine resources held steady so a busy test machine cannot degrade a report."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from loguru import logger

from app.core.resilience import resilience_manager
from app.domain.health import monitor
from tests.stubs.evolution import EvolutionStub
from tests.stubs.gemini import GeminiStub
from tests.stubs.server import Request, Response, StubServer


class AlertReceiver(StubServer):
    """Records every POST it gets; answers `status` (200 unless a test says otherwise)."""

    def __init__(self) -> None:
        super().__init__(self._receive)
        self.status = 200
        self._lock = threading.Lock()
        self._received: list[Request] = []

    async def _receive(self, request: Request) -> Response:
        with self._lock:
            self._received.append(request)
        return Response.json(self.status, {"ok": self.status == 200})

    @property
    def received(self) -> list[Request]:
        with self._lock:
            return list(self._received)

    def alerts(self) -> list[dict[str, Any]]:
        return [request.json() for request in self.received]

    async def wait_for(self, count: int, within: float = 5.0) -> list[dict[str, Any]]:
        """The alerts once at least `count` have arrived; fails the test after `within` s."""
        deadline = asyncio.get_running_loop().time() + within
        while len(self.received) < count:
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"expected {count} alert(s), got {self.alerts()}")
            await asyncio.sleep(0.02)
        return self.alerts()


@contextlib.contextmanager
def captured_logs() -> Iterator[list[tuple[str, str]]]:
    """(level, message) of every line logged in the block. Use it after the app is built:
    building one reconfigures logging and drops sinks added before."""
    lines: list[tuple[str, str]] = []
    sink = logger.add(lambda m: lines.append((m.record["level"].name, m.record["message"])))
    try:
        yield lines
    finally:
        logger.remove(sink)


@pytest.fixture(scope="session")
def gemini() -> Iterator[GeminiStub]:
    with GeminiStub() as stub:
        yield stub


@pytest.fixture(scope="session")
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub() as stub:
        yield stub


@pytest.fixture
def alert_receiver() -> Iterator[AlertReceiver]:
    with AlertReceiver() as receiver:
        yield receiver


@pytest.fixture
def steady_resources(monkeypatch: pytest.MonkeyPatch) -> dict[str, float]:
    """What `system_resources` reads, fixed; a test may change the values."""
    used = {"cpu_percent": 12.0, "memory_percent": 40.0, "disk_percent": 50.0}
    monkeypatch.setattr(monitor, "_resources_used", lambda _path: dict(used))
    return used


@pytest.fixture(autouse=True)
async def closed_breakers() -> AsyncIterator[None]:
    """Breakers opened by other tests would degrade every report."""
    await resilience_manager.reset()
    yield
    await resilience_manager.reset()
