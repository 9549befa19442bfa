"""CORS_ALLOWED_ORIGINS: browsers on those origins may call the API; by default no CORS at all."""

from __future__ import annotations

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import ConfigError, load_settings
from tests.conftest import make_settings

PREFLIGHT = {
    "Origin": "https://desk.example.com",
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


async def test_listed_origins_may_call_the_api(
    database_url: str, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    app = create_app(
        make_settings(database_url, cors_allowed_origins=("https://desk.example.com",))
    )
    async with AsyncTestClient(app=app) as client:
        preflight = await client.options("/api/v1/organization", headers=PREFLIGHT)
        assert preflight.status_code in (200, 204)
        assert preflight.headers["access-control-allow-origin"] == "https://desk.example.com"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-credentials" not in preflight.headers
        answer = await client.get(
            "/api/v1/organization",
            headers={**admin_headers, "Origin": "https://desk.example.com"},
        )
        assert answer.headers["access-control-allow-origin"] == "https://desk.example.com"
        assert "x-request-id" in answer.headers["access-control-expose-headers"].lower()
        other = await client.get(
            "/api/v1/organization", headers={**admin_headers, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_no_cors_headers_by_default(
    database_url: str, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    async with AsyncTestClient(app=create_app(make_settings(database_url))) as client:
        answer = await client.get(
            "/api/v1/organization",
            headers={**admin_headers, "Origin": "https://desk.example.com"},
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


def test_origins_are_read_as_a_list_and_checked() -> None:
    settings = load_settings(
        {"CORS_ALLOWED_ORIGINS": "https://a.example, http://localhost:5173"}, dotenv=None
    )
    assert settings.cors_allowed_origins == ("https://a.example", "http://localhost:5173")
    assert load_settings({}, dotenv=None).cors_allowed_origins == ()
    with pytest.raises(ConfigError, match="CORS_ALLOWED_ORIGINS"):
        load_settings({"CORS_ALLOWED_ORIGINS": "https://a.example/app"}, dotenv=None)
    with pytest.raises(ConfigError, match="PRESENCE_GRACE_SECONDS"):
        load_settings({"PRESENCE_GRACE_SECONDS": "0"}, dotenv=None)
    assert (
        load_settings({"PRESENCE_GRACE_SECONDS": "2.5"}, dotenv=None).presence_grace_seconds == 2.5
    )
