from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from tests.helpers import create_integration, signed

_numbers = itertools.count(1)


@pytest.fixture
def new_conversation(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> Callable[..., Awaitable[str]]:
    """A conversation created the way users create them: a signed webhook message."""
    integration: dict[str, Any] = {}

    async def make(text: str = "Hello, my order is late") -> str:
        if not integration:
            integration.update(await create_integration(peer_client, admin_headers))
        sender = f"user-{next(_numbers)}"
        body, headers = signed(
            integration["secret"], {"message": {"body": text}, "sender": {"id": sender}}
        )
        response = await peer_client.post(
            f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
        )
        assert response.status_code == 202, response.text
        listed = await peer_client.get("/api/v1/conversations", headers=admin_headers)
        for item in listed.json()["items"]:
            if item["contact"]["external_id"] == sender:
                return str(item["id"])
        raise AssertionError("conversation not found")

    return make


@pytest.fixture
def new_agent(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> Callable[..., Awaitable[dict[str, Any]]]:
    async def make(status: str = "online", **fields: Any) -> dict[str, Any]:
        number = next(_numbers)
        body = {"name": f"Agent {number}", "email": f"agent{number}@example.com", **fields}
        created = await peer_client.post("/api/v1/agents", json=body, headers=admin_headers)
        assert created.status_code == 201, created.text
        agent = dict(created.json())
        if status != "offline":
            changed = await peer_client.put(
                f"/api/v1/agents/{agent['id']}/status",
                json={"status": status},
                headers=admin_headers,
            )
            assert changed.status_code == 200, changed.text
            agent = dict(changed.json())
        return agent

    return make
