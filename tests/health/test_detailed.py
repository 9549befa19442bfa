"""`/health/detailed`: the report's shape, its statuses and codes, caching, the token, and the
incident alert of a check that turns unhealthy."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from app.core.migrations import head_revision
from app.core.resilience import TransientError, resilience_manager
from app.core.security.signatures import verify_signature
from app.domain.health import monitor
from tests.conftest import ADMIN_KEY, make_settings
from tests.health.conftest import AlertReceiver, captured_logs
from tests.helpers import create_integration, signed
from tests.stubs.evolution import EvolutionStub
from tests.stubs.gemini import GeminiStub

CHECKS = {
    "database",
    "redis",
    "external_apis",
    "system_resources",
    "conversation_processing",
    "circuit_breakers",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


@pytest.fixture
def stubs(gemini: GeminiStub, evolution: EvolutionStub) -> Iterator[dict[str, Any]]:
    gemini.reset()
    evolution.reset()
    yield {
        "google_api_key": gemini.api_key,
        "google_api_base_url": gemini.base_url,
        "evolution_api_base_url": evolution.base_url,
        "evolution_api_global_key": evolution.api_key,
    }
    gemini.reset()
    evolution.reset()


@contextlib.asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[AsyncTestClient[Litestar]]:
    async with AsyncTestClient(app=create_app(settings)) as client:
        yield client


@contextlib.asynccontextmanager
async def schema_behind(engine: AsyncEngine) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    try:
        yield
    finally:
        async with engine.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": head_revision()}
            )


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_healthy_when_everything_answers(
    database_url: str,
    redis_url: str,
    stubs: dict[str, Any],
    gemini: GeminiStub,
    evolution: EvolutionStub,
) -> None:
    settings = make_settings(database_url, redis_url=redis_url, **stubs)
    async with serving(settings) as client:
        response = await client.get("/health/detailed")
    assert response.status_code == 200, response.text
    report = response.json()
    assert set(report) == {
        "overall_status",
        "timestamp",
        "checks",
        "total_checks",
        "healthy_checks",
        "critical_issues",
    }
    assert report["overall_status"] == "healthy"
    assert (report["total_checks"], report["healthy_checks"]) == (6, 6)
    assert report["critical_issues"] == []
    taken = datetime.fromisoformat(report["timestamp"])
    assert taken.utcoffset() is not None and taken.utcoffset().total_seconds() == 0
    assert abs((datetime.now(UTC) - taken).total_seconds()) < 30
    assert set(report["checks"]) == CHECKS
    for check in report["checks"].values():
        assert check["status"] == "healthy"
        assert isinstance(check["message"], str) and check["message"]
        assert check["response_time_ms"] >= 0
    assert report["checks"]["database"]["revision"] == head_revision()
    assert report["checks"]["redis"]["configured"] is True
    apis = report["checks"]["external_apis"]
    assert (apis["gemini"]["status"], apis["evolution"]["status"]) == ("healthy", "healthy")
    # Reachability without spending quota: Gemini's model metadata, Evolution's welcome page.
    (probe,) = [r for r in gemini.requests if r.method == "GET"]
    assert probe.path == "/v1beta/models/gemini-2.5-flash"
    assert probe.headers["x-goog-api-key"] == gemini.api_key
    assert gemini.calls("generate") == 0
    assert [r.path for r in evolution.requests] == ["/"]


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_unconfigured_dependencies_are_healthy_with_a_message(database_url: str) -> None:
    async with serving(make_settings(database_url)) as client:
        report = (await client.get("/health/detailed")).json()
    assert report["overall_status"] == "healthy"
    assert "not configured" in report["checks"]["redis"]["message"]
    apis = report["checks"]["external_apis"]
    assert "GOOGLE_API_KEY unset" in apis["gemini"]["message"]
    assert "EVOLUTION_API_BASE_URL unset" in apis["evolution"]["message"]


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_degraded_when_configured_redis_is_down(database_url: str) -> None:
    settings = make_settings(database_url, redis_url="redis://127.0.0.1:1/0")
    async with serving(settings) as client:
        response = await client.get("/health/detailed")
    assert response.status_code == 200
    report = response.json()
    assert report["overall_status"] == "degraded"
    assert report["critical_issues"] == []
    redis = report["checks"]["redis"]
    assert redis["status"] == "degraded"
    assert "unreachable" in redis["message"]
    assert redis["response_time_ms"] < 500
    assert report["healthy_checks"] == 5


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_degraded_when_an_external_api_is_unreachable(
    database_url: str, stubs: dict[str, Any]
) -> None:
    settings = make_settings(database_url, **{**stubs, "google_api_base_url": "http://127.0.0.1:1"})
    async with serving(settings) as client:
        report = (await client.get("/health/detailed")).json()
    apis = report["checks"]["external_apis"]
    assert (apis["status"], apis["gemini"]["status"]) == ("degraded", "degraded")
    assert apis["gemini"]["message"].startswith("unreachable")
    assert apis["evolution"]["status"] == "healthy"
    assert report["overall_status"] == "degraded"


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_degraded_while_a_breaker_is_open(database_url: str) -> None:
    async def fail() -> None:
        async with resilience_manager.guard("health-test", failure_threshold=1, timeout=30):
            raise TransientError("down")

    with contextlib.suppress(TransientError):
        await fail()
    async with serving(make_settings(database_url)) as client:
        report = (await client.get("/health/detailed")).json()
    breakers = report["checks"]["circuit_breakers"]
    assert breakers["status"] == "degraded"
    assert "health-test" in breakers["message"]
    assert breakers["breakers"]["health-test"]["state"] == "open"


@pytest.mark.usefixtures("clean_db")
async def test_resource_thresholds(database_url: str, steady_resources: dict[str, float]) -> None:
    async with serving(make_settings(database_url, health_cache_seconds=0)) as client:
        steady_resources["cpu_percent"] = 99.0
        cpu = (await client.get("/health/detailed")).json()["checks"]["system_resources"]
        assert cpu["status"] == "degraded"  # a busy CPU is never unhealthy
        steady_resources["memory_percent"] = 95.0
        memory = await client.get("/health/detailed")
        assert memory.json()["checks"]["system_resources"]["status"] == "degraded"
        steady_resources["disk_percent"] = 98.0
        disk = await client.get("/health/detailed")
    assert disk.status_code == 503
    assert disk.json()["checks"]["system_resources"]["status"] == "unhealthy"
    assert disk.json()["critical_issues"] == [
        "system_resources: over the limit: cpu_percent 99.0 > 90.0, "
        "memory_percent 95.0 > 90.0, disk_percent 98.0 > 97.0"
    ]


def test_resources_are_read_from_the_machine(tmp_path: Any) -> None:
    used = monitor._resources_used(tmp_path / "not" / "created")
    assert set(used) == {"cpu_percent", "memory_percent", "disk_percent"}
    assert all(0 <= value <= 100 for value in used.values())


@pytest.mark.usefixtures("steady_resources")
async def test_conversation_backlog_is_degraded_not_unhealthy(
    database_url: str, clean_db: AsyncEngine
) -> None:
    settings = make_settings(database_url, health_cache_seconds=0)
    async with serving(settings) as client:
        quiet = (await client.get("/health/detailed")).json()["checks"]["conversation_processing"]
        assert quiet["status"] == "healthy"
        assert (quiet["queue_depth"], quiet["outbox_backlog"], quiet["agents_online"]) == (0, 0, 0)
        assert quiet["oldest_unanswered_seconds"] is None

        integration = await create_integration(client, ADMIN)
        body, headers = signed(
            integration["secret"], {"message": {"body": "hi"}, "sender": {"id": "u1"}}
        )
        accepted = await client.post(
            f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
        )
        assert accepted.status_code == 202, accepted.text
        # The workers are off, so the bot's job waits; make it look ten minutes old.
        async with clean_db.begin() as connection:
            await connection.execute(
                text("UPDATE jobs SET created_at = now() - interval '10 minutes'")
            )
        response = await client.get("/health/detailed")
    assert response.status_code == 200
    check = response.json()["checks"]["conversation_processing"]
    assert check["status"] == "degraded"
    assert check["oldest_unanswered_seconds"] >= 600
    assert check["message"].startswith("behind: oldest_unanswered_seconds")
    assert response.json()["overall_status"] == "degraded"


@pytest.mark.usefixtures("steady_resources")
async def test_unhealthy_database_answers_503_and_alerts_once_per_incident(
    database_url: str,
    clean_db: AsyncEngine,
    alert_receiver: AlertReceiver,
) -> None:
    settings = make_settings(
        database_url,
        health_cache_seconds=0,
        alert_webhook_url=alert_receiver.base_url + "/alerts",
        alert_webhook_secret="alert-signing-secret",
    )
    async with serving(settings) as client:
        with captured_logs() as log_lines:
            async with schema_behind(clean_db):
                first = await client.get("/health/detailed")
                second = await client.get("/health/detailed")
                (alert,) = await alert_receiver.wait_for(1)
            recovered = await client.get("/health/detailed")
            alerts = await alert_receiver.wait_for(2)

    assert (first.status_code, second.status_code, recovered.status_code) == (503, 503, 200)
    report = first.json()
    assert report["overall_status"] == "unhealthy"
    assert report["checks"]["database"]["status"] == "unhealthy"
    assert report["critical_issues"] == ["database: the schema is not at the head revision"]
    assert alert["incident"] == "health:database"
    assert alert["status"] == "firing"
    assert alert["severity"] == "critical"
    assert "schema is not at the head revision" in alert["summary"]
    assert alert["details"]["status"] == "unhealthy"
    resolution = alerts[1]
    assert (resolution["incident"], resolution["status"]) == ("health:database", "resolved")
    assert resolution["started_at"] == alert["started_at"]
    assert resolution["resolved_at"] is not None
    assert len(alert_receiver.received) == 2  # the second unhealthy report posted nothing

    posted = alert_receiver.received[0]
    assert posted.path == "/alerts"
    verify_signature(posted.headers, posted.body, ["alert-signing-secret"], now=time.time())
    critical = [message for level, message in log_lines if level == "CRITICAL"]
    assert critical == [alert["summary"]]


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_report_is_cached_and_shared(
    database_url: str, stubs: dict[str, Any], gemini: GeminiStub
) -> None:
    async with serving(make_settings(database_url, **stubs)) as client:
        storm = await asyncio.gather(*(client.get("/health/detailed") for _ in range(20)))
        later = await client.get("/health/detailed")
    timestamps = {response.json()["timestamp"] for response in [*storm, later]}
    assert len(timestamps) == 1
    assert gemini.calls("get_model") == 1


@pytest.mark.usefixtures("steady_resources", "clean_db")
async def test_the_observability_token_guards_reports_and_metrics_only(database_url: str) -> None:
    token = "observability-token-0123456789"
    async with serving(make_settings(database_url, observability_token=token)) as client:
        for path in ("/health/detailed", "/metrics", "/metrics/summary"):
            missing = await client.get(path)
            assert missing.status_code == 401, path
            assert missing.headers["www-authenticate"] == "Bearer"
            assert missing.json()["status_code"] == 401
            wrong = await client.get(path, headers={"Authorization": "Bearer nope"})
            assert wrong.status_code == 401, path
            api_key = await client.get(path, headers=ADMIN)
            assert api_key.status_code == 401, path
            right = await client.get(path, headers={"Authorization": f"Bearer {token}"})
            assert right.status_code == 200, path
        for path in ("/health", "/health/live", "/health/ready"):
            assert (await client.get(path)).status_code == 200, path
