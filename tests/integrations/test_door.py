"""`WebhookDoor` takes the webhook's canonical spelling in front of the router, nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.datastructures import State

from app.domain.integrations.webhook import WEBHOOK_PREFIX, WEBHOOK_ROUTE, Reply, WebhookDoor


class Gate:
    """Stands in for the gate: the door's only question is which requests reach it."""

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def handle(self, scope: Any, receive: Any, integration_id: str) -> Reply:
        self.ids.append(integration_id)
        return Reply(202, b"{}")


async def _through(door: WebhookDoor, method: str, path: str) -> tuple[list[Any], dict[str, Any]]:
    """What the door sent, and the scope as the door left it."""
    sent: list[Any] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    scope: dict[str, Any] = {"type": "http", "method": method, "path": path, "headers": []}
    await door(scope, receive, send)  # type: ignore[arg-type]
    return sent, scope


@pytest.mark.parametrize(
    ("method", "path", "at_door"),
    [
        ("POST", WEBHOOK_PREFIX + "abc", True),
        ("POST", WEBHOOK_PREFIX + "abc/", False),
        ("POST", WEBHOOK_PREFIX, False),
        ("GET", WEBHOOK_PREFIX + "abc", False),
        ("POST", "/api/v1/integrations", False),
    ],
)
async def test_only_the_canonical_webhook_path_is_answered_at_the_door(
    method: str, path: str, at_door: bool
) -> None:
    gate = Gate()
    routed: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        routed.append(scope["path"])

    door = WebhookDoor(app, State({"webhook_gate": gate}))  # type: ignore[arg-type]
    sent, _ = await _through(door, method, path)
    if at_door:
        assert gate.ids == ["abc"] and routed == []
        assert sent[0]["status"] == 202
    else:
        assert gate.ids == [] and routed == [path]


async def test_the_door_labels_its_requests_with_the_route_template() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise AssertionError("routed")

    door = WebhookDoor(app, State({"webhook_gate": Gate()}))  # type: ignore[arg-type]
    _, scope = await _through(door, "POST", WEBHOOK_PREFIX + "x")
    assert scope["path_template"] == WEBHOOK_ROUTE
