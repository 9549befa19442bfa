"""The Prometheus metrics of one application: `/metrics` (text format) and `/metrics/summary`.

Each application has its own `CollectorRegistry`, so two apps in one process (tests) never share
or collide. `Metrics` is the collector of every series below except `process_*`: what happens is
counted in plain numbers (HTTP requests by the request observer, webhook outcomes and rate-limit
decisions by the webhook gate) and turned into metric families at scrape time, together with
what is read then: requests in flight, the rate limiter's mode, circuit breakers
(`resilience_manager`, after a `refresh()`), unexpected errors (`app.core.observability`), the
work waiting in PostgreSQL (one query, reused for `WORK_CACHE_SECONDS`) and the last maintenance
run. Everything runs on the event loop's thread, so the numbers need no locks.

Series (all labels bounded: `route` is the matched path template, `unmatched` when nothing
matched, never the raw path; `method` is a standard method or `OTHER`):

    botlyne_http_requests_total{method, route, status}
    botlyne_http_request_duration_seconds{method, route, status}          histogram
    botlyne_http_requests_in_flight{method, route}
    botlyne_webhook_requests_total{outcome, reason}
    botlyne_rate_limit_decisions_total{limit, decision}                  limit: integration,
                                                                         failed_attempts
    botlyne_rate_limiter_mode{mode}                                      1 for the current mode
    botlyne_rate_limiter_fallback_decisions_total
    botlyne_circuit_breaker_state{breaker, state}                        1 for the current state
    botlyne_circuit_breaker_opened_total{breaker}, ..._closed_total{breaker}
    botlyne_circuit_breaker_retries_total{breaker}
    botlyne_circuit_breaker_backend{backend}                             redis or memory
    botlyne_queue_depth, botlyne_queue_oldest_wait_seconds, botlyne_agents_online,
    botlyne_outbox_backlog, botlyne_oldest_unanswered_seconds           absent when the
                                                                         database is down
    botlyne_errors_total{component, type}
    botlyne_maintenance_runs_total, botlyne_maintenance_last_run_timestamp_seconds,
    botlyne_maintenance_last_run{item}
    process_*                                                            prometheus_client's

Maintenance hook: whoever runs maintenance in this process calls
`app.state.metrics.record_maintenance(summary)` with the JSON summary of
`run_maintenance_tasks()`; every numeric leaf becomes one `botlyne_maintenance_last_run` sample
labelled by its dotted path (`{"audit": {"deleted": 3}}` → `item="audit.deleted"`).
"""

from __future__ import annotations

import asyncio
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import TYPE_CHECKING, Any

from loguru import logger
from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.observability import errors_total
from app.core.resilience import resilience_manager
from app.core.security.ratelimit import FallbackRateLimiter
from app.domain.health.repository import WorkSnapshot, work_snapshot

if TYPE_CHECKING:
    from litestar.types import HTTPScope

