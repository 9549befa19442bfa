"""Probes, the detailed health report and the metrics.

Liveness does no I/O; readiness asks the database. `/health/detailed`, `/metrics` and
`/metrics/summary` require `Authorization: Bearer <OBSERVABILITY_TOKEN>` when that is set; the
probes never do, so Kubernetes needs no secret.
"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

from litestar import Controller, Response, get
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.exceptions import NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from app.core.migrations import head_revision
from app.core.openapi import ErrorBody, error_responses
from app.domain.health.metrics import Metrics
from app.domain.health.monitor import HealthMonitor, HealthReport
from app.domain.health.repository import schema_revision

READY_TIMEOUT_SECONDS = 2.0
OK = {"status": "ok"}
# Optional (the empty requirement): the token guards these only when OBSERVABILITY_TOKEN is set.
OBSERVABILITY_SECURITY: list[dict[str, list[str]]] = [{"ObservabilityToken": []}, {}]
TOKEN_REFUSED = {
    401: ResponseSpec(
        data_container=ErrorBody,
        description="OBSERVABILITY_TOKEN is set and the request did not carry it",
        generate_examples=False,
    )
}


def require_observability_token(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    token: str | None = connection.app.state.settings.observability_token
    if token is None:
        return
    scheme, _sep, presented = connection.headers.get("authorization", "").partition(" ")
    # Constant time, so the answer's timing says nothing about how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.encode()
    ):
        raise NotAuthorizedException(
            "This endpoint needs the observability token", headers={"WWW-Authenticate": "Bearer"}
        )


class HealthController(Controller):
    path = "/health"
    tags = ["health"]
    include_in_schema = True

    @get("/", summary="The process serves (no dependency I/O)", cache_control=None)
    async def health(self) -> dict[str, str]:
        return OK

    @get("/live", summary="Liveness probe (no dependency I/O)")
    async def live(self) -> dict[str, str]:
        return OK

    @get(
        "/ready",
        summary="Readiness probe: the database answers and its schema is at the Alembic head",
        responses=error_responses(503),
    )
    async def ready(self, state: State) -> Response[dict[str, str]]:
        try:
            revision = await asyncio.wait_for(
                schema_revision(state.engine), timeout=READY_TIMEOUT_SECONDS
            )
        except Exception as exc:
            return Response(
                {"status": "unavailable", "detail": f"database: {type(exc).__name__}"},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        if revision != head_revision():
            return Response(
                {"status": "unavailable", "detail": "database schema is not at the head revision"},
                status_code=HTTP_503_SERVICE_UNAVAILABLE,
            )
        return Response(OK)

    @get(
        "/detailed",
        summary="Every dependency checked: healthy, degraded or unhealthy (cached a few seconds)",
        description=(
            "200 when the overall status is `healthy` or `degraded`, 503 when `unhealthy`; the "
            "body is the report either way."
        ),
        guards=[require_observability_token],
        security=OBSERVABILITY_SECURITY,
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=HealthReport, description="The report, overall `unhealthy`"
            ),
            **TOKEN_REFUSED,
        },
    )
    async def detailed(self, state: State) -> Response[HealthReport]:
        monitor: HealthMonitor = state.health_monitor
        report = await monitor.report()
        unhealthy = report.overall_status == "unhealthy"
        return Response(
            report, status_code=HTTP_503_SERVICE_UNAVAILABLE if unhealthy else HTTP_200_OK
        )


class MetricsController(Controller):
    path = "/metrics"
    tags = ["health"]
    guards = [require_observability_token]
    security = OBSERVABILITY_SECURITY

    @get(
        "/",
        summary="Prometheus metrics (text exposition format 0.0.4)",
        media_type=CONTENT_TYPE_PLAIN_0_0_4,
        responses=TOKEN_REFUSED,
    )
    async def metrics(self, state: State) -> bytes:
        metrics: Metrics = state.metrics
        await metrics.refresh()
        return metrics.exposition()

    @get(
        "/summary",
        summary="The same metrics as JSON: family name → type, help and samples",
        responses=TOKEN_REFUSED,
    )
    async def summary(self, state: State) -> dict[str, Any]:
        metrics: Metrics = state.metrics
        await metrics.refresh()
        return metrics.summary()
