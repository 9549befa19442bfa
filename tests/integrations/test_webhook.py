"""Every row of the webhook outcome table, through HTTP, each visible as an event."""

from __future__ import annotations

import asyncio
import hmac
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from standardwebhooks import Webhook

from app.config import Settings
from app.core.security.signatures import sign_hmac
from tests.conftest import make_settings
from tests.helpers import PeerOverride, create_integration, signed
from tests.stubs.evolution import messages_upsert_payload

Client = AsyncTestClient[Any]
GENERIC = {"message": {"body": "Where is my order?"}, "sender": {"id": "user-1", "name": "Ana"}}


def hook(integration: dict[str, Any]) -> str:
    return f"/api/v1/integrations/webhook/{integration['id']}"


async def events(client: Client, admin: dict[str, str], integration: dict[str, Any]) -> list[Any]:
    response = await client.get(f"/api/v1/integrations/{integration['id']}/events", headers=admin)
    assert response.status_code == 200
    return list(response.json()["items"])


async def test_accepted_message_is_stored_before_202(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body, headers = signed(integration["secret"], GENERIC)
    response = await peer_client.post(hook(integration), content=body, headers=headers)
    assert response.status_code == 202
    assert response.json()["status"] == "accepted"
    assert response.json()["event_id"]
    assert response.headers["ratelimit-policy"] == '"minute";q=60;w=60, "hour";q=1000;w=3600'
    assert response.headers["ratelimit"].startswith('"minute";r=59')

    async with clean_db.connect() as connection:
        row = (
            await connection.execute(
                text(
                    "SELECT c.contact_external_id, c.contact_name, c.status, c.message_count, "
                    "m.role, m.content FROM conversations c JOIN messages m "
                    "ON m.conversation_id = c.id"
                )
            )
        ).one()
    assert tuple(row) == ("user-1", "Ana", "bot", 1, "user", "Where is my order?")
    [event] = await events(peer_client, admin_headers, integration)
    assert event["outcome"] == "accepted"
    assert event["status_code"] == 202
    assert event["client_ip"] == "203.0.113.7"
    assert event["message_id"]


@pytest.mark.parametrize(
    ("case", "status", "reason"),
    [
        ("deleted", 410, "integration_deleted"),
        ("disabled", 403, "integration_disabled"),
        ("ip", 403, "ip_not_allowed"),
        ("too_large", 413, "body_too_large"),
        ("content_type", 415, "not_json"),
        ("unsigned", 401, "missing_signature"),
        ("wrong_signature", 401, "invalid_signature"),
        ("stale", 401, "stale_timestamp"),
        ("future", 401, "stale_timestamp"),
        ("malformed_timestamp", 401, "malformed_timestamp"),
        ("not_json", 400, "invalid_json"),
        ("wrong_shape", 422, "invalid_payload"),
    ],
)
async def test_rejections(
    peer_client: Client, admin_headers: dict[str, str], case: str, status: int, reason: str
) -> None:
    integration = await create_integration(
        peer_client, admin_headers, allowed_ips=["203.0.113.0/24"]
    )
    url = f"/api/v1/integrations/{integration['id']}"
    secret = integration["secret"]
    body, headers = signed(secret, GENERIC)
    if case == "deleted":
        await peer_client.delete(url, headers=admin_headers)
    elif case == "disabled":
        await peer_client.patch(url, json={"status": "disabled"}, headers=admin_headers)
    elif case == "ip":
        headers["X-Test-Peer"] = "198.51.100.1"
    elif case == "too_large":
        body, headers = signed(secret, {"message": {"body": "x" * 1_100_000}})
    elif case == "content_type":
        headers["Content-Type"] = "text/plain"
    elif case == "unsigned":
        headers = {"Content-Type": "application/json", "X-Test-Peer": "203.0.113.7"}
    elif case == "wrong_signature":
        headers["X-Signature"] = "sha256=" + "0" * 64
    elif case in ("stale", "future"):
        # Whole seconds of a truncated clock: -301 is always over 300 s old, while the future
        # side needs a second of margin for the request crossing a second boundary.
        body, headers = signed(
            secret, GENERIC, timestamp=int(time.time()) + (-301 if case == "stale" else 302)
        )
    elif case == "malformed_timestamp":
        headers["X-Timestamp"] = "17e8"
    elif case == "not_json":
        body, headers = signed(secret, b'{"message": ')
    elif case == "wrong_shape":
        body, headers = signed(secret, {"message": {"text": "no body field"}})
    response = await peer_client.post(hook(integration), content=body, headers=headers)
    assert response.status_code == status, response.text
    assert response.json()["extra"]["reason"] == reason
    assert "Traceback" not in response.text
    if status not in (410,):
        recorded = await events(peer_client, admin_headers, integration)
        assert [(e["outcome"], e["status_code"], e["reason"]) for e in recorded] == [
            ("rejected", status, reason)
        ]


async def test_unknown_integration_is_404(peer_client: Client) -> None:
    for integration_id in ("00000000-0000-0000-0000-000000000000", "not-a-uuid"):
        response = await peer_client.post(
            f"/api/v1/integrations/webhook/{integration_id}",
            content=b"{}",
            headers={"Content-Type": "application/json"},
        )
        assert response.status_code == 404


async def test_deleted_integration_event_is_recorded(
    settings: Settings, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.asgi import create_app

    async with AsyncTestClient(app=PeerOverride(create_app(settings))) as client:  # type: ignore[arg-type]
        integration = await create_integration(client, admin_headers)
        await client.delete(f"/api/v1/integrations/{integration['id']}", headers=admin_headers)
        body, headers = signed(integration["secret"], GENERIC)
        assert (
            await client.post(hook(integration), content=body, headers=headers)
        ).status_code == 410
    # A deleted integration has no events listing (which would flush the batch writer): the
    # rejection is in the table once the server has stopped, written at shutdown at the latest.
    async with clean_db.connect() as connection:
        reasons = (
            await connection.execute(text("SELECT reason FROM integration_events"))
        ).scalars()
        assert list(reasons) == ["integration_deleted"]


async def test_duplicates_are_acknowledged_and_processed_once(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body, headers = signed(integration["secret"], GENERIC)
    first = await peer_client.post(hook(integration), content=body, headers=headers)
    again = await peer_client.post(hook(integration), content=body, headers=headers)
    assert first.status_code == 202
    assert again.status_code == 200
    assert again.json() == {"status": "duplicate"}

    # The same provider message id re-sent later with a fresh signature is still a duplicate.
    payload = {**GENERIC, "message_id": "m-1"}
    for _ in range(2):
        body, headers = signed(integration["secret"], payload, timestamp=int(time.time()) + 1)
        await peer_client.post(hook(integration), content=body, headers=headers)
    async with clean_db.connect() as connection:
        count = (await connection.execute(text("SELECT count(*) FROM messages"))).scalar()
    assert count == 2
    outcomes = [e["outcome"] for e in await events(peer_client, admin_headers, integration)]
    assert sorted(outcomes) == ["accepted", "accepted", "duplicate", "duplicate"]


async def test_concurrent_copies_give_exactly_one_message(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body, headers = signed(integration["secret"], {**GENERIC, "message_id": "same"})
    responses = await asyncio.gather(
        *(peer_client.post(hook(integration), content=body, headers=headers) for _ in range(8))
    )
    assert sorted(r.status_code for r in responses) == [200] * 7 + [202]
    async with clean_db.connect() as connection:
        assert (await connection.execute(text("SELECT count(*) FROM messages"))).scalar() == 1


async def test_standard_webhooks_library_signs_accepted_requests(
    peer_client: Client, admin_headers: dict[str, str]
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body = msgspec.json.encode(GENERIC)
    signature = Webhook(integration["secret"]).sign("msg_2abc", datetime.now(UTC), body.decode())
    headers = {
        "webhook-id": "msg_2abc",
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
        "Content-Type": "application/json",
    }
    response = await peer_client.post(hook(integration), content=body, headers=headers)
    assert response.status_code == 202, response.text
    replay = await peer_client.post(hook(integration), content=body, headers=headers)
    assert replay.json() == {"status": "duplicate"}


async def test_rewritten_timestamp_is_401(
    peer_client: Client, admin_headers: dict[str, str]
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body, headers = signed(integration["secret"], GENERIC)
    headers["X-Timestamp"] = str(int(headers["X-Timestamp"]) + 1)
    response = await peer_client.post(hook(integration), content=body, headers=headers)
    assert response.status_code == 401
    # JavaScript's Date.now(): 13-digit milliseconds, signed as sent.
    millis = str(int(time.time() * 1000))
    mac = hmac.new(integration["secret"].encode(), millis.encode() + b"." + body, "sha256")
    headers.update({"X-Timestamp": millis, "X-Signature": mac.hexdigest()})
    accepted = await peer_client.post(hook(integration), content=body, headers=headers)
    assert accepted.status_code == 202


async def test_rotated_secret_keeps_working_during_grace(
    peer_client: Client, admin_headers: dict[str, str]
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    url = f"/api/v1/integrations/{integration['id']}/rotate-secret"
    new_secret = (await peer_client.post(url, headers=admin_headers)).json()["secret"]
    for secret, text_ in ((integration["secret"], "old"), (new_secret, "new")):
        body, headers = signed(secret, {**GENERIC, "message": {"body": text_}})
        assert (
            await peer_client.post(hook(integration), content=body, headers=headers)
        ).status_code == 202
    await peer_client.post(url, json={"grace_seconds": 0}, headers=admin_headers)
    body, headers = signed(new_secret, {**GENERIC, "message": {"body": "after"}})
    assert (
        await peer_client.post(hook(integration), content=body, headers=headers)
    ).status_code == 401


@pytest.fixture
def proxy_settings(database_url: str) -> Settings:
    return make_settings(
        database_url,
        trusted_proxies=("10.0.0.0/8",),
        webhook_failed_attempts_per_minute=3,
        rate_limit_requests_per_minute=2,
    )


async def test_forwarded_for_only_from_trusted_proxies_and_limits(
    proxy_settings: Settings, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    from app.asgi import create_app

    async with AsyncTestClient(app=PeerOverride(create_app(proxy_settings))) as client:  # type: ignore[arg-type]
        integration = await create_integration(client, admin_headers, allowed_ips=["192.0.2.0/24"])
        body, headers = signed(integration["secret"], GENERIC)
        # A stranger claims to be an allowed address: not believed.
        spoofed = {**headers, "X-Test-Peer": "198.51.100.9", "X-Forwarded-For": "192.0.2.1"}
        assert (
            await client.post(hook(integration), content=body, headers=spoofed)
        ).status_code == 403
        # The same header through our proxy is believed.
        proxied = {**headers, "X-Test-Peer": "10.1.2.3", "X-Forwarded-For": "6.6.6.6, 192.0.2.1"}
        assert (
            await client.post(hook(integration), content=body, headers=proxied)
        ).status_code == 202

        # Failed attempts from one IP: 401 until the limit, then 429.
        bad = {**proxied, "X-Signature": "0" * 64}
        statuses = [
            (await client.post(hook(integration), content=body, headers=bad)).status_code
            for _ in range(4)
        ]
        assert statuses == [401, 401, 401, 429]

        # The integration's own quota (2/min) counts authenticated requests only.
        second, second_headers = signed(integration["secret"], {**GENERIC, "message_id": "q2"})
        third, third_headers = signed(integration["secret"], {**GENERIC, "message_id": "q3"})
        for headers_ in (second_headers, third_headers):
            headers_.update({"X-Test-Peer": "10.1.2.3", "X-Forwarded-For": "192.0.2.1"})
        assert (
            await client.post(hook(integration), content=second, headers=second_headers)
        ).status_code == 202
        limited = await client.post(hook(integration), content=third, headers=third_headers)
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert "ratelimit" in limited.headers


async def test_evolution_messages_and_other_events(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(
        peer_client, admin_headers, type="evolution", config={"instance": "main"}
    )
    jid = "5511999990000@s.whatsapp.net"
    inbound = messages_upsert_payload("main", jid, "Oi, tudo bem?")
    media = messages_upsert_payload("main", jid, "")
    status_event = {"event": "connection.update", "instance": "main", "data": {"state": "open"}}
    for payload in (inbound, media, status_event):
        body, headers = signed(integration["secret"], payload)
        response = await peer_client.post(hook(integration), content=body, headers=headers)
        assert response.status_code == 202, response.text
    broken, headers = signed(integration["secret"], {"event": "messages.upsert", "data": {}})
    assert (
        await peer_client.post(hook(integration), content=broken, headers=headers)
    ).status_code == 422

    async with clean_db.connect() as connection:
        rows = (
            await connection.execute(
                text(
                    "SELECT c.contact_external_id, c.contact_name, c.channel, c.status, "
                    "m.content FROM conversations c JOIN messages m ON m.conversation_id = c.id"
                )
            )
        ).all()
    assert len(rows) == 1
    assert rows[0].contact_external_id == jid
    assert rows[0].contact_name == "Ana"
    assert rows[0].channel["instance"] == "main"
    assert rows[0].content == "Oi, tudo bem?"
    types = {e["event_type"] for e in await events(peer_client, admin_headers, integration)}
    assert {"messages.upsert", "messages.upsert.non_text", "connection.update"} <= types


async def test_business_phone_messages_take_over_but_echoes_do_not(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(
        peer_client, admin_headers, type="evolution", config={"instance": "main"}
    )
    jid = "5511988880000@s.whatsapp.net"
    body, headers = signed(integration["secret"], messages_upsert_payload("main", jid, "Oi"))
    await peer_client.post(hook(integration), content=body, headers=headers)
    async with clean_db.begin() as connection:
        await connection.execute(
            text(
                "INSERT INTO messages (org_id, conversation_id, role, content, delivery_status) "
                "SELECT org_id, id, 'bot', 'Olá! Como posso ajudar?', 'sent' FROM conversations"
            )
        )

    async def status() -> tuple[str, str | None]:
        async with clean_db.connect() as connection:
            row = (
                await connection.execute(
                    text("SELECT status, escalation_reason FROM conversations")
                )
            ).one()
        return row.status, row.escalation_reason

    echo = messages_upsert_payload("main", jid, "Olá! Como posso ajudar?", from_me=True)
    body, headers = signed(integration["secret"], echo)
    assert (
        await peer_client.post(hook(integration), content=body, headers=headers)
    ).status_code == 202
    assert await status() == ("bot", None)

    typed = messages_upsert_payload("main", jid, "Aqui é a Carla, vou te ajudar", from_me=True)
    body, headers = signed(integration["secret"], typed)
    assert (
        await peer_client.post(hook(integration), content=body, headers=headers)
    ).status_code == 202
    assert await status() == ("assigned", "human_takeover")
    async with clean_db.connect() as connection:
        roles = (
            (await connection.execute(text("SELECT role FROM messages ORDER BY created_at")))
            .scalars()
            .all()
        )
    assert roles == ["user", "bot", "agent"]


async def test_resolved_conversation_reopens_on_new_message(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    integration = await create_integration(peer_client, admin_headers)
    body, headers = signed(integration["secret"], {**GENERIC, "message_id": "a"})
    await peer_client.post(hook(integration), content=body, headers=headers)
    async with clean_db.begin() as connection:
        await connection.execute(
            text("UPDATE conversations SET status = 'resolved', resolved_at = now()")
        )
    body, headers = signed(integration["secret"], {**GENERIC, "message_id": "b"})
    await peer_client.post(hook(integration), content=body, headers=headers)
    async with clean_db.connect() as connection:
        row = (
            await connection.execute(
                text("SELECT status, resolved_at, message_count FROM conversations")
            )
        ).one()
    assert tuple(row) == ("bot", None, 2)


async def test_messages_in_one_conversation_keep_it_current(
    peer_client: Client, admin_headers: dict[str, str], clean_db: AsyncEngine
) -> None:
    """Messages that change nothing in their conversation leave no change in its trail, one with
    a new name changes it, and every message is stored with its job, in one conversation."""
    integration = await create_integration(peer_client, admin_headers)
    sends = [("a", "Ana"), ("b", None), ("c", "Ana"), ("d", "Ana Lima")]
    for message_id, name in sends:
        sender = {"id": "user-1", **({"name": name} if name else {})}
        payload = {"message": {"body": message_id}, "sender": sender, "message_id": message_id}
        body, headers = signed(integration["secret"], payload)
        response = await peer_client.post(hook(integration), content=body, headers=headers)
        assert response.status_code == 202
    async with clean_db.connect() as connection:
        conversation = (
            await connection.execute(
                text("SELECT id, contact_name, status, message_count FROM conversations")
            )
        ).one()
        updates = (
            await connection.execute(
                text(
                    "SELECT count(*) FROM audit_logs "
                    "WHERE table_name = 'conversations' AND operation = 'UPDATE'"
                )
            )
        ).scalar()
        jobs = (await connection.execute(text("SELECT count(*) FROM jobs"))).scalar()
    assert tuple(conversation)[1:] == ("Ana Lima", "bot", 4)
    assert updates == 1  # the new name only
    assert jobs == 4


def test_signing_helper_matches_contract() -> None:
    headers = sign_hmac("s" * 20, b"{}", 1_700_000_000)
    assert headers["X-Timestamp"] == "1700000000"
    assert headers["X-Signature"].startswith("sha256=")


HEADER_TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=80)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    timestamp=HEADER_TEXT,
    signature=HEADER_TEXT,
    content_type=st.sampled_from(["application/json", "text/plain", "", "application/x+json"]),
    body=st.binary(max_size=300),
)
async def test_malformed_requests_never_give_a_server_error(
    peer_client: Client,
    admin_headers: dict[str, str],
    timestamp: str,
    signature: str,
    content_type: str,
    body: bytes,
) -> None:
    listed = (await peer_client.get("/api/v1/integrations", headers=admin_headers)).json()["items"]
    integration = listed[0] if listed else await create_integration(peer_client, admin_headers)
    headers = {"X-Timestamp": timestamp, "X-Signature": signature, "X-Test-Peer": "203.0.113.7"}
    if content_type:
        headers["Content-Type"] = content_type
    response = await peer_client.post(hook(integration), content=body, headers=headers)
    assert 400 <= response.status_code < 500


async def test_the_door_and_the_route_answer_alike(
    peer_client: Client, admin_headers: dict[str, str]
) -> None:
    """The canonical path is answered in front of the router, a trailing slash by the Litestar
    route: the same checks, the same answer, the same headers."""
    integration = await create_integration(peer_client, admin_headers)
    answers = []
    for number, path in enumerate((hook(integration), hook(integration) + "/")):
        body, headers = signed(integration["secret"], {**GENERIC, "message_id": f"m-{number}"})
        answers.append(await peer_client.post(path, content=body, headers=headers))
        rejected = await peer_client.post(path, content=b"{}", headers=headers)
        assert rejected.status_code == 401
        assert rejected.json() == {
            "status_code": 401,
            "detail": "invalid_signature",
            "extra": {"reason": "invalid_signature"},
        }
        assert rejected.headers["content-type"] == "application/json"
    for response in answers:
        assert response.status_code == 202, response.text
        assert response.json()["status"] == "accepted"
        assert response.headers["content-type"] == "application/json"
        assert response.headers["x-request-id"]
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["ratelimit-policy"] == '"minute";q=60;w=60, "hour";q=1000;w=3600'
    assert [answer.headers["ratelimit"][:13] for answer in answers] == [
        '"minute";r=59',
        '"minute";r=58',
    ]
    recorded = await events(peer_client, admin_headers, integration)
    assert sorted(e["outcome"] for e in recorded) == ["accepted"] * 2 + ["rejected"] * 2
