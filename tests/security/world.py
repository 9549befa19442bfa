"""A populated organization, built over HTTP the way users build one, and the catalogue of every
documented operation (read from the served OpenAPI document, so a new endpoint is never missed).

The fuzz suite sends its generated requests at a world's real ids; the security matrix points
another organization's key, an agent key and no key at them.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.helpers import signed
from tests.security.leaks import register

# Path parameters of the API and the world attribute that holds a real id for each.
PATH_IDS = {
    "key_id": "spare_key_id",
    "integration_id": "integration_id",
    "conversation_id": "conversation_id",
    "agent_id": "agent_id",
    "kb_id": "kb_id",
    "document_id": "document_id",
}
WEBHOOK = ("POST", "/api/v1/integrations/webhook/{integration_id}")
STREAM = ("GET", "/api/v1/events/stream")

# Who may call each /api/ operation: the security matrix checks every operation is in one set.
ADMIN_ONLY = {
    ("PATCH", "/api/v1/organization"),
    ("GET", "/api/v1/api-keys"),
    ("POST", "/api/v1/api-keys"),
    ("DELETE", "/api/v1/api-keys/{key_id}"),
    ("POST", "/api/v1/integrations"),
    ("PATCH", "/api/v1/integrations/{integration_id}"),
    ("DELETE", "/api/v1/integrations/{integration_id}"),
    ("POST", "/api/v1/integrations/{integration_id}/rotate-secret"),
    ("POST", "/api/v1/agents"),
    ("PATCH", "/api/v1/agents/{agent_id}"),
    ("POST", "/api/v1/agents/assign/{conversation_id}"),
    ("POST", "/api/v1/knowledge-bases"),
    ("POST", "/api/v1/knowledge-bases/{kb_id}/documents"),
    ("DELETE", "/api/v1/knowledge-bases/{kb_id}/documents/{document_id}"),
}
# An agent key may call these, within its own agent's reach (tests/agents check that reach).
AGENT_ALLOWED = {
    ("GET", "/api/v1/organization"),
    ("GET", "/api/v1/integrations"),
    ("GET", "/api/v1/integrations/{integration_id}"),
    ("GET", "/api/v1/integrations/{integration_id}/events"),
    ("GET", "/api/v1/conversations"),
    ("GET", "/api/v1/conversations/{conversation_id}"),
    ("GET", "/api/v1/conversations/{conversation_id}/messages"),
    ("POST", "/api/v1/conversations/{conversation_id}/resolve"),
    ("GET", "/api/v1/agents"),
    ("GET", "/api/v1/agents/{agent_id}"),
    ("GET", "/api/v1/agents/{agent_id}/metrics"),
    ("GET", "/api/v1/agents/performance"),
    ("GET", "/api/v1/agents/queue"),
    ("POST", "/api/v1/agents/queue"),
    ("POST", "/api/v1/agents/escalate/{conversation_id}"),
    ("POST", "/api/v1/agents/response/{conversation_id}"),
    ("PUT", "/api/v1/agents/{agent_id}/status"),
    ("POST", "/api/v1/agents/transfer/{conversation_id}"),
    ("GET", "/api/v1/knowledge-bases"),
    ("GET", "/api/v1/knowledge-bases/{kb_id}"),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/documents"),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/documents/{document_id}"),
    ("GET", "/api/v1/knowledge-bases/{kb_id}/search"),
    ("POST", "/api/v1/query"),
    ("POST", "/api/v1/events/token"),
    ("POST", "/api/v1/events/heartbeat"),
    STREAM,
}

_serial = itertools.count(1)


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    path: str
    security: bool
    has_body: bool

    @property
    def key(self) -> tuple[str, str]:
        return (self.method, self.path)

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


def operations(document: dict[str, Any]) -> list[Operation]:
    """Every operation of the document, with whether it declares a security requirement."""
    found = []
    for path, item in document["paths"].items():
        for method, operation in item.items():
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    security=bool(operation.get("security")),
                    has_body="requestBody" in operation,
                )
            )
    return found


@dataclass
class World:
    """One organization with one of everything; `markers` are strings that only its own data
    contains (ids, names, secrets), so finding one in another caller's response is a leak."""

    tag: str
    admin: dict[str, str]
    org_id: str = ""
    agent_id: str = ""
    agent: dict[str, str] = field(default_factory=dict)
    agent_key_id: str = ""
    spare_key_id: str = ""
    kb_id: str = ""
    document_id: str = ""
    integration_id: str = ""
    integration_secret: str = ""
    spare_integration_id: str = ""
    conversation_id: str = ""
    queued_conversation_id: str = ""
    secrets: list[str] = field(default_factory=list)
    markers: set[str] = field(default_factory=set)

    def path_for(self, operation: Operation) -> str:
        """The operation's path with this world's real ids filled in."""
        path = operation.path
        for name, attribute in PATH_IDS.items():
            path = path.replace("{" + name + "}", getattr(self, attribute))
        assert "{" not in path, f"no id for a path parameter of {operation}"
        return path

    def body_for(self, operation: Operation) -> Any:
        """A request body that would succeed for this world's own admin."""
        n = next(_serial)
        bodies: dict[tuple[str, str], Any] = {
            ("PATCH", "/api/v1/organization"): {"name": f"{self.tag}-renamed-{n}"},
            ("POST", "/api/v1/api-keys"): {"name": f"key {n}"},
            ("POST", "/api/v1/integrations"): {
                "name": f"site {n}",
                "type": "generic",
                "knowledge_base_id": self.kb_id,
            },
            ("PATCH", "/api/v1/integrations/{integration_id}"): {"name": f"renamed {n}"},
            ("POST", "/api/v1/integrations/{integration_id}/rotate-secret"): {"grace_seconds": 0},
            ("POST", "/api/v1/conversations/{conversation_id}/resolve"): {"reason": "done"},
            ("POST", "/api/v1/agents/assign/{conversation_id}"): {"agent_id": self.agent_id},
            ("POST", "/api/v1/agents"): {"name": f"Agent {n}", "email": f"a{n}@example.com"},
            ("POST", "/api/v1/agents/queue"): {"conversation_id": self.queued_conversation_id},
            ("POST", "/api/v1/agents/escalate/{conversation_id}"): {"reason": "angry"},
            ("PATCH", "/api/v1/agents/{agent_id}"): {"name": f"Renamed {n}"},
            ("POST", "/api/v1/agents/response/{conversation_id}"): {
                "agent_id": self.agent_id,
                "message": "On it",
            },
            ("PUT", "/api/v1/agents/{agent_id}/status"): {"status": "away"},
            ("POST", "/api/v1/agents/transfer/{conversation_id}"): {"to_agent_id": self.agent_id},
            ("POST", "/api/v1/knowledge-bases/{kb_id}/documents"): {
                "title": f"Doc {n}",
                "content": "Refunds take five days.",
            },
            ("POST", "/api/v1/knowledge-bases"): {"name": f"kb {n}"},
            ("POST", "/api/v1/query"): {
                "question": "How long do refunds take?",
                "knowledge_base_id": self.kb_id,
                "conversation_id": self.conversation_id,
            },
        }
        if not operation.has_body:
            return None
        assert operation.key in bodies, f"no request body known for {operation}"
        return bodies[operation.key]


