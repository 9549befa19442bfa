from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.core.db import create_sessionmaker
from app.domain.orgs.service import create_organization
from tests.conftest import make_settings
from tests.live import LiveServer


@pytest.fixture(params=["memory", "redis"])
def events_redis_url(request: pytest.FixtureRequest) -> str | None:
    """Each stream test runs on the in-memory channels and on Redis pub/sub."""
    if request.param == "redis":
        return str(request.getfixturevalue("redis_url"))
    return None


@pytest.fixture
def live_factory(database_url: str, clean_db: AsyncEngine) -> Iterator[Any]:
    """Start the application on a real port with settings overrides; stopped after the test."""
    servers: list[LiveServer] = []

    def start(**overrides: Any) -> LiveServer:
        server = LiveServer(create_app(make_settings(database_url, **overrides))).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


async def new_agent(
    http: httpx.AsyncClient,
    base: str,
    headers: dict[str, str],
    name: str,
    status: str = "online",
    **fields: Any,
) -> tuple[dict[str, Any], dict[str, str]]:
    """An agent in the admin's organization and the headers of its own agent key."""
    email = f"{name.lower().replace(' ', '.')}@example.com"
    created = await http.post(
        f"{base}/api/v1/agents", json={"name": name, "email": email, **fields}, headers=headers
    )
    assert created.status_code == 201, created.text
    agent = created.json()
    key = await http.post(
        f"{base}/api/v1/api-keys",
        json={"name": f"{name} key", "role": "agent", "agent_id": agent["id"]},
        headers=headers,
    )
    assert key.status_code == 201, key.text
    if status != "offline":
        changed = await http.put(
            f"{base}/api/v1/agents/{agent['id']}/status", json={"status": status}, headers=headers
        )
        assert changed.status_code == 200, changed.text
    return agent, {"Authorization": f"Bearer {key.json()['api_key']}"}


async def new_org(engine: AsyncEngine, name: str) -> dict[str, str]:
    """Another organization; the headers of its admin key."""
    async with create_sessionmaker(engine).begin() as session:
        _, key = await create_organization(session, name)
    return {"Authorization": f"Bearer {key}"}


async def stream_token(http: httpx.AsyncClient, base: str, headers: dict[str, str]) -> str:
    response = await http.post(f"{base}/api/v1/events/token", headers=headers)
    assert response.status_code == 201, response.text
    return str(response.json()["token"])
