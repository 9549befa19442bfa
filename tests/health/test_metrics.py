"""`/metrics` and `/metrics/summary`: Prometheus text that parses, route templates as labels,
a series count that raw URLs cannot grow, and the counters fed by the rest of the app."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from app.asgi import create_app
from app.core.observability import error_context
from app.core.resilience import TransientError, resilience_manager
from app.domain.health.monitor import HealthMonitor
from tests.conftest import ADMIN_KEY, make_settings
from tests.helpers import create_integration, signed

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@contextlib.asynccontextmanager
async def serving(database_url: str, **overrides: Any) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(make_settings(database_url, **overrides))) as client:
        yield client


async def scrape(client: AsyncTestClient[Litestar]) -> list[Sample]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return [
        sample
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    ]


def value(samples: list[Sample], name: str, **labels: str) -> float | None:
    for sample in samples:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    return None


@pytest.mark.usefixtures("clean_db")
async def test_requests_are_labelled_by_route_template(database_url: str) -> None:
    conversation = uuid.uuid4()
    async with serving(database_url) as client:
        await client.get("/health/live")
        await client.get(f"/api/v1/conversations/{conversation}", headers=ADMIN)
        await client.get("/no/such/page")
        await client.post("/health/live")
        samples = await scrape(client)

    requests = "botlyne_http_requests_total"
    assert value(samples, requests, method="GET", route="/health/live", status="200") == 1
    route = "/api/v1/conversations/{conversation_id}"
    assert value(samples, requests, method="GET", route=route, status="404") == 1
    assert value(samples, requests, method="GET", route="unmatched", status="404") == 1
    assert value(samples, requests, method="POST", route="unmatched", status="405") == 1
    count = "botlyne_http_request_duration_seconds_count"
    assert value(samples, count, method="GET", route=route, status="404") == 1
    inf = value(samples, "botlyne_http_request_duration_seconds_bucket", route=route, le="+Inf")
    assert inf == 1
    # The scrape itself is in flight while it is collected.
    assert value(samples, "botlyne_http_requests_in_flight", route="/metrics") == 1
    assert not any(str(conversation) in str(s.labels) for s in samples)
    assert not any("/no/such/page" in str(s.labels) for s in samples)


async def call(app: Any, method: str, path: str, query: str = "") -> int:
    """One request straight into the ASGI app: the test client's HTTP layer would cost ten times
    more than the app, and these tests only want the app's answer."""
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(b"host", b"testserver")],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }
    await app(scope, receive, send)
    return status


@pytest.mark.usefixtures("clean_db")
async def test_distinct_urls_do_not_grow_the_series(database_url: str) -> None:
    async with serving(database_url) as client:
        # Every kind of request (the scrape included) once, so each series exists before.
        await scrape(client)
        await client.get("/nowhere/0")
        await client.get(f"/api/v1/conversations/{uuid.uuid4()}")
        await client.request("BREW", "/nowhere/0")
        before = await scrape(client)
        statuses: set[int] = set()
        for number in range(10_000):
            if number % 10 == 0:  # matched, 401 without a key
                path, method = f"/api/v1/conversations/{uuid.uuid4()}", "GET"
            elif number % 10 == 1:
                path, method = f"/nowhere/{number}", f"BREW{number}"
            else:
                path, method = f"/nowhere/{number}", "GET"
            statuses.add(await call(client.app, method, path, f"q={number}"))
        after = await scrape(client)
    assert statuses == {401, 404}
    names = {(s.name, tuple(sorted(s.labels.items()))) for s in before}
    assert {(s.name, tuple(sorted(s.labels.items()))) for s in after} == names
    unmatched = value(after, "botlyne_http_requests_total", method="GET", route="unmatched")
    assert unmatched == 8_001
    assert value(after, "botlyne_http_requests_total", method="OTHER", route="unmatched") == 1_001
    route = "/api/v1/conversations/{conversation_id}"
    assert value(after, "botlyne_http_requests_total", route=route, status="401") == 1_001


