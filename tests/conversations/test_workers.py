"""Several worker processes share the outbox: every delivery is sent, and sent once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import create_integration, signed
from tests.stubs.evolution import EvolutionStub, messages_upsert_payload

DELIVERIES = 1000
BOTLYNE = str(Path(sys.executable).with_name("botlyne"))


async def test_two_worker_processes_send_each_delivery_exactly_once(
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
        integration["secret"], messages_upsert_payload("main", "5511912340000@s.whatsapp.net", "hi")
    )
    await peer_client.post(
        f"/api/v1/integrations/webhook/{integration['id']}", content=body, headers=headers
    )
    async with clean_db.begin() as connection:
        # The bot's own job would add a reply; these tests are about the outbox alone.
        await connection.execute(text("DELETE FROM jobs"))
        await connection.execute(
            text(
                """
WITH outbound AS (
    INSERT INTO messages (org_id, conversation_id, role, content, delivery_status)
    SELECT c.org_id, c.id, 'agent', 'delivery ' || n, 'pending'
    FROM conversations c, generate_series(1, :count) AS n
    RETURNING id, org_id, conversation_id
)
INSERT INTO jobs (kind, org_id, conversation_id, message_id)
SELECT 'deliver', org_id, conversation_id, id FROM outbound
"""
            ),
            {"count": DELIVERIES},
        )
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "AUTO_MIGRATE": "false",
        "EVOLUTION_API_BASE_URL": evolution.base_url,
        "EVOLUTION_API_GLOBAL_KEY": evolution.api_key,
        "WORKER_CONCURRENCY": "16",
        "LOG_LEVEL": "WARNING",
    }
    env.pop("REDIS_URL", None)
    workers = [
        await asyncio.create_subprocess_exec(
            BOTLYNE, "worker", env=env, stdout=asyncio.subprocess.DEVNULL
        )
        for _ in range(2)
    ]

    async def unsent() -> int:
        async with clean_db.connect() as connection:
            result = await connection.execute(
                text("SELECT count(*) FROM messages WHERE delivery_status = 'pending'")
            )
            return int(result.scalar_one())

    try:
        await evolution.wait_for_async(DELIVERIES, timeout=120)
        deadline = time.monotonic() + 30
        while await unsent() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await asyncio.wait_for(worker.wait(), timeout=30)
    assert await unsent() == 0
    counts = Counter(message.text for message in evolution.sent)
    assert len(counts) == DELIVERIES
    assert set(counts.values()) == {1}