WORK_CACHE_SECONDS = 2.0
WORK_TIMEOUT_SECONDS = 2.0
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# Seconds; from a probe's sub-millisecond answer to a slow generated reply.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RATE_LIMITER_MODES = ("redis", "memory", "memory-unconfigured")
BREAKER_STATES = ("closed", "open", "half_open")
_WORK_GAUGES = {
    "queue_depth": ("botlyne_queue_depth", "Conversations waiting for an agent"),
    "oldest_queue_wait_seconds": (
        "botlyne_queue_oldest_wait_seconds",
        "Seconds the longest-waiting conversation has been in the agent queue",
    ),
    "agents_online": ("botlyne_agents_online", "Support agents whose status is online"),
    "outbox_backlog": ("botlyne_outbox_backlog", "Outbound messages not yet delivered"),
    "oldest_unanswered_seconds": (
        "botlyne_oldest_unanswered_seconds",
        "Seconds the oldest inbound message in a bot conversation has waited for its answer",
    ),
}


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.in_flight: dict[int, HTTPScope] = {}
        # Request series as plain numbers, exported at scrape time: the observer runs on every
        # request on the event loop's thread, where prometheus_client's locks and per-bucket
        # counters cost more than the rest of the observer together.
        self._requests: dict[tuple[str, str | None, int], _RequestSeries] = {}
        self._webhooks: Counter[tuple[str, str]] = Counter()
        self._rate_limits: Counter[tuple[str, str]] = Counter()
        self._engine: AsyncEngine | None = None
        self._limiter: FallbackRateLimiter | None = None
        self._work: WorkSnapshot | None = None
        self._work_at = float("-inf")
        self._maintenance: dict[str, float] = {}
        self._maintenance_at: float | None = None
        self._maintenance_runs = 0
        ProcessCollector(registry=self.registry)
        self.registry.register(self)

    def bind(self, engine: AsyncEngine, limiter: FallbackRateLimiter) -> None:
        """Sources read at scrape time, known once the application has started."""
        self._engine = engine
        self._limiter = limiter

    # --- counted as it happens ---------------------------------------------------------------

    def observe(self, method: str, route: str | None, status: int, seconds: float) -> None:
        series = self._requests.get((method, route, status))
        if series is None:
            # Kept under the bounded method: a client can send any token, and an odd one takes
            # this path each time instead of adding a series.
            key = (method if method in METHODS else "OTHER", route, status)
            series = self._requests.get(key) or self._requests.setdefault(key, _RequestSeries())
        series.count += 1
        series.seconds += seconds
        series.buckets[bisect_left(DURATION_BUCKETS, seconds)] += 1

    def count_webhook(self, outcome: str, reason: str) -> None:
        self._webhooks[(outcome, reason)] += 1

    def count_rate_limit(self, limit: str, allowed: bool) -> None:
        self._rate_limits[(limit, "allowed" if allowed else "rejected")] += 1

    def record_maintenance(self, summary: Mapping[str, Any]) -> None:
        """The summary of a maintenance run that just finished (see the module docstring)."""
        self._maintenance = dict(_numeric_leaves(summary))
        self._maintenance_at = time.time()
        self._maintenance_runs += 1

    # --- scraping ----------------------------------------------------------------------------

    async def refresh(self) -> None:
        """Pull what the scrape-time series read: shared breaker state, the work waiting."""
        await resilience_manager.refresh()
        if self._engine is None or time.monotonic() - self._work_at < WORK_CACHE_SECONDS:
            return
        try:
            async with asyncio.timeout(WORK_TIMEOUT_SECONDS), self._engine.connect() as db:
                self._work = await work_snapshot(db)
        except Exception as exc:
            # No stale figures: the gauges disappear until the database answers again.
            self._work = None
            logger.bind(component="metrics").warning(
                "work gauges unavailable: {}", type(exc).__name__
            )
        self._work_at = time.monotonic()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def summary(self) -> dict[str, Any]:
        """The same families as JSON: name → {type, help, samples: [{name, labels, value}]}."""
        return {
            family.name: {
                "type": family.type,
                "help": family.documentation,
                "samples": [
                    {"name": sample.name, "labels": sample.labels, "value": sample.value}
                    for sample in family.samples
                ],
            }
            for family in self.registry.collect()
        }

    def collect(self) -> Iterator[Metric]:
        """The registry's view: every series of this module, built from the numbers kept."""
        yield from self._request_families()
        yield _counter(
            "botlyne_webhook_requests",
            "Webhook deliveries by outcome and reason",
            ["outcome", "reason"],
            self._webhooks,
        )
        yield _counter(
            "botlyne_rate_limit_decisions",
            "Rate-limit decisions of the webhook",
            ["limit", "decision"],
            self._rate_limits,
        )
        yield from self._limiter_families()
        yield from _breaker_families()
        yield from self._work_families()
        yield _counter(
            "botlyne_errors",
            "Unexpected errors by component and exception type",
            ["component", "type"],
            errors_total(),
        )
        yield from self._maintenance_families()

    def _request_families(self) -> Iterator[Metric]:
        labels = ["method", "route", "status"]
        counts = CounterMetricFamily("botlyne_http_requests", "HTTP requests served", labels=labels)
        durations = HistogramMetricFamily(
            "botlyne_http_request_duration_seconds",
            "Time to serve an HTTP request, from its arrival to the end of the response",
            labels=labels,
        )
        for (method, route, status), series in list(self._requests.items()):
            values = [method, route or UNMATCHED, str(status)]
            counts.add_metric(values, series.count)
            cumulative = list(accumulate(series.buckets))
            buckets = [
                (_le(bound), n) for bound, n in zip(DURATION_BUCKETS, cumulative, strict=False)
            ]
            buckets.append(("+Inf", series.count))
            durations.add_metric(values, buckets, sum_value=series.seconds)
        yield counts
        yield durations
        in_flight = GaugeMetricFamily(
            "botlyne_http_requests_in_flight",
            "HTTP requests being served",
            labels=["method", "route"],
        )
        serving: Counter[tuple[str, str]] = Counter(
            (
                scope["method"] if scope["method"] in METHODS else "OTHER",
                scope.get("path_template") or UNMATCHED,
            )
            for scope in list(self.in_flight.values())
        )
        for method_route, count in serving.items():
            in_flight.add_metric(list(method_route), count)
        yield in_flight

    def _limiter_families(self) -> Iterator[Metric]:
        if self._limiter is None:
            return
        mode = GaugeMetricFamily(
            "botlyne_rate_limiter_mode",
            "Where rate limits are kept: redis, memory (Redis down) or memory-unconfigured",
            labels=["mode"],
        )
        for name in RATE_LIMITER_MODES:
            mode.add_metric([name], 1 if self._limiter.mode == name else 0)
        yield mode
        yield CounterMetricFamily(
            "botlyne_rate_limiter_fallback_decisions",
            "Rate-limit decisions made in memory although Redis is configured",
            value=self._limiter.fallback_decisions,
        )

    def _work_families(self) -> Iterator[Metric]:
        work = self._work
        if work is None:
            return
        for field, (name, documentation) in _WORK_GAUGES.items():
            value = getattr(work, field)
            # No waiting item has no age: 0 keeps the series continuous for alert rules.
            yield GaugeMetricFamily(name, documentation, value=0 if value is None else value)

    def _maintenance_families(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "botlyne_maintenance_runs",
            "Maintenance runs recorded by this process",
            value=self._maintenance_runs,
        )
        if self._maintenance_at is None:
            return
        yield GaugeMetricFamily(
            "botlyne_maintenance_last_run_timestamp_seconds",
            "Unix time of the last maintenance run",
            value=self._maintenance_at,
        )
        results = GaugeMetricFamily(
            "botlyne_maintenance_last_run",
            "Numbers reported by the last maintenance run",
            labels=["item"],
        )
        for item, value in self._maintenance.items():
            results.add_metric([item], value)
        yield results


