"""Two `botlyne serve` processes on one PostgreSQL and one Redis share an integration's quota.

Real servers, as users run them (the console script, from another working directory), so the
limiter state can only meet in Redis. The figure checked is a count, not a time: a quota of 60
per minute admits its burst of 60 however the requests are spread over the replicas, plus GCRA's
refill of one per second for as long as the burst lasts; per-process limits would admit 120. The
first burst hits the replicas cold (their first deliveries), the second after a warm-up.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import IO

import httpx
import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_sessionmaker
from app.core.security.signatures import sign_hmac
from app.domain.orgs.service import create_organization

BOTLYNE = str(Path(sys.executable).with_name("botlyne"))
QUOTA = 60
BURST = 200


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Replica:
    def __init__(self, cwd: Path, database_url: str, redis_url: str) -> None:
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = cwd / f"botlyne-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        env.update(
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            AUTO_MIGRATE="false",  # the database_url fixture has migrated it
            RUN_WORKERS="false",
            ENABLE_STRUCTURED_LOGGING="true",
            LOG_LEVEL="INFO",
        )
        self.log: IO[bytes] = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [BOTLYNE, "serve", "--port", str(self.port)],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    async def wait_ready(self, client: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text(errors="replace")[-3000:]
            try:
                if (await client.get(f"{self.base}/health/ready", timeout=1)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
        raise AssertionError(f"replica on {self.port} did not become ready")

    def limiter_lines(self) -> list[str]:
        lines = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if line.startswith("{"):
                message = json.loads(line).get("message", "")
                if message.startswith("rate limiter"):
                    lines.append(message)
        return lines

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


async def test_two_replicas_share_one_quota(
    tmp_path: Path, database_url: str, redis_url: str, clean_db: AsyncEngine
) -> None:
    async with create_sessionmaker(clean_db).begin() as session:
        _, admin_key = await create_organization(session, f"replicas-{uuid.uuid4().hex[:8]}")
    admin = {"Authorization": f"Bearer {admin_key}"}
    replicas = [Replica(tmp_path, database_url, redis_url) for _ in range(2)]
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(*(replica.wait_ready(client) for replica in replicas))

            async def integration(name: str) -> tuple[str, str]:
                response = await client.post(
                    f"{replicas[0].base}/api/v1/integrations",
                    json={"name": name, "type": "generic", "rate_limit_per_minute": QUOTA},
                    headers=admin,
                )
                assert response.status_code == 201, response.text
                created = response.json()
                return created["id"], created["secret"]

            async def deliver(number: int, integration_id: str, secret: str) -> int:
                body = msgspec.json.encode(
                    {
                        "message": {"body": f"message {number}"},
                        "sender": {"id": f"user-{number % 7}"},
                        "message_id": f"{integration_id}-{number}",
                    }
                )
                headers = sign_hmac(secret, body, int(time.time()))
                headers["Content-Type"] = "application/json"
                replica = replicas[number % 2]
                response = await client.post(
                    f"{replica.base}/api/v1/integrations/webhook/{integration_id}",
                    content=body,
                    headers=headers,
                )
                return response.status_code

            limit = asyncio.Semaphore(16)

            async def burst(integration_id: str, secret: str) -> tuple[list[int], float]:
                async def limited(number: int) -> int:
                    async with limit:
                        return await deliver(number, integration_id, secret)

                started = time.monotonic()
                statuses = await asyncio.gather(*(limited(number) for number in range(BURST)))
                return statuses, time.monotonic() - started

            # Cold: the first deliveries these processes ever serve. Their start-up opened the
            # Redis connections and loaded the script, and a slow first answer is tried again,
            # so neither replica falls back to limits of its own.
            cold = await burst(*await integration("cold"))
            cold_switches = [replica.limiter_lines() for replica in replicas]

            # Warm both replicas up (connections to PostgreSQL and Redis, first-request work) as
            # a running service is.
            warm_id, warm_secret = await integration("warm-up")
            for number in range(4):
                assert await deliver(number, warm_id, warm_secret) == 202
            await asyncio.gather(*(deliver(n, warm_id, warm_secret) for n in range(4, 36)))
            logged_before = [len(replica.limiter_lines()) for replica in replicas]

            integration_id, secret = await integration("burst")
            statuses, elapsed = await burst(integration_id, secret)
    finally:
        for replica in replicas:
            replica.stop()

    switches = [
        replica.limiter_lines()[before:]
        for replica, before in zip(replicas, logged_before, strict=True)
    ]
    assert cold_switches == [[], []], cold_switches
    check_burst(*cold, cold_switches)
    accepted = check_burst(statuses, elapsed, switches)
    async with clean_db.connect() as connection:
        stored = (
            await connection.execute(
                text(
                    "SELECT count(*) FILTER (WHERE outcome = 'accepted'), "
                    "count(*) FILTER (WHERE reason = 'rate_limited') "
                    "FROM integration_events WHERE integration_id = :id"
                ),
                {"id": integration_id},
            )
        ).one()
    assert tuple(stored) == (accepted, BURST - accepted)


def check_burst(statuses: list[int], elapsed: float, switches: object) -> int:
    """The burst's accepted count, checked against the one shared quota."""
    accepted = statuses.count(202)
    assert statuses.count(202) + statuses.count(429) == BURST, statuses
    # Each replica took part: the quota is not simply the busier replica's own.
    assert {statuses[n] for n in range(0, BURST, 2)} == {202, 429}
    assert {statuses[n] for n in range(1, BURST, 2)} == {202, 429}
    refill = int(elapsed) + 1  # GCRA gives one request back per second (60 s / 60)
    assert QUOTA <= accepted <= QUOTA + refill, (accepted, elapsed, switches)
    return accepted
