"""Every documented operation against the callers it must refuse, on a live server.

- Another organization's admin key, aimed at a populated organization's real ids: nothing of
  that organization in any response (ids, names, secrets), a 404 for each of its objects, and not
  one of its rows changed, added or removed.
- An agent key on the admin operations: 403, and its organization's rows unchanged.
- No key, a wrong key, another scheme: 401 on every operation the document secures; the signed
  webhook refuses an unsigned delivery; the probes stay open.
- The console's routes (outside the document, read from the router) signed in as another
  organization's agent, with an admin key, a made-up key or no cookie: nothing of the target.

The operations come from the served OpenAPI document, and each must be classified below, so a
new endpoint fails here until someone decides who may call it.
"""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar import Litestar
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from app.core.db import create_sessionmaker
from app.domain.orgs.service import create_organization
from tests.conftest import ADMIN_KEY, make_settings
from tests.live import LiveServer
from tests.security.leaks import register
from tests.security.world import (
    ADMIN_ONLY,
    AGENT_ALLOWED,
    STREAM,
    WEBHOOK,
    Operation,
    World,
    build_world,
    operations,
)

OBSERVABILITY_TOKEN = "matrix-observability-token-51d3a7"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
COOKIE = "botlyne_console"
CONSOLE_OPEN = ("/console/static", "/console/sign-in", "/console/sign-out")
CONSOLE_FORMS = {
    "/console/status": {"status": "away"},
    "/console/conversations/{id}/reply": {"message": "hello"},
    "/console/conversations/{id}/transfer": {"to": "queue"},
}
UNSIGNED = {"message": {"body": "hello"}, "sender": {"id": "someone"}}
QUERY = {("GET", "/api/v1/knowledge-bases/{kb_id}/search"): {"q": "refunds"}}


@pytest.fixture
def settings(database_url: str) -> Settings:
    return make_settings(database_url, observability_token=OBSERVABILITY_TOKEN)


class Live:
    def __init__(self, http: httpx.AsyncClient, document: dict[str, Any]) -> None:
        self.http = http
        self.operations = operations(document)


