from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from app.core.resilience import resilience_manager
from tests.conftest import make_settings
from tests.helpers import PeerOverride
from tests.stubs.evolution import EvolutionStub
from tests.stubs.gemini import GeminiStub


@pytest.fixture(scope="session")
def evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub() as stub:
        yield stub


@pytest.fixture(scope="session")
def gemini() -> Iterator[GeminiStub]:
    with GeminiStub() as stub:
        yield stub


@pytest.fixture
async def loop_settings(
    database_url: str, evolution: EvolutionStub, gemini: GeminiStub
) -> AsyncIterator[Settings]:
    evolution.reset()
    gemini.reset()
    await resilience_manager.reset()
    yield make_settings(
        database_url,
        run_workers=True,
        evolution_api_base_url=evolution.base_url,
        evolution_api_global_key=evolution.api_key,
        google_api_key=gemini.api_key,
        google_api_base_url=gemini.base_url,
        delivery_retry_base_seconds=0.05,
        circuit_breaker_failure_threshold=50,
    )
    evolution.reset()
    await resilience_manager.reset()


@pytest.fixture
async def live_client(
    loop_settings: Settings, clean_db: AsyncEngine
) -> AsyncIterator[AsyncTestClient[Any]]:
    """The app with its workers running, pointed at the Evolution and Gemini stand-ins."""
    async with AsyncTestClient(app=PeerOverride(create_app(loop_settings))) as client:  # type: ignore[arg-type]
        yield client


SHIPPING = (
    "## Shipping times\n\nOrders ship within 2 business days from our warehouse in Campinas. "
    "Delivery to capitals takes 3 to 5 business days after shipping.\n\n"
    "## Tracking\n\nEvery order gets a tracking code by e-mail once it ships."
)


async def seed_knowledge(client: AsyncTestClient[Any], headers: dict[str, str]) -> str:
    """A knowledge base with one shipping article; the bot answers from it."""
    kb = await client.post("/api/v1/knowledge-bases", json={"name": "help"}, headers=headers)
    assert kb.status_code == 201, kb.text
    document = await client.post(
        f"/api/v1/knowledge-bases/{kb.json()['id']}/documents",
        json={"title": "Shipping", "content": SHIPPING, "content_type": "text/markdown"},
        headers=headers,
    )
    assert document.status_code == 201, document.text
    return str(kb.json()["id"])
