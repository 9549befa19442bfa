from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import create_integration


async def test_create_shows_the_secret_once(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    created = await create_integration(
        peer_client,
        admin_headers,
        type="evolution",
        allowed_ips=["10.0.0.0/8"],
        rate_limit_per_minute=10,
        config={"instance": "main", "api_key": "evo-secret-key"},
    )
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["active_secrets"] == 1
    assert created["config"] == {"instance": "main", "api_key": "***"}
    assert created["webhook_path"] == f"/api/v1/integrations/webhook/{created['id']}"

    fetched = await peer_client.get(f"/api/v1/integrations/{created['id']}", headers=admin_headers)
    listed = await peer_client.get("/api/v1/integrations", headers=admin_headers)
    assert secret not in fetched.text
    assert secret not in listed.text
    assert "evo-secret-key" not in fetched.text
    async with clean_db.connect() as connection:
        audit = (
            await connection.execute(text("SELECT concat(old_values, new_values) FROM audit_logs"))
        ).scalars()
        assert all(secret not in row for row in audit)


async def test_invalid_allowlist_and_config_are_422(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    for body in (
        {"name": "x", "type": "generic", "allowed_ips": ["10.0.0.1/8"]},
        {"name": "x", "type": "generic", "allowed_ips": ["nonsense"]},
        {"name": "x", "type": "carrier-pigeon"},
        {"name": "x", "type": "generic", "config": {"callback_url": "ftp://x"}},
        {"name": "x", "type": "generic", "rate_limit_per_minute": 0},
        {"name": "x", "type": "generic", "secret": "short"},
    ):
        response = await peer_client.post("/api/v1/integrations", json=body, headers=admin_headers)
        assert response.status_code == 422, (body, response.text)


async def test_update_rotate_delete(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    created = await create_integration(peer_client, admin_headers)
    url = f"/api/v1/integrations/{created['id']}"
    updated = await peer_client.patch(
        url, json={"status": "disabled", "rate_limit_per_hour": 5}, headers=admin_headers
    )
    assert updated.status_code == 200
    assert updated.json()["status"] == "disabled"
    assert updated.json()["rate_limit_per_hour"] == 5

    rotated = await peer_client.post(
        f"{url}/rotate-secret", json={"grace_seconds": 60}, headers=admin_headers
    )
    assert rotated.status_code == 200
    assert rotated.json()["secret"] != created["secret"]
    assert (await peer_client.get(url, headers=admin_headers)).json()["active_secrets"] == 2
    immediate = await peer_client.post(
        f"{url}/rotate-secret", json={"grace_seconds": 0}, headers=admin_headers
    )
    assert immediate.status_code == 200
    assert (await peer_client.get(url, headers=admin_headers)).json()["active_secrets"] == 1

    assert (await peer_client.delete(url, headers=admin_headers)).status_code == 204
    assert (await peer_client.get(url, headers=admin_headers)).status_code == 404


async def test_another_organization_sees_nothing(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.core.db import create_sessionmaker
    from app.domain.orgs.service import create_organization

    created = await create_integration(peer_client, admin_headers)
    async with create_sessionmaker(clean_db).begin() as session:
        _, other_key = await create_organization(session, "other")
    other = {"Authorization": f"Bearer {other_key}"}
    url = f"/api/v1/integrations/{created['id']}"
    assert (await peer_client.get(url, headers=other)).status_code == 404
    assert (await peer_client.patch(url, json={"name": "x"}, headers=other)).status_code == 404
    assert (await peer_client.delete(url, headers=other)).status_code == 404
    assert (await peer_client.get(f"{url}/events", headers=other)).status_code == 404
    assert (await peer_client.get("/api/v1/integrations", headers=other)).json()["items"] == []


async def test_knowledge_base_must_belong_to_the_organization(
    peer_client: AsyncTestClient[Any], admin_headers: dict[str, str]
) -> None:
    import uuid

    response = await peer_client.post(
        "/api/v1/integrations",
        json={"name": "x", "type": "generic", "knowledge_base_id": str(uuid.uuid4())},
        headers=admin_headers,
    )
    assert response.status_code == 422
    kb = await peer_client.post(
        "/api/v1/knowledge-bases", json={"name": "kb"}, headers=admin_headers
    )
    created = await create_integration(
        peer_client, admin_headers, knowledge_base_id=kb.json()["id"]
    )
    assert created["knowledge_base_id"] == kb.json()["id"]
