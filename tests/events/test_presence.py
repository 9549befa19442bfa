"""Presence: an agent whose stream drops, or whose heartbeats stop, goes away after the grace
period, and its unanswered conversations go back to the queue."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from tests.events.conftest import new_agent
from tests.events.test_stream import conversation_of, customer_says, generic_integration
from tests.live import SseClient

STREAM = "/api/v1/events/stream"
GRACE = 1.0


async def agent_status(
    http: httpx.AsyncClient, base: str, headers: dict[str, str], agent_id: str
) -> str:
    return str(
        (await http.get(f"{base}/api/v1/agents/{agent_id}", headers=headers)).json()["status"]
    )


async def becomes(check: Any, within: float) -> float:
    """Seconds until `check()` holds; fails after `within`."""
    started = time.monotonic()
    while not await check():
        assert time.monotonic() - started < within, "did not happen in time"
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_a_dropped_stream_turns_the_agent_away_and_requeues(
    live_factory: Any,
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    events_redis_url: str | None,
) -> None:
    base = live_factory(
        run_workers=True, presence_grace_seconds=GRACE, redis_url=events_redis_url
    ).base_url
    agent, agent_key = await new_agent(http, base, admin_headers, "Fabio Nunes")
    # Online through the API only: never seen on a stream, so presence leaves it alone.
    bystander, _ = await new_agent(http, base, admin_headers, "Gil Souza", status="busy")
    integration = await generic_integration(http, base, admin_headers)

    async with SseClient(base + STREAM, headers=admin_headers) as admin_stream:
        stream = await SseClient(base + STREAM, headers=agent_key).__aenter__()
        await customer_says(http, base, integration, "lucia", "I want to talk to a human")
        offered = await stream.wait_for(lambda e: e["type"] == "assignment.offered", within=10)
        conversation_id = await conversation_of(http, base, admin_headers, "lucia")
        assert offered["conversation_id"] == conversation_id

        # An open stream keeps its agent present well past the grace period.
        await asyncio.sleep(GRACE * 3)
        assert await agent_status(http, base, admin_headers, agent["id"]) == "online"

        await stream.close()
        closed = time.monotonic()

        async def away() -> bool:
            return await agent_status(http, base, admin_headers, agent["id"]) == "away"

        await becomes(away, within=GRACE + 6)
        assert time.monotonic() - closed >= GRACE  # not before the grace period
        conversation = (
            await http.get(f"{base}/api/v1/conversations/{conversation_id}", headers=admin_headers)
        ).json()
        assert conversation["status"] == "queued"
        assert conversation["assigned_agent_id"] is None
        queue = (await http.get(f"{base}/api/v1/agents/queue", headers=admin_headers)).json()
        assert [entry["conversation_id"] for entry in queue["items"]] == [conversation_id]
        status = await admin_stream.wait_for(
            lambda e: e["type"] == "agent.status" and e["status"] == "away"
        )
        assert status["agent_id"] == agent["id"]
        removed = await admin_stream.wait_for(lambda e: e["type"] == "assignment.removed")
        assert removed == {
            **removed,
            "conversation_id": conversation_id,
            "reason": "agent_unavailable",
        }
    assert await agent_status(http, base, admin_headers, bystander["id"]) == "busy"


async def test_heartbeats_keep_an_agent_present_until_they_stop(
    live_factory: Any,
    http: httpx.AsyncClient,
    admin_headers: dict[str, str],
    events_redis_url: str | None,
) -> None:
    base = live_factory(
        run_workers=True, presence_grace_seconds=GRACE, redis_url=events_redis_url
    ).base_url
    agent, agent_key = await new_agent(http, base, admin_headers, "Helena Prado")
    for _ in range(12):
        beat = await http.post(f"{base}/api/v1/events/heartbeat", headers=agent_key)
        assert beat.status_code == 200
        assert beat.json() == {"tracked": True, "presence_grace_seconds": GRACE}
        await asyncio.sleep(GRACE / 4)
    assert await agent_status(http, base, admin_headers, agent["id"]) == "online"

    async def away() -> bool:
        return await agent_status(http, base, admin_headers, agent["id"]) == "away"

    await becomes(away, within=GRACE + 6)
    admin_beat = await http.post(f"{base}/api/v1/events/heartbeat", headers=admin_headers)
    assert admin_beat.json()["tracked"] is False
