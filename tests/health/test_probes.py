from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine


async def test_liveness_and_health_answer_ok(client: AsyncTestClient[Litestar]) -> None:
    for path in ("/health", "/health/live"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert response.headers["x-request-id"]


async def test_ready_when_schema_at_head(client: AsyncTestClient[Litestar]) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_not_ready_when_schema_behind(
    client: AsyncTestClient[Litestar], clean_db: AsyncEngine
) -> None:
    async with clean_db.begin() as connection:
        head = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
        await connection.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    try:
        response = await client.get("/health/ready")
        assert response.status_code == 503
        assert "schema" in response.json()["detail"]
    finally:
        async with clean_db.begin() as connection:
            await connection.execute(
                text("UPDATE alembic_version SET version_num = :v"), {"v": head}
            )


async def test_request_id_is_echoed_when_sane_and_replaced_when_not(
    client: AsyncTestClient[Litestar],
) -> None:
    sane = await client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    assert sane.headers["x-request-id"] == "abc-123"
    hostile = await client.get("/health/live", headers={"X-Request-ID": "a b;" * 100})
    assert hostile.headers["x-request-id"] != "a b;" * 100
    assert len(hostile.headers["x-request-id"]) == 32


async def test_openapi_declares_security_and_errors(client: AsyncTestClient[Litestar]) -> None:
    schema = (await client.get("/schema/openapi.json")).json()
    assert set(schema["components"]["securitySchemes"]) == {
        "BearerAuth",
        "ApiKeyAuth",
        "ObservabilityToken",
    }
    operation = schema["paths"]["/api/v1/api-keys"]["post"]
    assert {"400", "401", "403", "422", "503"} <= set(operation["responses"])
    assert operation["security"] == [{"BearerAuth": []}, {"ApiKeyAuth": []}]
