"""Contract §5 through HTTP: agents, queue, assignment, replies, escalation, transfer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

Client = AsyncTestClient[Any]
NewConversation = Callable[..., Awaitable[str]]
NewAgent = Callable[..., Awaitable[dict[str, Any]]]


async def test_agent_directory_and_validation(
    peer_client: Client, admin_headers: dict[str, str], new_agent: NewAgent
) -> None:
    agent = await new_agent(
        status="offline",
        skills=["billing", "pt"],
        max_concurrent_conversations=3,
        shifts=[{"weekday": 0, "start": "09:00", "end": "17:00"}],
        timezone="America/Sao_Paulo",
    )
    assert agent["status"] == "offline"
    assert agent["skills"] == ["billing", "pt"]
    assert agent["active_conversations"] == 0
    url = f"/api/v1/agents/{agent['id']}"
    patched = await peer_client.patch(url, json={"skills": ["vip"]}, headers=admin_headers)
    assert patched.json()["skills"] == ["vip"]
    assert (await peer_client.get("/api/v1/agents", headers=admin_headers)).json()["total"] == 1
    duplicate = await peer_client.post(
        "/api/v1/agents", json={"name": "x", "email": agent["email"]}, headers=admin_headers
    )
    assert duplicate.status_code == 409
    for bad in (
        {"name": "x", "email": "not-an-email"},
        {"name": "x", "email": "a@b.c", "timezone": "Mars/Olympus"},
        {
            "name": "x",
            "email": "a@b.c",
            "shifts": [{"weekday": 7, "start": "09:00", "end": "10:00"}],
        },
        {
            "name": "x",
            "email": "a@b.c",
            "shifts": [{"weekday": 1, "start": "22:00", "end": "06:00"}],
        },
        {"name": "x", "email": "a@b.c", "max_concurrent_conversations": 0},
    ):
        response = await peer_client.post("/api/v1/agents", json=bad, headers=admin_headers)
        assert response.status_code == 422, bad
    status = await peer_client.put(
        f"{url}/status", json={"status": "napping"}, headers=admin_headers
    )
    assert status.status_code == 422


async def test_queue_orders_by_priority_then_age(
    peer_client: Client, admin_headers: dict[str, str], new_conversation: NewConversation
) -> None:
    first, second, third = [await new_conversation() for _ in range(3)]
    for conversation_id, priority in ((first, "normal"), (second, "urgent"), (third, "normal")):
        response = await peer_client.post(
            "/api/v1/agents/queue",
            json={"conversation_id": conversation_id, "priority": priority, "reason": "test"},
            headers=admin_headers,
        )
        assert response.status_code == 201, response.text
        assert response.json()["conversation_id"] == conversation_id
    queue = (await peer_client.get("/api/v1/agents/queue", headers=admin_headers)).json()
    assert [e["conversation_id"] for e in queue["items"]] == [second, first, third]
    assert [e["position"] for e in queue["items"]] == [1, 2, 3]
    again = await peer_client.post(
        "/api/v1/agents/queue", json={"conversation_id": first}, headers=admin_headers
    )
    assert again.status_code == 201
    assert (await peer_client.get("/api/v1/agents/queue", headers=admin_headers)).json()[
        "total"
    ] == 3


async def test_manual_and_automatic_assignment(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    conversation_id = await new_conversation()
    offline = await new_agent(status="offline")
    url = f"/api/v1/agents/assign/{conversation_id}"
    refused = await peer_client.post(url, json={"agent_id": offline["id"]}, headers=admin_headers)
    assert refused.status_code == 409

    queued = await peer_client.post(url, headers=admin_headers)
    assert queued.status_code == 202
    assert queued.json() == {"queued": True, "position": 1}

    # An agent coming online takes the waiting conversation by itself.
    agent = await new_agent(status="online")
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()
    assert conversation["status"] == "assigned"
    assert conversation["assigned_agent_id"] == agent["id"]
    assert (await peer_client.get("/api/v1/agents/queue", headers=admin_headers)).json()[
        "total"
    ] == 0

    other = await new_conversation()
    assigned = await peer_client.post(
        f"/api/v1/agents/assign/{other}", json={"agent_id": agent["id"]}, headers=admin_headers
    )
    assert assigned.status_code == 200
    body = assigned.json()
    assert body["agent_id"] == agent["id"]
    assert body["assignment_type"] == "manual"
    assert body["ended_at"] is None

    await peer_client.post(f"/api/v1/conversations/{other}/resolve", headers=admin_headers)
    resolved = await peer_client.post(
        f"/api/v1/agents/assign/{other}", json={"agent_id": agent["id"]}, headers=admin_headers
    )
    assert resolved.status_code == 409


async def test_routing_by_skills_capacity_and_load(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    busy = await new_agent(skills=["billing"], max_concurrent_conversations=1)
    idle = await new_agent(skills=["billing", "pt"], max_concurrent_conversations=2)
    picks = []
    for _ in range(3):
        conversation_id = await new_conversation()
        response = await peer_client.post(
            f"/api/v1/agents/assign/{conversation_id}", headers=admin_headers
        )
        picks.append(response.json().get("agent_id") if response.status_code == 200 else None)
    # Least loaded first, never over capacity: one each, then the one with a slot left.
    assert sorted(picks) == sorted([busy["id"], idle["id"], idle["id"]])
    agents = {
        a["id"]: a
        for a in (await peer_client.get("/api/v1/agents", headers=admin_headers)).json()["items"]
    }
    assert agents[busy["id"]]["active_conversations"] == 1
    assert agents[idle["id"]]["active_conversations"] == 2

    # Skills: only an agent with every required skill takes it.
    skilled = await new_conversation()
    queued = await peer_client.post(
        "/api/v1/agents/queue",
        json={"conversation_id": skilled, "required_skills": ["es"]},
        headers=admin_headers,
    )
    assert queued.status_code == 201
    speaker = await new_agent(skills=["es"])
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{skilled}", headers=admin_headers)
    ).json()
    assert conversation["assigned_agent_id"] == speaker["id"]


async def test_off_shift_agents_are_not_assigned(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    from datetime import UTC, datetime, timedelta

    tomorrow = (datetime.now(UTC) + timedelta(days=1)).weekday()
    await new_agent(shifts=[{"weekday": tomorrow, "start": "00:00", "end": "24:00"}])
    conversation_id = await new_conversation()
    response = await peer_client.post(
        f"/api/v1/agents/assign/{conversation_id}", headers=admin_headers
    )
    assert response.status_code == 202
    today = datetime.now(UTC).weekday()
    on_shift = await new_agent(shifts=[{"weekday": today, "start": "00:00", "end": "24:00"}])
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()
    assert conversation["assigned_agent_id"] == on_shift["id"]


async def test_reply_escalate_transfer(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
    clean_db: AsyncEngine,
) -> None:
    first = await new_agent(skills=["general"])
    conversation_id = await new_conversation()
    await peer_client.post(
        f"/api/v1/agents/assign/{conversation_id}",
        json={"agent_id": first["id"]},
        headers=admin_headers,
    )
    second = await new_agent(skills=["vip"])
    wrong = await peer_client.post(
        f"/api/v1/agents/response/{conversation_id}",
        json={"agent_id": second["id"], "message": "hi"},
        headers=admin_headers,
    )
    assert wrong.status_code == 409
    reply = await peer_client.post(
        f"/api/v1/agents/response/{conversation_id}",
        json={"agent_id": first["id"], "message": "Hello, I'm here to help."},
        headers=admin_headers,
    )
    assert reply.status_code == 201, reply.text
    messages = (
        await peer_client.get(
            f"/api/v1/conversations/{conversation_id}/messages", headers=admin_headers
        )
    ).json()["items"]
    assert [m["role"] for m in messages] == ["user", "agent"]
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()
    assert conversation["message_count"] == 2
    async with clean_db.connect() as connection:
        first_response = (
            await connection.execute(text("SELECT first_response_at FROM agent_assignments"))
        ).scalar()
    assert first_response is not None

    transferred = await peer_client.post(
        f"/api/v1/agents/transfer/{conversation_id}",
        json={"required_skills": ["vip"], "note": "VIP customer"},
        headers=admin_headers,
    )
    assert transferred.status_code == 200, transferred.text
    assert transferred.json()["agent_id"] == second["id"]
    assert transferred.json()["assignment_type"] == "auto"

    escalated = await peer_client.post(
        f"/api/v1/agents/escalate/{conversation_id}",
        json={"reason": "angry customer"},
        headers=admin_headers,
    )
    assert escalated.status_code == 200
    assert escalated.json()["priority"] == "high"
    conversation = (
        await peer_client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()
    # Both agents already held it, so it waits for someone else.
    assert conversation["status"] == "queued"
    assert conversation["escalation_reason"] == "angry customer"


async def test_agent_keys_act_only_as_their_agent(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_agent: NewAgent,
) -> None:
    mine = await new_agent(status="offline")
    other = await new_agent(status="offline")
    created = await peer_client.post(
        "/api/v1/api-keys",
        json={"name": "agent", "role": "agent", "agent_id": mine["id"]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    agent_headers = {"Authorization": f"Bearer {created.json()['api_key']}"}
    own = await peer_client.put(
        f"/api/v1/agents/{mine['id']}/status", json={"status": "online"}, headers=agent_headers
    )
    assert own.status_code == 200
    foreign = await peer_client.put(
        f"/api/v1/agents/{other['id']}/status", json={"status": "online"}, headers=agent_headers
    )
    assert foreign.status_code == 403
    create = await peer_client.post(
        "/api/v1/agents", json={"name": "x", "email": "x@y.z"}, headers=agent_headers
    )
    assert create.status_code == 403
    keys = await peer_client.get("/api/v1/api-keys", headers=agent_headers)
    assert keys.status_code == 403


async def test_metrics_over_a_window(
    peer_client: Client,
    admin_headers: dict[str, str],
    new_conversation: NewConversation,
    new_agent: NewAgent,
) -> None:
    agent = await new_agent()
    for _ in range(2):
        conversation_id = await new_conversation()
        await peer_client.post(f"/api/v1/agents/assign/{conversation_id}", headers=admin_headers)
        await peer_client.post(
            f"/api/v1/agents/response/{conversation_id}",
            json={"agent_id": agent["id"], "message": "on it"},
            headers=admin_headers,
        )
        await peer_client.post(
            f"/api/v1/conversations/{conversation_id}/resolve", headers=admin_headers
        )
    metrics = (
        await peer_client.get(f"/api/v1/agents/{agent['id']}/metrics", headers=admin_headers)
    ).json()
    assert metrics["assigned"] == 2
    assert metrics["resolved"] == 2
    assert metrics["active"] == 0
    assert metrics["first_response_seconds_median"] >= 0
    assert metrics["resolution_seconds_p90"] >= metrics["resolution_seconds_median"]
    report = (await peer_client.get("/api/v1/agents/performance", headers=admin_headers)).json()
    assert report["team"]["assigned"] == 2
    assert [item["agent_id"] for item in report["items"]] == [agent["id"]]
    empty = (
        await peer_client.get(
            f"/api/v1/agents/{agent['id']}/metrics",
            params={"since": "2000-01-01T00:00:00Z", "until": "2000-01-02T00:00:00Z"},
            headers=admin_headers,
        )
    ).json()
    assert empty["assigned"] == 0
    assert empty["first_response_seconds_median"] is None


async def test_agent_keys_need_an_agent_of_the_same_organization(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.core.db import create_sessionmaker
    from app.domain.orgs.service import create_organization

    async with create_sessionmaker(clean_db).begin() as session:
        _, other_key = await create_organization(session, "other")
    other = {"Authorization": f"Bearer {other_key}"}
    foreign_agent = (
        await peer_client.post(
            "/api/v1/agents", json={"name": "Zed", "email": "zed@example.com"}, headers=other
        )
    ).json()
    response = await peer_client.post(
        "/api/v1/api-keys",
        json={"name": "x", "role": "agent", "agent_id": foreign_agent["id"]},
        headers=admin_headers,
    )
    assert response.status_code == 422
    assert (
        await peer_client.get(f"/api/v1/agents/{foreign_agent['id']}", headers=admin_headers)
    ).status_code == 404
