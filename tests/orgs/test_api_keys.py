from __future__ import annotations

from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.conftest import ADMIN_KEY

Client = AsyncTestClient[Litestar]


async def test_missing_and_unknown_keys_get_401(client: Client) -> None:
    missing = await client.get("/api/v1/api-keys")
    assert missing.status_code == 401
    assert missing.json() == {"status_code": 401, "detail": "Missing API key"}
    for headers in (
        {"Authorization": "Bearer bl_unknown-key-that-does-not-exist"},
        {"X-API-Key": ADMIN_KEY[:-1] + "x"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Basic Zm9vOmJhcg=="},
    ):
        response = await client.get("/api/v1/api-keys", headers=headers)
        assert response.status_code == 401, headers


async def test_bearer_and_x_api_key_both_work(client: Client) -> None:
    for headers in ({"Authorization": f"Bearer {ADMIN_KEY}"}, {"X-API-Key": ADMIN_KEY}):
        response = await client.get("/api/v1/organization", headers=headers)
        assert response.status_code == 200
        assert response.json()["name"] == "default"


async def test_key_is_shown_once_and_stored_hashed(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    created = await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=admin_headers)
    assert created.status_code == 201
    body = created.json()
    key = body["api_key"]
    assert key.startswith("bl_")
    assert len(key) > 40
    assert body["prefix"] == key[:12]

    listed = (await client.get("/api/v1/api-keys", headers=admin_headers)).json()
    assert {item["name"] for item in listed["items"]} == {"admin", "ci"}
    assert key not in str(listed)

    async with clean_db.connect() as connection:
        stored = (await connection.execute(text("SELECT key_hash FROM api_keys"))).scalars().all()
        audit = (
            await connection.execute(text("SELECT concat(old_values, new_values) FROM audit_logs"))
        ).scalars()
        assert key not in "".join(stored)
        assert all("key_hash" not in row for row in audit)

    works = await client.get("/api/v1/organization", headers={"Authorization": f"Bearer {key}"})
    assert works.status_code == 200


async def test_revoked_key_stops_working(client: Client, admin_headers: dict[str, str]) -> None:
    created = (
        await client.post("/api/v1/api-keys", json={"name": "temp"}, headers=admin_headers)
    ).json()
    headers = {"X-API-Key": created["api_key"]}
    assert (await client.get("/api/v1/organization", headers=headers)).status_code == 200
    revoked = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin_headers)
    assert revoked.status_code == 204
    assert (await client.get("/api/v1/organization", headers=headers)).status_code == 401
    again = await client.delete(f"/api/v1/api-keys/{created['id']}", headers=admin_headers)
    assert again.status_code == 404


async def test_malformed_input_is_4xx_with_details(
    client: Client, admin_headers: dict[str, str]
) -> None:
    truncated = await client.post(
        "/api/v1/api-keys",
        content=b'{"name": ',
        headers={**admin_headers, "Content-Type": "application/json"},
    )
    assert truncated.status_code == 400
    unknown = await client.post("/api/v1/api-keys", json={"nam": "x"}, headers=admin_headers)
    assert unknown.status_code == 422
    assert unknown.json()["extra"]
    bad_role = await client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "root"}, headers=admin_headers
    )
    assert bad_role.status_code == 422
    agent_without_agent = await client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "agent"}, headers=admin_headers
    )
    assert agent_without_agent.status_code == 422
    bad_id = await client.delete("/api/v1/api-keys/not-a-uuid", headers=admin_headers)
    assert bad_id.status_code in (400, 404)


async def test_other_organizations_are_invisible(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.core.db import create_sessionmaker
    from app.domain.orgs.service import create_organization

    async with create_sessionmaker(clean_db).begin() as session:
        _, other_key = await create_organization(session, "other")
    other = {"Authorization": f"Bearer {other_key}"}
    mine = (await client.get("/api/v1/api-keys", headers=admin_headers)).json()["items"]
    response = await client.delete(f"/api/v1/api-keys/{mine[0]['id']}", headers=other)
    assert response.status_code == 404
    theirs = (await client.get("/api/v1/api-keys", headers=other)).json()["items"]
    assert {item["id"] for item in theirs}.isdisjoint({item["id"] for item in mine})


async def test_duplicate_org_name_is_409(
    client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.core.db import create_sessionmaker
    from app.domain.orgs.service import create_organization

    async with create_sessionmaker(clean_db).begin() as session:
        await create_organization(session, "taken")
    response = await client.patch(
        "/api/v1/organization", json={"name": "taken"}, headers=admin_headers
    )
    assert response.status_code == 409
    assert "taken" not in response.text.replace('"detail"', "")
