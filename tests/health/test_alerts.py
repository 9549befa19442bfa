"""Alerts: a breaker opening is logged at CRITICAL and posted once per incident, its closing is
posted as the resolution, and an alert that cannot be delivered never reaches its caller."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import stamina

from app.config import Settings
from app.core.observability import errors_total
from app.core.resilience import TransientError, resilience_manager
from app.core.security.signatures import verify_signature
from app.domain.health.alerts import Incidents
from app.gateways.alerts import AlertGateway
from app.gateways.http import create_http_client
from tests.health.conftest import AlertReceiver, captured_logs

OPEN_FOR = 0.2


@pytest.fixture(autouse=True)
def instant_retries() -> Iterator[None]:
    with stamina.set_testing(True, attempts=3, cap=True):
        yield


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    client = create_http_client()
    yield client
    await client.aclose()


@contextlib.asynccontextmanager
async def watching(incidents: Incidents) -> AsyncIterator[None]:
    unsubscribe = resilience_manager.on_state_change(incidents.breaker_changed)
    try:
        yield
    finally:
        unsubscribe()
        await incidents.drain(5)


async def call(name: str, *, fail: bool) -> None:
    with contextlib.suppress(TransientError):
        async with resilience_manager.guard(name, failure_threshold=2, timeout=OPEN_FOR):
            if fail:
                raise TransientError("neighbour down")


async def test_breaker_opening_is_critical_and_alerted_once_then_resolved(
    alert_receiver: AlertReceiver, http: httpx.AsyncClient
) -> None:
    name = f"alert-test-{uuid.uuid4().hex[:8]}"
    settings = Settings(alert_webhook_url=alert_receiver.base_url, alert_webhook_secret="s3cret")
    incidents = Incidents(AlertGateway(settings, http))
    with captured_logs() as lines:
        async with watching(incidents):
            for _ in range(2):
                await call(name, fail=True)
            (opened,) = await alert_receiver.wait_for(1)
            await asyncio.sleep(OPEN_FOR + 0.05)
            await call(name, fail=True)  # the trial fails: open again, the same incident
            await asyncio.sleep(OPEN_FOR + 0.05)
            await call(name, fail=False)  # the trial succeeds: closed
            alerts = await alert_receiver.wait_for(2)

    assert opened["incident"] == f"breaker:{name}"
    assert (opened["status"], opened["severity"]) == ("firing", "critical")
    assert opened["details"] == {"breaker": name, "from": "closed", "to": "open"}
    assert opened["summary"] == f"circuit breaker {name} opened"
    resolved = alerts[1]
    assert (resolved["incident"], resolved["status"]) == (f"breaker:{name}", "resolved")
    assert resolved["started_at"] == opened["started_at"]
    assert len(alert_receiver.received) == 2
    for request in alert_receiver.received:
        verify_signature(request.headers, request.body, ["s3cret"], now=time.time())
    critical = [message for level, message in lines if level == "CRITICAL"]
    assert len(critical) == 1
    assert critical[0].startswith(f"circuit breaker {name} opened")


async def test_alerts_are_unsigned_without_a_secret(
    alert_receiver: AlertReceiver, http: httpx.AsyncClient
) -> None:
    gateway = AlertGateway(Settings(alert_webhook_url=alert_receiver.base_url), http)
    await gateway.send({"incident": "test"})
    (request,) = alert_receiver.received
    assert request.json() == {"incident": "test"}
    assert "x-signature" not in request.headers
    assert request.headers["content-type"] == "application/json"


async def test_undeliverable_alert_is_logged_and_counted_never_raised(
    alert_receiver: AlertReceiver, http: httpx.AsyncClient
) -> None:
    alert_receiver.status = 503
    settings = Settings(alert_webhook_url=alert_receiver.base_url)
    incidents = Incidents(AlertGateway(settings, http))
    before = errors_total().get(("alerts", "TransientError"), 0)
    with captured_logs() as lines:
        incidents.open("health:test", "test incident", {"status": "unhealthy"})
        await incidents.drain(5)
        incidents.open("health:test", "test incident", {"status": "unhealthy"})
        await incidents.drain(5)
    assert len(alert_receiver.received) == 3  # retried, then given up
    assert errors_total()[("alerts", "TransientError")] == before + 1
    assert ("ERROR", "alert delivery failed: TransientError") in lines
    # Still the same incident, only not delivered: not announced again.
    assert [message for level, message in lines if level == "CRITICAL"] == ["test incident"]


async def test_nothing_is_posted_without_a_url(http: httpx.AsyncClient) -> None:
    incidents = Incidents(AlertGateway(Settings(), http))
    with captured_logs() as lines:
        incidents.open("health:test", "test incident", {})
        incidents.resolve("health:test", "test incident resolved", {})
        await incidents.drain(1)
    assert [level for level, _ in lines] == ["CRITICAL", "INFO"]
