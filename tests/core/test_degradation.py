"""The database going away while the app serves: every /api/v1 route answers 503 with
Retry-After (never a 500), liveness stays up, readiness and the health report go down, and all
of it recovers by itself when the database is back."""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.routes import HTTPRoute
from litestar.testing import AsyncTestClient

from app.asgi import API_PREFIX, create_app
from tests.conftest import ADMIN_KEY, make_settings
from tests.helpers import ThreadedTcpProxy, database_target, database_url_via

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
BODY_METHODS = {"POST", "PUT", "PATCH"}


@pytest.fixture
def proxy(database_url: str) -> Iterator[ThreadedTcpProxy]:
    relay = ThreadedTcpProxy(*database_target(database_url))
    relay.start()
    yield relay
    relay.close()


def api_requests(app: Litestar) -> list[tuple[str, str]]:
    """(method, concrete path) for every HTTP operation under /api/v1."""
    requests = []
    for route in app.routes:
        if not isinstance(route, HTTPRoute) or not route.path.startswith(API_PREFIX):
            continue
        # Any value fits a path parameter's type here: ids are UUIDs, the rest are strings.
        path = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), route.path_format)
        for method in sorted(route.methods - {"HEAD", "OPTIONS"}):
            requests.append((method, path))
    return requests


async def answer(client: AsyncTestClient[Litestar], method: str, path: str) -> Any:
    # Well-formed enough to get past parsing (search needs its `q`; others ignore it): a
    # malformed request is a 4xx whatever the database does.
    body: dict[str, Any] = {"json": {}} if method in BODY_METHODS else {}
    params = {"q": "delivery"}
    return await client.request(method, path, headers=ADMIN, params=params, timeout=10, **body)


@pytest.mark.usefixtures("clean_db")
async def test_database_outage_is_503_everywhere_and_recovers(
    database_url: str, proxy: ThreadedTcpProxy
) -> None:
    settings = make_settings(database_url_via(database_url, proxy.port))
    app = create_app(settings)
    requests = api_requests(app)
    assert len(requests) > 30  # the whole API, not a sample

    async with AsyncTestClient(app=app) as client:
        assert (await client.get("/api/v1/conversations", headers=ADMIN)).status_code == 200

        proxy.stop()
        answers = {(m, p): await answer(client, m, p) for m, p in requests}
        statuses = {key: response.status_code for key, response in answers.items()}
        assert 500 not in statuses.values(), statuses
        unavailable = {key for key, status in statuses.items() if status == 503}
        assert unavailable == set(answers), {k: s for k, s in statuses.items() if s != 503}
        for response in answers.values():
            assert response.headers["retry-after"].isdigit()
            assert response.json()["status_code"] == 503
        assert (await client.get("/health/live")).status_code == 200
        assert (await client.get("/health/ready")).status_code == 503
        report = await client.get("/health/detailed")
        assert report.status_code == 503
        assert report.json()["checks"]["database"]["status"] == "unhealthy"

        proxy.start()  # the same port again
        for _ in range(50):
            if (await client.get("/health/ready")).status_code == 200:
                break
            await asyncio.sleep(0.1)
        recovered = await client.get("/api/v1/conversations", headers=ADMIN)
        assert recovered.status_code == 200