class _RequestSeries:
    __slots__ = ("buckets", "count", "seconds")

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        # One per bound of DURATION_BUCKETS (observations <= it, not cumulated), then +Inf.
        self.buckets = [0] * (len(DURATION_BUCKETS) + 1)


def _le(bound: float) -> str:
    # Prometheus clients write bucket bounds as floats ("1.0", "0.005").
    return repr(float(bound))


def _counter(
    name: str, documentation: str, labels: list[str], counts: Mapping[tuple[str, str], int]
) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for values, count in list(counts.items()):
        family.add_metric(list(values), count)
    return family


def _breaker_families() -> Iterator[Metric]:
    status = resilience_manager.get_health_status()
    states = GaugeMetricFamily(
        "botlyne_circuit_breaker_state",
        "Circuit breaker state, 1 for the current one",
        labels=["breaker", "state"],
    )
    for name, breaker in status["breakers"].items():
        for state in BREAKER_STATES:
            states.add_metric([name, state], 1 if breaker["state"] == state else 0)
    yield states
    backend = GaugeMetricFamily(
        "botlyne_circuit_breaker_backend",
        "Where breaker state is kept, 1 for the current one",
        labels=["backend"],
    )
    for name in ("redis", "memory"):
        backend.add_metric([name], 1 if status["backend"] == name else 0)
    yield backend
    for name, documentation, totals in (
        ("opened", "Breaker openings caused by this process", resilience_manager.opened_total),
        ("closed", "Breaker closings caused by this process", resilience_manager.closed_total),
        ("retries", "Retries scheduled, by breaker", resilience_manager.retries_total),
    ):
        family = CounterMetricFamily(
            f"botlyne_circuit_breaker_{name}", documentation, labels=["breaker"]
        )
        for breaker_name, count in totals.items():
            family.add_metric([breaker_name], count)
        yield family


def _numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield prefix, float(value)