async def _created(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code in (200, 201, 202), f"{response.request.url}: {response.text}"
    return dict(response.json())


async def _conversation(
    http: httpx.AsyncClient, world: World, integration_id: str, secret: str, sender: str
) -> str:
    body, headers = signed(
        secret, {"message": {"body": f"{world.tag} needs help"}, "sender": {"id": sender}}
    )
    await _created(
        await http.post(
            f"/api/v1/integrations/webhook/{integration_id}", content=body, headers=headers
        )
    )
    listed = await http.get("/api/v1/conversations", headers=world.admin)
    for item in listed.json()["items"]:
        if item["contact"]["external_id"] == sender:
            return str(item["id"])
    raise AssertionError(f"no conversation from {sender}")


async def build_world(http: httpx.AsyncClient, tag: str, admin: dict[str, str]) -> World:
    """An organization with an agent (and its key), a spare admin key, a knowledge base with a
    document, two integrations, a conversation held by the agent and one waiting in the queue."""
    world = World(tag=tag, admin=admin)
    h = admin
    org = await http.get("/api/v1/organization", headers=h)
    world.org_id = str(org.json()["id"])
    agent = await _created(
        await http.post(
            "/api/v1/agents",
            json={"name": f"{tag} Agent", "email": f"{tag}.agent@example.com", "skills": ["x"]},
            headers=h,
        )
    )
    world.agent_id = str(agent["id"])
    await _created(
        await http.put(
            f"/api/v1/agents/{world.agent_id}/status", json={"status": "online"}, headers=h
        )
    )
    agent_key = await _created(
        await http.post(
            "/api/v1/api-keys",
            json={"name": f"{tag} agent key", "role": "agent", "agent_id": world.agent_id},
            headers=h,
        )
    )
    world.agent_key_id = str(agent_key["id"])
    world.agent = {"Authorization": f"Bearer {agent_key['api_key']}"}
    spare = await _created(
        await http.post("/api/v1/api-keys", json={"name": f"{tag} spare key"}, headers=h)
    )
    world.spare_key_id = str(spare["id"])
    kb = await _created(
        await http.post("/api/v1/knowledge-bases", json={"name": f"{tag} help"}, headers=h)
    )
    world.kb_id = str(kb["id"])
    document = await _created(
        await http.post(
            f"/api/v1/knowledge-bases/{world.kb_id}/documents",
            json={
                "title": f"{tag} refunds",
                "content": f"## Refunds\n\n{tag} refunds take five business days.",
                "content_type": "text/markdown",
            },
            headers=h,
        )
    )
    world.document_id = str(document["id"])
    integration = await _created(
        await http.post(
            "/api/v1/integrations",
            json={"name": f"{tag} site", "type": "generic", "knowledge_base_id": world.kb_id},
            headers=h,
        )
    )
    world.integration_id = str(integration["id"])
    world.integration_secret = str(integration["secret"])
    evolution_key = f"{tag}-evolution-instance-key-{uuid.uuid4().hex}"
    spare_integration = await _created(
        await http.post(
            "/api/v1/integrations",
            json={
                "name": f"{tag} whatsapp",
                "type": "evolution",
                "config": {"instance": f"{tag}-instance", "api_key": evolution_key},
            },
            headers=h,
        )
    )
    world.spare_integration_id = str(spare_integration["id"])
    world.conversation_id, world.queued_conversation_id = await asyncio.gather(
        _conversation(http, world, world.integration_id, world.integration_secret, f"{tag}-u1"),
        _conversation(http, world, world.integration_id, world.integration_secret, f"{tag}-u2"),
    )
    await _created(
        await http.post(
            f"/api/v1/agents/assign/{world.conversation_id}",
            json={"agent_id": world.agent_id},
            headers=h,
        )
    )
    await _created(
        await http.post(
            f"/api/v1/agents/response/{world.conversation_id}",
            json={"agent_id": world.agent_id, "message": f"{tag} agent reply"},
            headers=h,
        )
    )
    world.secrets = [
        h["Authorization"].removeprefix("Bearer "),
        str(agent_key["api_key"]),
        str(spare["api_key"]),
        world.integration_secret,
        str(spare_integration["secret"]),
        evolution_key,
    ]
    register(*world.secrets)
    world.markers = {
        world.org_id,
        world.agent_id,
        world.agent_key_id,
        world.spare_key_id,
        world.kb_id,
        world.document_id,
        world.integration_id,
        world.spare_integration_id,
        world.conversation_id,
        world.queued_conversation_id,
        tag,
        *world.secrets,
    }
    return world
