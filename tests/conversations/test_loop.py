"""The loop end to end through HTTP: signed webhook → bot turn → delivery to the channel."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from tests.conversations.conftest import seed_knowledge
from tests.helpers import PeerOverride, create_integration, signed
from tests.stubs.evolution import EvolutionStub, messages_upsert_payload

Client = AsyncTestClient[Any]
JID = "5511977770000@s.whatsapp.net"


async def evolution_integration(client: Client, headers: dict[str, str]) -> dict[str, Any]:
    kb_id = await seed_knowledge(client, headers)
    return await create_integration(
        client, headers, type="evolution", config={"instance": "main"}, knowledge_base_id=kb_id
    )


async def user_says(
    client: Client, integration: dict[str, Any], words: str, jid: str = JID
) -> None:
    body, headers = signed(integration["secret"], messages_upsert_payload("main", jid, words))
    response = await client.post(
        f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )
    assert response.status_code == 202, response.text


async def eventually(check: Any, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.05)


async def test_inbound_message_gets_exactly_one_reply(
    live_client: Client, admin_headers: dict[str, str], evolution: EvolutionStub
) -> None:
    integration = await evolution_integration(live_client, admin_headers)
    await user_says(live_client, integration, "How many business days until orders ship?")
    [sent] = await evolution.wait_for_async(1, timeout=10)
    assert "2 business days" in sent.text
    assert sent.instance == "main"
    assert sent.number == "5511977770000"
    assert sent.headers["apikey"] == evolution.api_key
    await asyncio.sleep(0.5)
    assert len(evolution.sent) == 1
    conversations = (await live_client.get("/api/v1/conversations", headers=admin_headers)).json()
    conversation = conversations["items"][0]
    messages = (
        await live_client.get(
            f"/api/v1/conversations/{conversation['id']}/messages", headers=admin_headers
        )
    ).json()["items"]
    assert [m["role"] for m in messages] == ["user", "bot"]
    assert messages[1]["content"] == sent.text
    assert messages[1]["delivery_status"] == "sent"
    assert messages[1]["sources"][0]["title"] == "Shipping"
    assert messages[0]["delivery_status"] is None


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("I want to talk to a human, please", "connecting you with a member of our team"),
        ("Quero falar com um atendente", "transferindo você para um atendente"),
        ("Quiero hablar con un agente por favor", "conectando con una persona"),
    ],
)
async def test_asking_for_a_person_queues_and_silences_the_bot(
    live_client: Client,
    admin_headers: dict[str, str],
    evolution: EvolutionStub,
    words: str,
    expected: str,
) -> None:
    integration = await evolution_integration(live_client, admin_headers)
    await user_says(live_client, integration, words)
    [notice] = await evolution.wait_for_async(1, timeout=10)
    assert expected in notice.text
    assert "1" in notice.text  # their place in line
    queue = (await live_client.get("/api/v1/agents/queue", headers=admin_headers)).json()
    assert queue["total"] == 1
    conversation = (await live_client.get("/api/v1/conversations", headers=admin_headers)).json()
    assert conversation["items"][0]["status"] == "queued"
    assert conversation["items"][0]["escalation_reason"] == "user_requested"

    await user_says(live_client, integration, "Hello? Anyone there?")
    await asyncio.sleep(1.0)
    assert len(evolution.sent) == 1  # the bot stays silent while people own it


async def test_delivery_survives_a_failing_channel(
    live_client: Client, admin_headers: dict[str, str], evolution: EvolutionStub
) -> None:
    evolution.fail_next(4, status=503)
    integration = await evolution_integration(live_client, admin_headers)
    await user_says(live_client, integration, "When do orders ship from the warehouse?")
    [sent] = await evolution.wait_for_async(1, timeout=15)
    assert sent.number == "5511977770000"
    await asyncio.sleep(0.5)
    assert len(evolution.sent) == 1


async def test_restart_in_the_middle_loses_nothing(
    loop_settings: Settings,
    admin_headers: dict[str, str],
    evolution: EvolutionStub,
    clean_db: AsyncEngine,
) -> None:
    evolution.mode = "down"
    async with AsyncTestClient(app=PeerOverride(create_app(loop_settings))) as client:  # type: ignore[arg-type]
        integration = await evolution_integration(client, admin_headers)
        for n in range(3):
            await user_says(
                client,
                integration,
                f"orders ship in how many days {n}?",
                jid=f"55119000000{n}@s.whatsapp.net",
            )

        async def replies_written() -> bool:
            async with clean_db.connect() as connection:
                count = await connection.execute(
                    text("SELECT count(*) FROM messages WHERE role = 'bot'")
                )
                return bool(count.scalar() == 3)

        assert await eventually(replies_written)
    assert evolution.sent == []

    evolution.mode = "ok"
    async with AsyncTestClient(app=PeerOverride(create_app(loop_settings))):  # type: ignore[arg-type]
        sent = await evolution.wait_for_async(3, timeout=20)
        await asyncio.sleep(0.5)
    assert len(evolution.sent) == 3
    assert sorted(s.number for s in sent) == [f"55119000000{n}" for n in range(3)]


async def test_an_agent_reply_reaches_the_channel_once(
    live_client: Client, admin_headers: dict[str, str], evolution: EvolutionStub
) -> None:
    integration = await evolution_integration(live_client, admin_headers)
    await user_says(live_client, integration, "I need to speak to a person")
    await evolution.wait_for_async(1, timeout=10)
    agent = (
        await live_client.post(
            "/api/v1/agents",
            json={"name": "Carla", "email": "carla@example.com"},
            headers=admin_headers,
        )
    ).json()
    await live_client.put(
        f"/api/v1/agents/{agent['id']}/status", json={"status": "online"}, headers=admin_headers
    )
    conversation = (await live_client.get("/api/v1/conversations", headers=admin_headers)).json()
    conversation_id = conversation["items"][0]["id"]
    assert conversation["items"][0]["assigned_agent_id"] == agent["id"]
    reply = await live_client.post(
        f"/api/v1/agents/response/{conversation_id}",
        json={"agent_id": agent["id"], "message": "Hi, Carla here. How can I help?"},
        headers=admin_headers,
    )
    assert reply.status_code == 201
    sent = await evolution.wait_for_async(2, timeout=10)
    await asyncio.sleep(0.5)
    assert [s.text for s in evolution.sent].count("Hi, Carla here. How can I help?") == 1
    assert sent[1].number == "5511977770000"


async def test_undeliverable_messages_end_failed_and_visible(
    database_url: str,
    admin_headers: dict[str, str],
    evolution: EvolutionStub,
    loop_settings: Settings,
    clean_db: AsyncEngine,
) -> None:
    import msgspec

    evolution.mode = "503"
    settings = msgspec.structs.replace(loop_settings, delivery_max_age_seconds=1)
    async with AsyncTestClient(app=PeerOverride(create_app(settings))) as client:  # type: ignore[arg-type]
        integration = await evolution_integration(client, admin_headers)
        await user_says(client, integration, "Hello")

        async def failed() -> bool:
            conversations = (
                await client.get("/api/v1/conversations", headers=admin_headers)
            ).json()
            if not conversations["items"]:
                return False
            messages = (
                await client.get(
                    f"/api/v1/conversations/{conversations['items'][0]['id']}/messages",
                    headers=admin_headers,
                )
            ).json()["items"]
            return any(m["delivery_status"] == "failed" for m in messages)

        assert await eventually(failed, within=15)
    async with clean_db.connect() as connection:
        job = (
            await connection.execute(
                text("SELECT status, last_error FROM jobs WHERE kind = 'deliver'")
            )
        ).one()
    assert job.status == "failed"
    assert "gave up" in job.last_error
