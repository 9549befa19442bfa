"""Kubernetes probes: liveness without I/O; readiness when the database answers at the head."""

from __future__ import annotations

import asyncio

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.status_codes import HTTP_503_SERVICE_UNAVAILABLE
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.migrations import head_revision
from app.core.openapi import error_responses

READY_TIMEOUT_SECONDS = 2.0
OK = {"status": "ok"}


async def schema_revision(engine: AsyncEngine) -> str | None:
    async with engine.connect() as connection:
        result = await connection.execute(text("SELECT version_num FROM alembic_version"))
        return result.scalar_one_or_none()


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
