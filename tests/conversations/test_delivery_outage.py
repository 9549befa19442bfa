"""A database outage between the channel accepting a message and the worker recording it: the
result is recorded once the database is back, so the message is not sent a second time (found by
the fault suite, `bench/faults.py`, restarting PostgreSQL under traffic)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from litestar.testing import AsyncTestClient
from loguru import logger
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_engine
from app.domain.conversations.delivery import DeliveryHandler
from app.gateways.callback import CallbackGateway
from app.gateways.evolution import EvolutionGateway
from app.gateways.http import create_http_client
from app.workers.queue import JobRunner
from tests.conftest import make_settings
from tests.helpers import (
    TcpProxy,
    create_integration,
    database_target,
    database_url_via,
    signed,
)
from tests.stubs.evolution import EvolutionStub, messages_upsert_payload


async def wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 20
    while not check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


async def test_a_sent_message_is_recorded_after_a_database_outage_not_sent_again(
    peer_client: AsyncTestClient[Any],
    admin_headers: dict[str, str],
    evolution: EvolutionStub,
    database_url: str,
    clean_db: AsyncEngine,
) -> None:
    evolution.reset()
    integration = await create_integration(
        peer_client, admin_headers, type="evolution", config={"instance": "main"}
    )
    body, headers = signed(
        integration["secret"], messages_upsert_payload("main", "5511912340000", "hi")
    )
    await peer_client.post(
        f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )
    async with clean_db.begin() as connection:
        await connection.execute(text("DELETE FROM jobs"))
        await connection.execute(
            text(
                """
WITH outbound AS (
    INSERT INTO messages (org_id, conversation_id, role, content, delivery_status)
    SELECT org_id, id, 'agent', 'your order shipped', 'pending' FROM conversations
    RETURNING id, org_id, conversation_id
)
INSERT INTO jobs (kind, org_id, conversation_id, message_id)
SELECT 'deliver', org_id, conversation_id, id FROM outbound
"""
            )
        )
    proxy = TcpProxy(*database_target(database_url))
    await proxy.start()
    through_proxy = database_url_via(database_url, proxy.port)
    settings = make_settings(
        through_proxy,
        evolution_api_base_url=evolution.base_url,
        evolution_api_global_key=evolution.api_key,
    )
    engine = create_engine(settings, through_proxy)
    http = create_http_client()
    handler = DeliveryHandler(
        engine, EvolutionGateway(settings, http), CallbackGateway(http), 86400, 0.05
    )
    [job] = await JobRunner(clean_db, "deliver", handler).claim(1)
    waits: list[str] = []
    sink = logger.add(
        lambda message: waits.append(message.record["message"]),
        level="WARNING",
        filter=lambda record: "waits for the database" in record["message"],
    )
    evolution.slow_seconds = 30
    evolution.mode = "slow"
    try:
        delivering = asyncio.create_task(handler(job))
        await wait_until(lambda: evolution.calls("send_text") == 1, "the send reached Evolution")
        await proxy.stop()  # the database goes away while the channel holds the message
        evolution.mode = "ok"  # Evolution accepts it
        await wait_until(lambda: waits, "the worker waited to record the send")
        await proxy.start()
        await asyncio.wait_for(delivering, timeout=30)
        sends = evolution.calls("send_text")
    finally:
        logger.remove(sink)
        evolution.reset()
        await proxy.stop()
        await http.aclose()
        await engine.dispose()
    async with clean_db.connect() as connection:
        state = (
            await connection.execute(
                text(
                    "SELECT m.delivery_status, j.status FROM messages m "
                    "JOIN jobs j ON j.message_id = m.id WHERE m.role = 'agent'"
                )
            )
        ).one()
    assert tuple(state) == ("sent", "done")
    assert sends == 1
