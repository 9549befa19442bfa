"""The headers a production API sends, on every kind of response: handled, refused, unmatched,
probes, pages, streams. (That `botlyne serve` sends no `Server` header is in tests/test_cli.py.)"""

from __future__ import annotations

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.live import LiveServer

EVERYWHERE = {
    "x-content-type-options": ["nosniff"],
    "x-frame-options": ["DENY"],
    "referrer-policy": ["same-origin"],
}


def assert_secured(response: httpx.Response, cache_control: list[str] | None) -> None:
    for name, values in EVERYWHERE.items():
        assert response.headers.get_list(name) == values, (response.url, name)
    assert response.headers.get_list("cache-control") == (cache_control or []), response.url
    assert "x-request-id" in response.headers


async def test_api_responses_are_never_cached(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    created = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=admin_headers)
    assert created.status_code == 201
    assert_secured(created, ["no-store"])
    for response in (
        await client.get("/api/v1/organization", headers=admin_headers),
        await client.get("/api/v1/organization"),
        await client.get("/api/v1/organization", headers={"X-API-Key": "bl_wrong"}),
        await client.post("/api/v1/knowledge-bases", content=b"{", headers=admin_headers),
        await client.get("/api/v1/no-such-thing", headers=admin_headers),
        await client.delete("/api/v1/organization", headers=admin_headers),
    ):
        assert response.status_code in (200, 400, 401, 404, 405), response.text
        assert_secured(response, ["no-store"])


async def test_probes_pages_and_unmatched_paths_carry_the_same_headers(
    client: AsyncTestClient[Litestar],
) -> None:
    for path in ("/health/live", "/health/ready", "/metrics", "/schema/openapi.json", "/nowhere"):
        assert_secured(await client.get(path), None)
    page = await client.get("/console/sign-in")
    assert page.status_code == 200
    assert_secured(page, ["no-store"])
    policy = page.headers.get_list("content-security-policy")
    assert len(policy) == 1
    assert "frame-ancestors 'none'" in policy[0]


def test_the_event_stream_keeps_its_own_single_cache_control(
    app: Litestar, clean_db: AsyncEngine, admin_headers: dict[str, str]
) -> None:
    with (
        LiveServer(app) as server,
        httpx.stream(
            "GET", f"{server.base_url}/api/v1/events/stream", headers=admin_headers, timeout=10
        ) as response,
    ):
        assert response.status_code == 200
        assert_secured(response, ["no-store"])
