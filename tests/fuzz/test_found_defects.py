"""What the fuzz suite found, each pinned by an ordinary test (docs/reliability.md lists them)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from app.asgi import create_app
from app.config import Settings
from tests.helpers import create_integration, signed


async def test_signed_text_holding_nul_is_refused_not_a_500(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    url = f"/api/v1/integrations/webhook/{integration['id']}"
    for payload in (
        {"message": {"body": "a\u0000b"}, "sender": {"id": "u1"}},
        {"message": {"body": "hi"}, "sender": {"id": "u1"}, "meta": {"k\u0000": 1}},
    ):
        body, headers = signed(integration["secret"], payload)
        response = await peer_client.post(url, content=body, headers=headers)
        assert response.status_code == 422, response.text
        assert response.json()["extra"] == {"reason": "invalid_payload"}
    # A backslash-escaped "\u0000" is plain text, and welcome.
    body, headers = signed(
        integration["secret"], {"message": {"body": "C:\\u0000"}, "sender": {"id": "u2"}}
    )
    assert (await peer_client.post(url, content=body, headers=headers)).status_code == 202
    events = await peer_client.get(
        f"/api/v1/integrations/{integration['id']}/events", headers=admin_headers
    )
    reasons = [event["reason"] for event in events.json()["items"]]
    assert reasons.count("invalid_payload") == 2


async def test_values_the_database_cannot_store_are_422_not_500(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    agent = await client.post(
        "/api/v1/agents", json={"name": "Ana", "email": "ana@example.com"}, headers=admin_headers
    )
    renamed = await client.patch(
        f"/api/v1/agents/{agent.json()['id']}", json={"name": "A\u0000na"}, headers=admin_headers
    )
    assert renamed.status_code == 422, renamed.text
    kb = await client.post("/api/v1/knowledge-bases", json={"name": "kb"}, headers=admin_headers)
    far = await client.get(
        f"/api/v1/knowledge-bases/{kb.json()['id']}/documents",
        params={"offset": str(10**22)},
        headers=admin_headers,
    )
    assert far.status_code == 422, far.text


async def test_a_failed_statement_never_quotes_its_parameters(engine: AsyncEngine) -> None:
    secret = "bl_parameter-that-must-stay-out-of-logs"
    async with engine.connect() as connection:
        with pytest.raises(DBAPIError) as failure:
            await connection.exec_driver_sql("SELECT length($1::text) / 0", (secret,))
    assert secret not in str(failure.value)


async def test_a_duplicate_knowledge_base_name_is_a_documented_409(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str]
) -> None:
    for expected in (201, 409):
        response = await client.post(
            "/api/v1/knowledge-bases", json={"name": "help"}, headers=admin_headers
        )
        assert response.status_code == expected, response.text
    document = (await client.get("/schema/openapi.json")).json()
    assert "409" in document["paths"]["/api/v1/knowledge-bases"]["post"]["responses"]


async def test_the_document_states_what_the_api_enforces(
    client: AsyncTestClient[Litestar], admin_headers: dict[str, str], settings: Settings
) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    paths, schemas = document["paths"], document["components"]["schemas"]
    # Bodies that refuse unknown fields say so.
    assert schemas["AgentCreate"]["additionalProperties"] is False
    extra = await client.post(
        "/api/v1/agents",
        json={"name": "A", "email": "a@example.com", "nickname": "x"},
        headers=admin_headers,
    )
    assert extra.status_code == 422
    # Bodies with a default are optional.
    resolve = paths["/api/v1/conversations/{conversation_id}/resolve"]["post"]
    assign = paths["/api/v1/agents/assign/{conversation_id}"]["post"]
    assert resolve["requestBody"]["required"] is False
    assert assign["requestBody"]["required"] is False
    # The event stream is an event stream.
    stream = paths["/api/v1/events/stream"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
    # The observability token is optional: without OBSERVABILITY_TOKEN these answer anyone.
    for path in ("/health/detailed", "/metrics", "/metrics/summary"):
        assert paths[path]["get"]["security"] == [{"ObservabilityToken": []}, {}]
        assert (await client.get(path)).status_code in (200, 503)
    # No generated (random) example: another start serves the same document.
    again = create_app(settings).openapi_schema.to_schema()
    assert msgspec.json.decode(msgspec.json.encode(again)) == document
