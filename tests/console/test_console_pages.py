"""The console's server side without a browser: signing in, the cookie, what pages hold."""

from __future__ import annotations

from typing import Any

from litestar.testing import AsyncTestClient

from tests.helpers import create_integration, signed

Client = AsyncTestClient[Any]


async def agent_with_key(
    client: Client, headers: dict[str, str], name: str = "Joana"
) -> tuple[dict[str, Any], str]:
    agent = (
        await client.post(
            "/api/v1/agents",
            json={"name": name, "email": f"{name.lower()}@example.com"},
            headers=headers,
        )
    ).json()
    key = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "console", "role": "agent", "agent_id": agent["id"]},
            headers=headers,
        )
    ).json()["api_key"]
    return agent, key


async def test_sign_in_keeps_the_key_in_a_strict_http_only_cookie(
    client: Client, admin_headers: dict[str, str]
) -> None:
    assert (await client.get("/console", follow_redirects=False)).headers["location"] == (
        "/console/sign-in"
    )
    page = await client.get("/console/sign-in")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert 'for="api_key"' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline scripts, so the policy can forbid them

    agent, key = await agent_with_key(client, admin_headers)
    signed_in = await client.post("/console/sign-in", data={"api_key": key}, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"].lower()
    assert cookie.startswith("botlyne_console=")
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert "path=/console" in cookie
    assert "secure" not in cookie  # plain http here

    desk = await client.get("/console")
    assert desk.status_code == 200
    assert agent["name"] in desk.text
    assert key not in desk.text  # never rendered into a page
    assert desk.headers["cache-control"] == "no-store"

    token = await client.post("/console/events/token")
    assert token.status_code == 201
    assert key not in token.text
    assert token.json()["stream_url"].startswith("/api/v1/events/stream?token=")

    behind_tls = await client.post(
        "/console/sign-in",
        data={"api_key": key},
        headers={"X-Forwarded-Proto": "https"},
        follow_redirects=False,
    )
    assert "secure" in behind_tls.headers["set-cookie"].lower()


async def test_only_agent_keys_sign_in(client: Client, admin_headers: dict[str, str]) -> None:
    admin_key = admin_headers["Authorization"].removeprefix("Bearer ")
    refused = await client.post("/console/sign-in", data={"api_key": admin_key})
    assert refused.status_code == 403
    assert "agent" in refused.text
    wrong = await client.post("/console/sign-in", data={"api_key": "bl_nope"})
    assert wrong.status_code == 401
    assert "not valid" in wrong.text
    assert (await client.post("/console/events/token")).status_code == 401


async def test_cross_site_posts_are_refused(client: Client, admin_headers: dict[str, str]) -> None:
    _, key = await agent_with_key(client, admin_headers)
    foreign = await client.post(
        "/console/sign-in",
        data={"api_key": key},
        headers={"Origin": "https://evil.example"},
        follow_redirects=False,
    )
    assert foreign.status_code == 403
    cross = await client.post(
        "/console/sign-in",
        data={"api_key": key},
        headers={"Sec-Fetch-Site": "cross-site"},
        follow_redirects=False,
    )
    assert cross.status_code == 403


async def test_status_reply_and_resolve_from_the_console(
    peer_client: Client, admin_headers: dict[str, str]
) -> None:
    client = peer_client
    agent, key = await agent_with_key(client, admin_headers, "Lara")
    await client.post("/console/sign-in", data={"api_key": key})
    online = await client.post("/console/status", data={"status": "online"}, follow_redirects=False)
    assert online.status_code == 303
    assert (await client.get(f"/api/v1/agents/{agent['id']}", headers=admin_headers)).json()[
        "status"
    ] == "online"

    integration = await create_integration(client, admin_headers)
    body, headers = signed(
        integration["secret"], {"message": {"body": "My parcel is lost"}, "sender": {"id": "u1"}}
    )
    await client.post(
        f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )
    conversation_id = (await client.get("/api/v1/conversations", headers=admin_headers)).json()[
        "items"
    ][0]["id"]
    queued = await client.post(
        "/api/v1/agents/queue",
        json={"conversation_id": conversation_id, "reason": "no_answer"},
        headers=admin_headers,
    )
    assert queued.status_code == 201

    desk = await client.get("/console/fragments/conversations")
    assert f"/console/conversations/{conversation_id}" in desk.text
    assert 'aria-label="1 unread"' in desk.text
    thread = await client.get(f"/console/conversations/{conversation_id}")
    assert "My parcel is lost" in thread.text
    assert "The bot found no answer" in thread.text  # the escalation reason
    assert 'for="reply-text"' in thread.text
    # Seen: no longer unread.
    assert "unread" not in (await client.get("/console/fragments/conversations")).text

    sent = await client.post(
        f"/console/conversations/{conversation_id}/reply",
        data={"message": "Let me check that for you."},
        headers={"X-Requested-With": "console"},
    )
    assert sent.status_code == 201, sent.text
    messages = (
        await client.get(f"/api/v1/conversations/{conversation_id}/messages", headers=admin_headers)
    ).json()["items"]
    assert [m["role"] for m in messages] == ["user", "agent"]

    resolved = await client.post(
        f"/console/conversations/{conversation_id}/resolve", follow_redirects=False
    )
    assert resolved.status_code == 303
    assert (
        await client.get(f"/api/v1/conversations/{conversation_id}", headers=admin_headers)
    ).json()["status"] == "resolved"
    again = await client.post(
        f"/console/conversations/{conversation_id}/reply", data={"message": "Hello?"}
    )
    assert again.status_code == 409
    assert "not the conversation" in again.text

    signed_out = await client.post("/console/sign-out", follow_redirects=False)
    assert signed_out.status_code == 303
    assert (await client.get(f"/api/v1/agents/{agent['id']}", headers=admin_headers)).json()[
        "status"
    ] == "offline"
    assert (await client.get("/console/fragments/queue")).status_code == 401