@pytest.mark.usefixtures("clean_db")
async def test_summary_is_the_same_as_json(database_url: str) -> None:
    async with serving(database_url) as client:
        await client.get("/health/live")
        summary = (await client.get("/metrics/summary")).json()
    requests = summary["botlyne_http_requests"]
    assert requests["type"] == "counter"
    assert requests["help"] == "HTTP requests served"
    assert {
        "name": "botlyne_http_requests_total",
        "labels": {"method": "GET", "route": "/health/live", "status": "200"},
        "value": 1.0,
    } in requests["samples"]
    assert summary["botlyne_http_request_duration_seconds"]["type"] == "histogram"
    assert summary["botlyne_rate_limiter_mode"]["samples"][0]["labels"] == {"mode": "redis"}
    for name in ("botlyne_queue_depth", "botlyne_agents_online", "botlyne_outbox_backlog"):
        assert summary[name]["samples"][0]["value"] == 0


@pytest.mark.usefixtures("clean_db")
async def test_webhook_outcomes_and_rate_limit_decisions(database_url: str) -> None:
    async with serving(database_url, rate_limit_requests_per_minute=1) as client:
        integration = await create_integration(client, ADMIN)
        url = f"/api/v1/integrations/webhook/{integration['id']}"
        unsigned = await client.post(url, json={"message": {"body": "hi"}})
        assert unsigned.status_code == 401
        for number in range(2):
            payload = {"message": {"body": "hi"}, "sender": {"id": "u"}, "message_id": str(number)}
            body, headers = signed(integration["secret"], payload)
            await client.post(url, content=body, headers=headers)
        samples = await scrape(client)

    webhooks = "botlyne_webhook_requests_total"
    assert value(samples, webhooks, outcome="rejected", reason="missing_signature") == 1
    assert value(samples, webhooks, outcome="accepted", reason="accepted") == 1
    assert value(samples, webhooks, outcome="rejected", reason="rate_limited") == 1
    decisions = "botlyne_rate_limit_decisions_total"
    assert value(samples, decisions, limit="integration", decision="allowed") == 1
    assert value(samples, decisions, limit="integration", decision="rejected") == 1
    assert value(samples, decisions, limit="failed_attempts", decision="allowed") == 1
    assert value(samples, "botlyne_rate_limiter_mode", mode="memory-unconfigured") == 1
    assert value(samples, "botlyne_rate_limiter_mode", mode="redis") == 0
    assert value(samples, "botlyne_rate_limiter_fallback_decisions_total") == 0


@pytest.mark.usefixtures("clean_db")
async def test_breakers_errors_and_maintenance(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await resilience_manager.reset()

    async def broken(self: HealthMonitor) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(HealthMonitor, "report", broken)
    async with serving(database_url) as client:
        before = await scrape(client)
        for _ in range(2):
            with contextlib.suppress(TransientError):
                async with resilience_manager.guard("metrics-test", failure_threshold=2):
                    raise TransientError("down")
        async with error_context("test-loop", "step failed"):
            raise KeyError("gone")
        crashed = await client.get("/health/detailed")
        client.app.state.metrics.record_maintenance(
            {"abandoned_conversations": 2, "audit": {"deleted": 7}, "ok": True, "note": "x"}
        )
        samples = await scrape(client)
    await resilience_manager.reset()

    assert crashed.status_code == 500
    assert crashed.json() == {"status_code": 500, "detail": "Internal server error"}
    state = "botlyne_circuit_breaker_state"
    assert value(samples, state, breaker="metrics-test", state="open") == 1
    assert value(samples, state, breaker="metrics-test", state="closed") == 0
    assert value(samples, "botlyne_circuit_breaker_opened_total", breaker="metrics-test") == 1
    assert value(samples, "botlyne_circuit_breaker_backend", backend="memory") == 1

    def errors(sample_set: list[Sample], component: str, kind: str) -> float:
        name = "botlyne_errors_total"
        return value(sample_set, name, component=component, type=kind) or 0.0

    assert errors(samples, "test-loop", "KeyError") - errors(before, "test-loop", "KeyError") == 1
    assert errors(samples, "http", "RuntimeError") - errors(before, "http", "RuntimeError") == 1
    route = "/health/detailed"
    assert value(samples, "botlyne_http_requests_total", route=route, status="500") == 1

    assert value(samples, "botlyne_maintenance_runs_total") == 1
    last_run = value(samples, "botlyne_maintenance_last_run_timestamp_seconds")
    assert last_run is not None and abs(last_run - time.time()) < 60
    results = "botlyne_maintenance_last_run"
    assert value(samples, results, item="abandoned_conversations") == 2
    assert value(samples, results, item="audit.deleted") == 7
    assert value(samples, results, item="ok") is None  # booleans and text are not figures
