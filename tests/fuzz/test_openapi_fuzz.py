"""Schemathesis against Botlyne's own OpenAPI document: every documented operation, generated
requests (valid and invalid ones), authenticated, against a real server (uvicorn, PostgreSQL,
Redis, the Gemini stand-in). Every response must be documented: no 5xx, a documented status code
and content type, a body that matches the documented schema.

`BOTLYNE_FUZZ_EXAMPLES` sets the examples per operation (default 8, bounded for CI);
`BOTLYNE_FUZZ_SEED` the seed (default fixed, so a CI failure replays). Which checks run, and why
three are off, is in schemathesis.toml. docs/reliability.md has the long-run command.
"""

from __future__ import annotations

import asyncio
import copy
import os
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from tests.conftest import ADMIN_KEY, _truncate_all, make_settings
from tests.helpers import signed
from tests.live import LiveServer
from tests.security.world import AGENT_ALLOWED, PATH_IDS, WEBHOOK, World, build_world
from tests.stubs.gemini import GeminiStub

EXAMPLES = int(os.environ.get("BOTLYNE_FUZZ_EXAMPLES", "8"))
SEED = int(os.environ.get("BOTLYNE_FUZZ_SEED", "20261129"))
ROOT = Path(__file__).resolve().parents[2]
OBSERVABILITY_TOKEN = "fuzz-observability-token-6f1c0a9e2b"
ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}


def served_document() -> dict[str, Any]:
    """The OpenAPI document the application serves (built without any I/O)."""
    app = create_app(Settings(database_url="postgresql://unused@127.0.0.1/unused"))
    return dict(msgspec.json.decode(msgspec.json.encode(app.openapi_schema.to_schema())))


DOCUMENT = served_document()
# The checks and their reasons live in schemathesis.toml, which `st run` reads too.
CONFIG = schemathesis.Config.from_path(ROOT / "schemathesis.toml")
CONFIG.update(seed=SEED, max_failures=None)
# A copy: schemathesis annotates the document it is given.
schema = schemathesis.openapi.from_dict(copy.deepcopy(DOCUMENT), config=CONFIG)


HEALTH = list(HealthCheck)


class Target:
    """The server, a populated organization, and an integration kept for signed deliveries."""

    def __init__(self, base_url: str, world: World, webhook: dict[str, Any]) -> None:
        self.base_url = base_url
        self.world = world
        self.webhook_id = str(webhook["id"])
        self.webhook_secret = str(webhook["secret"])


@pytest.fixture(scope="module")
def gemini_stub() -> Iterator[GeminiStub]:
    with GeminiStub() as stub:
        yield stub


@pytest.fixture(scope="module")
async def target(
    database_url: str, redis_url: str, engine: AsyncEngine, gemini_stub: GeminiStub
) -> AsyncIterator[Target]:
    app = create_app(
        make_settings(
            database_url,
            redis_url=redis_url,
            observability_token=OBSERVABILITY_TOKEN,
            google_api_key=gemini_stub.api_key,
            google_api_base_url=gemini_stub.base_url,
            log_level="WARNING",
        )
    )
    server = await asyncio.to_thread(LiveServer(app).start)
    try:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            world = await build_world(http, "fuzzorg", ADMIN)
            # Out of the generated requests' reach (they may rotate or delete what they find).
            webhook = await http.post(
                "/api/v1/integrations",
                json={
                    "name": "signed deliveries",
                    "type": "generic",
                    "rate_limit_per_minute": 10000,
                },
                headers=ADMIN,
            )
            assert webhook.status_code == 201, webhook.text
        yield Target(server.base_url, world, webhook.json())
    finally:
        await asyncio.to_thread(server.stop)
        await _truncate_all(engine)


def credentials(case: schemathesis.Case, world: World) -> dict[str, str]:
    """The observability token or an API key, as the operation documents; where agent keys are
    allowed, half the examples use the agent's key (its own code paths: acting for itself)."""
    security = case.operation.definition.raw.get("security") or []
    schemes = {name for requirement in security for name in requirement}
    if "ObservabilityToken" in schemes:
        return {"Authorization": f"Bearer {OBSERVABILITY_TOKEN}"}
    if (case.method.upper(), case.path) in AGENT_ALLOWED and coin((case.query, case.body)):
        return world.agent
    return ADMIN if schemes else {}


def coin(value: Any) -> bool:
    """A fair, reproducible coin flip decided by a generated value."""
    return zlib.crc32(repr(value).encode()) % 2 == 0


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=HEALTH)
def test_every_operation_answers_as_documented(case: schemathesis.Case, target: Target) -> None:
    # Half the time a path names a real object, so the handlers past the lookup run too.
    for name, value in list((case.path_parameters or {}).items()):
        if name in PATH_IDS and coin(value):
            case.path_parameters[name] = getattr(target.world, PATH_IDS[name])
    headers = credentials(case, target.world)
    response = case.call_and_validate(base_url=target.base_url, headers=headers)
    if (case.method.upper(), case.path) == WEBHOOK:
        # Generated deliveries carry no signature: refused, whatever they hold.
        assert 400 <= response.status_code < 500, response.text


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {
        "message": st.fixed_dictionaries({"body": st.text()}),
        "sender": st.fixed_dictionaries({"id": st.text()}),
    },
    optional={"type": st.text(), "timestamp": JSON, "metadata": JSON},
)


@seed(SEED)
@given(payload=MESSAGE.map(msgspec.json.encode) | JSON.map(msgspec.json.encode) | st.binary())
@settings(max_examples=EXAMPLES * 10, deadline=None, database=None, suppress_health_check=HEALTH)
def test_signed_webhook_deliveries_answer_as_documented(target: Target, payload: bytes) -> None:
    """The webhook documents no body schema (it is signed byte for byte): correctly signed
    deliveries of any bytes, message-shaped or not, get a documented answer, never a 5xx."""
    body, headers = signed(target.webhook_secret, payload)
    response = httpx.post(
        f"{target.base_url}/api/v1/integrations/webhook/{target.webhook_id}",
        content=body,
        headers=headers,
        timeout=30,
    )
    schema[WEBHOOK[1]][WEBHOOK[0]].validate_response(response)
    assert response.status_code < 500, response.text


def test_the_fuzzed_document_is_the_served_one(target: Target) -> None:
    response = httpx.get(f"{target.base_url}/schema/openapi.json", timeout=30)
    assert response.status_code == 200
    assert response.json() == DOCUMENT
    assert len(list(schema.get_all_operations())) == sum(
        len(item) for item in DOCUMENT["paths"].values()
    )
