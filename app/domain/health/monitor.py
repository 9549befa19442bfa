"""The detailed health report: six checks, cached, sampled in the background, alerting.

`HealthMonitor.report()` serves `/health/detailed`: the last report while it is younger than
`HEALTH_CACHE_SECONDS`, else a fresh one, and concurrent callers share one run of the checks,
so a probe storm costs one round of checks per cache period. `keep_sampling()` runs the checks
every `HEALTH_CHECK_INTERVAL_SECONDS` where the workers run, so a check that turns unhealthy is
noticed (and alerted, see `alerts`) even when nobody asks.

Statuses: `healthy`; `degraded` (Botlyne serves, with a fallback or a backlog: Redis down,
Gemini or Evolution unreachable, a breaker open, a resource over 90 %, work waiting too long);
`unhealthy` (it cannot do its job: the database unreachable or behind the schema head, memory
or disk over 97 %). The report is `unhealthy` when any check is, else `degraded` when any check
is. A check that fails unexpectedly reports `degraded`; the database check is the only one whose
failure is `unhealthy`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import msgspec
import psutil
from redis.asyncio import Redis
from sqlalchemy.ext.asyncio import AsyncEngine

from app.config import Settings
from app.core.migrations import head_revision
from app.core.observability import error_context, log_error
from app.core.resilience import ClientFault, TransientError, resilience_manager
from app.domain.health.alerts import Incidents
from app.domain.health.repository import failed_deliveries, schema_revision, work_snapshot
from app.gateways.alerts import AlertGateway
from app.gateways.evolution import EvolutionGateway
from app.gateways.gemini import GeminiGateway

Status = Literal["healthy", "degraded", "unhealthy"]

DATABASE_TIMEOUT_SECONDS = 2.0
REDIS_TIMEOUT_SECONDS = 0.1
EXTERNAL_TIMEOUT_SECONDS = 3.0
FAILED_DELIVERIES_WINDOW_SECONDS = 3600
ALERT_DRAIN_SECONDS = 5.0
# Percent used above which a resource is degraded / unhealthy. A busy CPU slows answers but
# breaks nothing, so it never makes the report unhealthy; a full disk or memory does.
RESOURCE_LIMITS: dict[str, tuple[float, float | None]] = {
    "cpu_percent": (90.0, None),
    "memory_percent": (90.0, 97.0),
    "disk_percent": (90.0, 97.0),
}
_RANK: dict[Status, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


@dataclass(slots=True)
class Check:
    status: Status
    message: str
    details: dict[str, Any] = field(default_factory=dict)


class HealthReport(msgspec.Struct, kw_only=True):
    overall_status: Status
    timestamp: datetime
    # name → {"status", "response_time_ms", "message", ...details}
    checks: dict[str, dict[str, Any]]
    total_checks: int
    healthy_checks: int
    critical_issues: list[str]


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=_RANK.__getitem__, default="healthy")


class HealthMonitor:
    def __init__(
        self,
        settings: Settings,
        engine: AsyncEngine,
        redis: Redis | None,
        gemini: GeminiGateway,
        evolution: EvolutionGateway,
        incidents: Incidents,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.redis = redis
        self.gemini = gemini
        self.evolution = evolution
        self.incidents = incidents
        self.clock = clock
        self.checks: dict[str, Callable[[], Awaitable[Check]]] = {
            "database": self.check_database,
            "redis": self.check_redis,
            "external_apis": self.check_external_apis,
            "system_resources": self.check_system_resources,
            "conversation_processing": self.check_conversation_processing,
            "circuit_breakers": self.check_circuit_breakers,
        }
        self._last: HealthReport | None = None
        self._taken_at = 0.0
        self._running: asyncio.Future[HealthReport] | None = None
        # CPU use is measured between two calls; this first one starts the clock.
        psutil.cpu_percent(interval=None)

    # --- reports ---------------------------------------------------------------------------

    async def report(self) -> HealthReport:
        """The cached report while fresh, else a new one."""
        last = self._last
        if last is not None and self.clock() - self._taken_at < self.settings.health_cache_seconds:
            return last
        return await self.sample()

    async def sample(self) -> HealthReport:
        """Run every check now (joining a run in progress) and raise or resolve incidents."""
        if self._running is None:
            self._running = asyncio.ensure_future(self._sample())
            self._running.add_done_callback(self._sampled)
        # Shielded: a caller that goes away (a probe timing out) does not cancel the others' run.
        return await asyncio.shield(self._running)

    def _sampled(self, _: asyncio.Future[HealthReport]) -> None:
        self._running = None

    async def aclose(self) -> None:
        """Stop a run of the checks in progress, before what they use is closed."""
        if self._running is not None:
            self._running.cancel()
            await asyncio.gather(self._running, return_exceptions=True)

    async def keep_sampling(self) -> None:
        """Sample every `HEALTH_CHECK_INTERVAL_SECONDS`, forever (a worker loop)."""
        while True:
            async with error_context("health", "health sampling failed"):
                await self.sample()
            await asyncio.sleep(self.settings.health_check_interval_seconds)

    async def _sample(self) -> HealthReport:
        names = list(self.checks)
        results = await asyncio.gather(*(self._timed(name) for name in names))
        checks = dict(zip(names, results, strict=True))
        statuses: list[Status] = [check["status"] for check in checks.values()]
        report = HealthReport(
            overall_status=worst(statuses),
            timestamp=datetime.now(UTC),
            checks=checks,
            total_checks=len(checks),
            healthy_checks=statuses.count("healthy"),
            critical_issues=[
                f"{name}: {check['message']}"
                for name, check in checks.items()
                if check["status"] == "unhealthy"
            ],
        )
        self._last, self._taken_at = report, self.clock()
        self._announce(checks)
        return report

    async def _timed(self, name: str) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            check = await self.checks[name]()
        except Exception as exc:
            log_error("health", f"health check {name} failed", exc)
            check = Check("degraded", f"the check failed: {type(exc).__name__}")
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        return {
            "status": check.status,
            "response_time_ms": elapsed,
            "message": check.message,
            **check.details,
        }

    def _announce(self, checks: dict[str, dict[str, Any]]) -> None:
        for name, check in checks.items():
            key = f"health:{name}"
            if check["status"] == "unhealthy":
                summary = f"health check {name} is unhealthy: {check['message']}"
                self.incidents.open(key, summary, check)
            else:
                summary = f"health check {name} recovered: {check['status']}"
                self.incidents.resolve(key, summary, check)

    # --- the checks --------------------------------------------------------------------------

    async def check_database(self) -> Check:
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS):
                revision = await schema_revision(self.engine)
        except Exception as exc:
            return Check("unhealthy", f"the database does not answer: {type(exc).__name__}")
        head = head_revision()
        details = {"revision": revision, "head": head}
        if revision != head:
            return Check("unhealthy", "the schema is not at the head revision", details)
        return Check("healthy", "answers; schema at the head revision", details)

    async def check_redis(self) -> Check:
        if self.redis is None:
            return Check(
                "healthy",
                "not configured; rate limits, replay keys and breakers are per process",
                {"configured": False},
            )
        try:
            async with asyncio.timeout(REDIS_TIMEOUT_SECONDS):
                await self.redis.ping()
        except Exception as exc:
            return Check(
                "degraded",
                f"unreachable ({type(exc).__name__}); in-process fallbacks in use",
                {"configured": True},
            )
        return Check("healthy", "answers PING", {"configured": True})

    async def check_external_apis(self) -> Check:
        gemini, evolution = await asyncio.gather(
            _probe(self.gemini.configured, self.gemini.probe, "GOOGLE_API_KEY"),
            _probe(self.evolution.configured, self.evolution.probe, "EVOLUTION_API_BASE_URL"),
        )
        status = worst([gemini["status"], evolution["status"]])
        message = f"gemini: {gemini['message']}; evolution: {evolution['message']}"
        return Check(status, message, {"gemini": gemini, "evolution": evolution})

    async def check_system_resources(self) -> Check:
        used = await anyio.to_thread.run_sync(_resources_used, self.settings.data_dir)
        status: Status = "healthy"
        over: list[str] = []
        for name, value in used.items():
            degraded_at, unhealthy_at = RESOURCE_LIMITS[name]
            if unhealthy_at is not None and value > unhealthy_at:
                status = "unhealthy"
                over.append(f"{name} {value} > {unhealthy_at}")
            elif value > degraded_at:
                status = worst([status, "degraded"])
                over.append(f"{name} {value} > {degraded_at}")
        message = "over the limit: " + ", ".join(over) if over else "within limits"
        limits = {name: {"degraded": d, "unhealthy": u} for name, (d, u) in RESOURCE_LIMITS.items()}
        return Check(status, message, {**used, "limits": limits})

    async def check_conversation_processing(self) -> Check:
        settings = self.settings
        try:
            async with asyncio.timeout(DATABASE_TIMEOUT_SECONDS), self.engine.connect() as db:
                work = await work_snapshot(db)
                failed = await failed_deliveries(db, FAILED_DELIVERIES_WINDOW_SECONDS)
        except Exception as exc:
            # The database check reports the outage itself; this one only cannot tell.
            return Check(
                "degraded", f"not measured, the database did not answer: {type(exc).__name__}"
            )
        measured: dict[str, float | None] = {
            "oldest_unanswered_seconds": work.oldest_unanswered_seconds,
            "queue_depth": work.queue_depth,
            "oldest_queue_wait_seconds": work.oldest_queue_wait_seconds,
            "agents_online": work.agents_online,
            "outbox_backlog": work.outbox_backlog,
            "failed_deliveries_last_hour": failed,
        }
        limits = {
            "oldest_unanswered_seconds": settings.health_max_reply_delay_seconds,
            "oldest_queue_wait_seconds": settings.health_max_queue_wait_seconds,
            "outbox_backlog": settings.health_max_outbox_backlog,
            "failed_deliveries_last_hour": settings.health_max_failed_deliveries_per_hour,
        }
        problems = []
        for name, limit in limits.items():
            value = measured[name]
            if value is not None and value > limit:
                problems.append(f"{name} {value} > {limit}")
        details = {**measured, "limits": limits}
        # A backlog slows service down but loses nothing (every job is durable): degraded.
        if problems:
            return Check("degraded", "behind: " + ", ".join(problems), details)
        return Check("healthy", "keeping up", details)

    async def check_circuit_breakers(self) -> Check:
        await resilience_manager.refresh()
        status = resilience_manager.get_health_status()
        breakers: dict[str, Any] = status["breakers"]
        not_closed = sorted(name for name, b in breakers.items() if b["state"] != "closed")
        details = {"backend": status["backend"], "breakers": breakers}
        if not_closed:
            return Check("degraded", "not closed: " + ", ".join(not_closed), details)
        return Check("healthy", f"{len(breakers)} closed", details)


async def _probe(
    configured: bool, probe: Callable[[float], Awaitable[None]], variable: str
) -> dict[str, Any]:
    if not configured:
        return {"status": "healthy", "message": f"not configured ({variable} unset)"}
    started = time.perf_counter()
    try:
        await probe(EXTERNAL_TIMEOUT_SECONDS)
    except TransientError as exc:
        result: dict[str, Any] = {"status": "degraded", "message": f"unreachable: {exc}"}
    except ClientFault as exc:
        result = {"status": "degraded", "message": f"refused the request: {exc}"}
    else:
        result = {"status": "healthy", "message": "reachable"}
    result["response_time_ms"] = round((time.perf_counter() - started) * 1000, 3)
    return result


def _resources_used(data_dir: Path) -> dict[str, float]:
    # The data directory may not exist (an external database); its disk is the nearest
    # existing parent's.
    path = next((p for p in (data_dir, *data_dir.parents) if p.exists()), Path("/"))
    return {
        "cpu_percent": psutil.cpu_percent(interval=None),
        "memory_percent": psutil.virtual_memory().percent,
        "disk_percent": psutil.disk_usage(str(path)).percent,
    }


@contextlib.asynccontextmanager
async def monitoring(
    settings: Settings,
    engine: AsyncEngine,
    redis: Redis | None,
    http: httpx.AsyncClient,
    gemini: GeminiGateway,
) -> AsyncIterator[HealthMonitor]:
    """The health monitor of a process, with breaker openings alerted while the block runs;
    alerts still in flight at the end get `ALERT_DRAIN_SECONDS` to go out."""
    incidents = Incidents(AlertGateway(settings, http))
    unsubscribe = resilience_manager.on_state_change(incidents.breaker_changed)
    monitor = HealthMonitor(
        settings, engine, redis, gemini, EvolutionGateway(settings, http), incidents
    )
    try:
        yield monitor
    finally:
        unsubscribe()
        await monitor.aclose()
        await incidents.drain(ALERT_DRAIN_SECONDS)
