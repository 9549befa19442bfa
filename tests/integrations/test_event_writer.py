"""The batch writer of webhook attempts: a database outage delays the rows, never loses them."""

from __future__ import annotations

import asyncio
import ipaddress
from datetime import UTC, datetime
from typing import Any

from loguru import logger
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from app.domain.integrations.repository import EventRecord, EventWriter, create_pool
from tests.helpers import TcpProxy, database_target, database_url_via


async def test_attempts_wait_out_a_database_outage(clean_db: AsyncEngine) -> None:
    database_url = clean_db.url.render_as_string(hide_password=False)
    proxy = TcpProxy(*database_target(database_url))
    await proxy.start()
    via = make_url(database_url_via(database_url, proxy.port))
    _, connect = clean_db.dialect.create_connect_args(via)
    pool = await create_pool(connect, 2)
    writer = EventWriter(pool, interval=0.01)
    warnings: list[str] = []
    sink = logger.add(lambda m: warnings.append(m.record["message"]), level="WARNING")
    try:
        await proxy.stop()  # PostgreSQL goes away: its connections drop, new ones are refused
        for reason in ("invalid_signature", "stale_timestamp", "not_json"):
            writer.add(
                EventRecord(
                    "rejected", 401, reason, "203.0.113.9", 1.0, received_at=datetime.now(UTC)
                )
            )
        while not any("not recorded yet" in message for message in warnings):
            await asyncio.sleep(0.01)  # the writer tried, failed and keeps the rows
        await proxy.start()  # back, on the same port
        await writer.aclose()  # what is left is written at shutdown
    finally:
        logger.remove(sink)
        await proxy.stop()
        await pool.close()
    async with clean_db.connect() as connection:
        reasons = (
            await connection.execute(text("SELECT reason FROM integration_events ORDER BY id"))
        ).scalars()
        assert list(reasons) == ["invalid_signature", "stale_timestamp", "not_json"]


async def test_past_max_pending_the_oldest_rows_are_dropped(
    clean_db: AsyncEngine, log_records: list[Any]
) -> None:
    _, connect = clean_db.dialect.create_connect_args(clean_db.url)
    pool = await create_pool(connect, 2)
    writer = EventWriter(pool, interval=10, max_pending=3)
    try:
        for number in range(5):
            writer.add(EventRecord("rejected", 401, f"reason-{number}", "203.0.113.9", 1.0))
        await writer.aclose()
    finally:
        await pool.close()
    async with clean_db.connect() as connection:
        reasons = (
            await connection.execute(text("SELECT reason FROM integration_events ORDER BY id"))
        ).scalars()
        assert list(reasons) == ["reason-2", "reason-3", "reason-4"]
    warnings = [r for r in log_records if r["level"].name == "WARNING"]
    assert len(warnings) == 1 and "dropping the oldest" in warnings[0]["message"]


async def test_addresses_are_stored_as_postgresql_reads_them(clean_db: AsyncEngine) -> None:
    # The webhook's connections send `inet` in binary form, built by our own encoder.
    _, connect = clean_db.dialect.create_connect_args(clean_db.url)
    pool = await create_pool(connect, 1)
    addresses = ["203.0.113.9", "2001:db8::1", "::1", "10.0.0.255"]
    try:
        writer = EventWriter(pool)
        for address in addresses:
            writer.add(EventRecord("rejected", 401, "invalid_signature", address, 1.0))
        await writer.aclose()
        async with pool.acquire() as connection:
            stored = await connection.fetch(
                "SELECT host(client_ip) AS host, masklen(client_ip) AS bits, "
                "client_ip AS value FROM integration_events ORDER BY id"
            )
            network = await connection.fetchval("SELECT '192.0.2.0/24'::inet")
    finally:
        await pool.close()
    assert [row["host"] for row in stored] == addresses
    assert [row["bits"] for row in stored] == [32, 128, 128, 32]
    # Read back as asyncpg's own decoder would: an address, or an interface with a netmask.
    assert [row["value"] for row in stored] == [ipaddress.ip_address(a) for a in addresses]
    assert network == ipaddress.ip_interface("192.0.2.0/24")