@pytest.fixture
async def live(app: Litestar, clean_db: AsyncEngine) -> AsyncIterator[Live]:
    server = await asyncio.to_thread(LiveServer(app).start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            document = (await http.get("/schema/openapi.json")).json()
            yield Live(http, document)
    finally:
        await asyncio.to_thread(server.stop)


async def snapshot(engine: AsyncEngine) -> Counter[str]:
    """Every row of every table, as text (audit partitions through their parent)."""
    rows: Counter[str] = Counter()
    async with engine.connect() as connection:
        tables = await connection.exec_driver_sql(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version' AND tablename NOT LIKE 'audit_logs_%'"
        )
        for (table,) in tables.all():
            # Names read from the catalog, not from any input.
            result = await connection.exec_driver_sql(f'SELECT t::text FROM "{table}" t')  # noqa: S608
            rows.update(f"{table}: {row}" for (row,) in result.all())
    return rows


def touching(rows: Counter[str], ids: set[str]) -> Counter[str]:
    return Counter({row: n for row, n in rows.items() if any(i in row for i in ids)})


async def call(
    http: httpx.AsyncClient, operation: Operation, world: World, headers: dict[str, str]
) -> tuple[int, str, str]:
    """(status, response text, request text) of the operation on the world's real objects."""
    path = world.path_for(operation)
    # The webhook's body is a well-formed message: only the missing signature is wrong with it.
    body = UNSIGNED if operation.key == WEBHOOK else world.body_for(operation)
    params = QUERY.get(operation.key)
    if operation.key == STREAM:
        async with http.stream("GET", path, headers=headers) as response:
            text = ""
            if response.status_code == 200:
                async for line in response.aiter_lines():
                    text += line + "\n"
                    if line.startswith("data:"):
                        break
            else:
                text = (await response.aread()).decode()
            return response.status_code, text, path
    response = await http.request(operation.method, path, json=body, params=params, headers=headers)
    return response.status_code, response.text, f"{path} {params} {body}"


def test_every_operation_is_classified(database_url: str) -> None:
    document = create_app(make_settings(database_url)).openapi_schema.to_schema()
    keyed = {op.key for op in operations(document) if op.path.startswith("/api/")}
    assert keyed == ADMIN_ONLY | AGENT_ALLOWED | {WEBHOOK}
    assert not ADMIN_ONLY & AGENT_ALLOWED


async def test_another_organization_reads_nothing_and_changes_nothing(
    live: Live, engine: AsyncEngine
) -> None:
    victim = await build_world(live.http, "victimorg", ADMIN)
    async with create_sessionmaker(engine).begin() as session:
        _, intruder_key = await create_organization(session, "intruder")
    register(intruder_key)
    intruder = {"Authorization": f"Bearer {intruder_key}"}
    ids = {marker for marker in victim.markers if len(marker) == 36}
    before = touching(await snapshot(engine), ids)
    checked = 0
    for operation in live.operations:
        if not operation.path.startswith("/api/") or operation.key == WEBHOOK:
            continue
        status, text, request = await call(live.http, operation, victim, intruder)
        assert status < 500, (str(operation), text)
        if "{" in operation.path:
            assert status == 404, (str(operation), status, text)
        leaked = {m for m in victim.markers if m in text and m not in request}
        assert not leaked, (str(operation), text)
        checked += 1
    assert checked == len(ADMIN_ONLY | AGENT_ALLOWED)
    assert touching(await snapshot(engine), ids) == before


async def test_an_agent_key_is_refused_every_admin_operation(
    live: Live, engine: AsyncEngine
) -> None:
    world = await build_world(live.http, "agentorg", ADMIN)
    before = await snapshot(engine)
    for operation in live.operations:
        if operation.key not in ADMIN_ONLY:
            continue
        status, text, _ = await call(live.http, operation, world, world.agent)
        assert status == 403, (str(operation), status, text)
    assert await snapshot(engine) == before


def console_routes(app: Litestar) -> list[tuple[str, str]]:
    """The console's own routes (cookie-authenticated, outside the document), from the router."""
    found = []
    for route in app.routes:
        if not route.path.startswith("/console") or route.path.startswith(CONSOLE_OPEN):
            continue
        for method in sorted(set(getattr(route, "methods", ())) - {"OPTIONS", "HEAD"}):
            found.append((method, route.path.replace("{conversation_id:uuid}", "{id}")))
    return found


async def test_the_console_gives_nothing_to_another_organization_or_a_stranger(
    live: Live, app: Litestar, engine: AsyncEngine
) -> None:
    """The console's pages and forms, signed in as another organization's agent, as an admin key
    (the console is for agents), with a made-up cookie, and with none: nothing of the target in
    any answer, its conversations not found, none of its rows changed."""
    victim = await build_world(live.http, "victimorg", ADMIN)
    async with create_sessionmaker(engine).begin() as session:
        _, intruder_key = await create_organization(session, "intruder")
    register(intruder_key)
    intruder = await build_world(live.http, "intruder", {"Authorization": f"Bearer {intruder_key}"})
    agent_key = intruder.agent["Authorization"].removeprefix("Bearer ")
    ids = {marker for marker in victim.markers if len(marker) == 36}
    before = touching(await snapshot(engine), ids)
    routes = console_routes(app)
    assert len(routes) == 11
    cookies = [agent_key, ADMIN_KEY, f"bl_{secrets.token_urlsafe(32)}", None]
    for method, template in routes:
        path = template.replace("{id}", victim.conversation_id)
        form = CONSOLE_FORMS.get(template, {})
        for cookie in cookies:
            headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
            response = await live.http.request(method, path, data=form or None, headers=headers)
            assert response.status_code < 500, (method, template, response.text)
            leaked = {m for m in victim.markers if m in response.text}
            assert not leaked, (method, template, leaked)
            if cookie == agent_key and "{id}" in template:
                assert response.status_code == 404, (method, template, response.status_code)
            elif cookie != agent_key:
                assert response.status_code in (303, 401), (method, template, cookie)
    assert touching(await snapshot(engine), ids) == before


async def test_secrets_are_shown_once_even_to_their_owner(live: Live) -> None:
    """Keys and signing secrets appear in the response that created them and nowhere after:
    no read of the organization's own admin returns one (the channel's API key is masked)."""
    world = await build_world(live.http, "owner", ADMIN)
    reads = [op for op in live.operations if op.method == "GET" and op.path.startswith("/api/")]
    for operation in reads:
        status, text, _ = await call(live.http, operation, world, ADMIN)
        assert status == 200, (str(operation), status, text)
        shown = [secret for secret in world.secrets if secret in text]
        assert not shown, str(operation)
    assert len(reads) == 19


async def test_without_a_valid_key_only_the_probes_answer(live: Live) -> None:
    world = await build_world(live.http, "keyless", ADMIN)
    refused: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer bl_{secrets.token_urlsafe(32)}"},
        {"X-API-Key": "bl_short"},
        {"Authorization": f"Basic {ADMIN_KEY}"},
    ]
    for operation in live.operations:
        for headers in refused:
            status, text, _ = await call(live.http, operation, world, headers)
            if operation.security or operation.key == WEBHOOK:
                assert status == 401, (str(operation), headers, status, text)
            else:
                assert status == 200, (str(operation), status, text)
