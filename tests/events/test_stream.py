"""The event stream over a real connection: who receives which event, and who may connect."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.events.tokens import issue_token
from tests.events.conftest import new_agent, new_org, stream_token
from tests.helpers import signed
from tests.live import SseClient

STREAM = "/api/v1/events/stream"


async def generic_integration(
    http: httpx.AsyncClient, base: str, headers: dict[str, str], **config: Any
) -> dict[str, Any]:
    response = await http.post(
        f"{base}/api/v1/integrations",
        json={"name": "site", "type": "generic", **({"config": config} if config else {})},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def webhook(
    http: httpx.AsyncClient, base: str, integration: dict[str, Any], sender: str, words: str
) -> httpx.Response:
    """A customer's message, signed as the integration's sender signs it."""
    body, headers = signed(
        integration["secret"], {"message": {"body": words}, "sender": {"id": sender}}
    )
    headers.pop("X-Test-Peer")
    return await http.post(
        f"{base}/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )


async def customer_says(
    http: httpx.AsyncClient, base: str, integration: dict[str, Any], sender: str, words: str
) -> None:
    response = await webhook(http, base, integration, sender, words)
    assert response.status_code == 202, response.text


async def conversation_of(
    http: httpx.AsyncClient, base: str, headers: dict[str, str], sender: str
) -> str:
    listed = (await http.get(f"{base}/api/v1/conversations", headers=headers)).json()
    [found] = [c for c in listed["items"] if c["contact"]["external_id"] == sender]
    return str(found["id"])


async def test_events_reach_their_audience_only(
    live_factory: Any,
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    clean_db: AsyncEngine,
    events_redis_url: str | None,
) -> None:
    base = live_factory(redis_url=events_redis_url).base_url
    admin_b = await new_org(clean_db, "other")
    ana, ana_key = await new_agent(http, base, admin_headers, "Ana Lima")
    bruno, bruno_key = await new_agent(http, base, admin_headers, "Bruno Reis", status="busy")
    other, other_key = await new_agent(http, base, admin_b, "Carla Dias")
    integration = await generic_integration(http, base, admin_headers)

    ana_token = await stream_token(http, base, ana_key)
    async with (
        SseClient(base + STREAM, params={"token": ana_token}) as ana_stream,
        SseClient(base + STREAM, headers=bruno_key) as bruno_stream,
        SseClient(base + STREAM, headers=admin_headers) as admin_stream,
        SseClient(base + STREAM, headers=other_key) as other_stream,
        SseClient(base + STREAM, headers=admin_b) as admin_b_stream,
    ):
        # A new conversation the bot holds: only the admins hear of its message.
        await customer_says(http, base, integration, "maria", "Hello there")
        conversation_id = await conversation_of(http, base, admin_headers, "maria")
        first = await admin_stream.wait_for(lambda e: e["type"] == "message.received")
        assert first["conversation_id"] == conversation_id
        assert first["agent_id"] is None

        # Queued by an admin and taken by the only online agent at once.
        queued = await http.post(
            f"{base}/api/v1/agents/queue",
            json={"conversation_id": conversation_id},
            headers=admin_headers,
        )
        assert queued.status_code == 201, queued.text
        offered = await ana_stream.wait_for(lambda e: e["type"] == "assignment.offered")
        assert offered["conversation_id"] == conversation_id
        assert offered["agent_id"] == ana["id"]
        await admin_stream.wait_for(lambda e: e["type"] == "assignment.offered")
        changed = await bruno_stream.wait_for(lambda e: e["type"] == "queue.changed")
        assert {"depth", "oldest_wait_seconds"} <= set(changed)

        # The customer writes again: now Ana (and the admins) hear of it.
        await customer_says(http, base, integration, "maria", "Are you there?")
        second = await ana_stream.wait_for(lambda e: e["type"] == "message.received")
        assert second["conversation_id"] == conversation_id
        assert second["agent_id"] == ana["id"]
        await admin_stream.wait_for(
            lambda e: e["type"] == "message.received" and e["agent_id"] == ana["id"]
        )

        # The other organization's status change stays in that organization.
        moved = await http.put(
            f"{base}/api/v1/agents/{other['id']}/status", json={"status": "away"}, headers=admin_b
        )
        assert moved.status_code == 200
        status = await other_stream.wait_for(lambda e: e["type"] == "agent.status")
        assert status == {**status, "agent_id": other["id"], "status": "away"}
        await admin_b_stream.wait_for(lambda e: e["type"] == "agent.status")
        await asyncio.sleep(0.5)  # anything misrouted would have arrived by now

    org_a = ana_stream.events[0]["org_id"]
    org_b = other_stream.events[0]["org_id"]
    assert org_a != org_b
    for stream in (ana_stream, bruno_stream, admin_stream):
        assert {e["org_id"] for e in stream.events} == {org_a}
    for stream in (other_stream, admin_b_stream):
        assert {e["org_id"] for e in stream.events} == {org_b}
        assert not [e for e in stream.events if e.get("conversation_id") == conversation_id]
    # Ana: her assignment and her message, never the bot's conversation before it was hers.
    assert [e["agent_id"] for e in ana_stream.of_type("message.received")] == [ana["id"]]
    # Bruno: the organization's queue and statuses, nothing of Ana's conversations.
    assert bruno_stream.of_type("queue.changed")
    assert not bruno_stream.of_type("assignment.offered")
    assert not bruno_stream.of_type("message.received")
    # The admin: everything of its organization, each event once.
    assert len(admin_stream.of_type("message.received")) == 2
    ids = [e["id"] for e in admin_stream.events if "id" in e]
    assert len(ids) == len(set(ids))
    assert other_stream.of_type("agent.status")[0]["agent_id"] == other["id"]
    assert bruno["id"] not in {e.get("agent_id") for e in other_stream.events}


async def test_a_failed_delivery_reaches_the_agent_holding_the_conversation(
    live_factory: Any,
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
) -> None:
    base = live_factory(run_workers=True, delivery_retry_base_seconds=0.05).base_url
    agent, agent_key = await new_agent(http, base, admin_headers, "Dora Melo")
    # The callback answers 404: the channel refuses, so the delivery fails at once.
    integration = await generic_integration(
        http, base, admin_headers, callback_url=f"{base}/nowhere"
    )
    async with SseClient(base + STREAM, headers=agent_key) as stream:
        await customer_says(http, base, integration, "joao", "I want to talk to a human")
        failed = await stream.wait_for(lambda e: e["type"] == "delivery.failed", within=15)
    assert failed["agent_id"] == agent["id"]
    assert failed["role"] == "system"  # the "connecting you" notice
    assert failed["conversation_id"] == await conversation_of(http, base, admin_headers, "joao")
    assert "404" in failed["error"]
    assert stream.of_type("assignment.offered")[0]["agent_id"] == agent["id"]


async def test_who_may_open_a_stream(
    live_factory: Any, http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    base = live_factory().base_url
    agent, agent_key = await new_agent(http, base, admin_headers, "Eva Rocha")
    key = agent_key["Authorization"].removeprefix("Bearer ")

    async def status(**kwargs: Any) -> int:
        async with http.stream("GET", base + STREAM, **kwargs) as response:
            return response.status_code

    assert await status() == 401
    assert await status(params={"token": "not-a-token"}) == 401
    # The API key itself is never taken from the URL.
    assert await status(params={"api_key": key}) == 401
    assert await status(params={"token": key}) == 401
    keys = (await http.get(f"{base}/api/v1/api-keys", headers=admin_headers)).json()["items"]
    [row] = [k for k in keys if k["agent_id"] == agent["id"]]
    forged, _ = issue_token(uuid.UUID(row["id"]), "0" * 64)
    assert await status(params={"token": forged}) == 401

    token = await stream_token(http, base, agent_key)
    assert "." in token and key not in token
    async with SseClient(base + STREAM, params={"token": token}) as stream:
        opened = stream.events[0]
        assert opened == {**opened, "role": "agent", "agent_id": agent["id"]}

    revoked = await http.delete(f"{base}/api/v1/api-keys/{row['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert await status(params={"token": token}) == 401
    assert await status(headers=agent_key) == 401


async def test_an_idle_stream_sends_heartbeats(
    live_factory: Any, http: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    base = live_factory(events_heartbeat_seconds=0.3).base_url
    async with SseClient(base + STREAM, headers=admin_headers) as stream:
        await asyncio.sleep(1.0)
    assert stream.comments.count("keepalive") >= 2
