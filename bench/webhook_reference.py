"""Yardsticks for the webhook benchmark (`bench.webhook`), run under `bench.serve_asgi`.

`accept_app`: a minimal raw ASGI endpoint doing per request what any signed-webhook receiver
must do at least: read the body, check an HMAC-SHA256 signature (`X-Timestamp` within 300 s,
`X-Signature` over `<ts>.<body>`, constant-time compare), one Redis call (`INCR` of a per-
integration counter), and one raw asyncpg `INSERT ... RETURNING id` of one row, then a 202 with
`{"status":"accepted","event_id":...}`. No framework, no ORM, no logging. Its pools mirror
Botlyne's defaults: asyncpg 32 connections plus 32 on demand (SQLAlchemy's `pool_size` and
`max_overflow`, `DATABASE_POOL_SIZE` 32), Redis a blocking pool of 64 with 100 ms timeouts
(`app.core.redis`).
Configured by `BENCH_DATABASE_URL` (libpq form), `BENCH_REDIS_URL`, `BENCH_WEBHOOK_SECRET`;
the table `bench_reference_events` must exist (see `CREATE_TABLE`).

`reject_app`: a bare Litestar app whose webhook route answers 401 with the body Botlyne sends
for `invalid_signature`, without reading the request.

Both serve `GET /health/live` for the harness's readiness poll.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import time
from typing import Any

from litestar import Litestar, Response, get, post

PATH_PREFIX = b"/api/v1/integrations/webhook/"
TOLERANCE_SECONDS = 300
CREATE_TABLE = (
    "CREATE TABLE IF NOT EXISTS bench_reference_events ("
    "id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
    "received_at timestamptz NOT NULL DEFAULT now(), "
    "integration_id text NOT NULL, delivery_key text NOT NULL)"
)
_INSERT = (
    "INSERT INTO bench_reference_events (integration_id, delivery_key) VALUES ($1, $2) RETURNING id"
)
_HEX64 = re.compile(rb"[0-9a-fA-F]{64}")
_LIVE = b'{"status":"ok"}'
REJECTED_BODY = {
    "status_code": 401,
    "detail": "invalid_signature",
    "extra": {"reason": "invalid_signature"},
}


class AcceptApp:
    def __init__(self) -> None:
        self.pool: Any = None
        self.redis: Any = None
        self.key = os.environ.get("BENCH_WEBHOOK_SECRET", "").encode()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if scope["method"] == "GET" and path == "/health/live":
            await respond(send, 200, _LIVE)
            return
        if scope["method"] != "POST" or not path.encode().startswith(PATH_PREFIX):
            await respond(send, 404, b'{"detail":"not found"}')
            return
        body = await read_body(receive)
        headers = dict(scope["headers"])
        timestamp = headers.get(b"x-timestamp", b"")
        signature = headers.get(b"x-signature", b"").removeprefix(b"sha256=")
        if not (
            timestamp.isdigit()
            and abs(time.time() - int(timestamp)) <= TOLERANCE_SECONDS
            and _HEX64.fullmatch(signature)
        ):
            await respond(send, 401, b'{"detail":"bad signature"}')
            return
        expected = hmac.new(self.key, timestamp + b"." + body, hashlib.sha256).digest()
        if not hmac.compare_digest(expected, bytes.fromhex(signature.decode())):
            await respond(send, 401, b'{"detail":"bad signature"}')
            return
        integration_id = path[len(PATH_PREFIX) :]
        await self.redis.incr(f"bench:reference:{integration_id}")
        event_id = await self.pool.fetchval(_INSERT, integration_id, expected.hex())
        await respond(send, 202, b'{"status":"accepted","event_id":"%d"}' % event_id)

    async def lifespan(self, receive: Any, send: Any) -> None:
        import asyncpg
        from redis.asyncio import BlockingConnectionPool, Redis

        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.pool = await asyncpg.create_pool(
                    os.environ["BENCH_DATABASE_URL"], min_size=32, max_size=64
                )
                pool = BlockingConnectionPool.from_url(
                    os.environ["BENCH_REDIS_URL"],
                    max_connections=64,
                    timeout=0.1,
                    socket_timeout=0.1,
                    socket_connect_timeout=0.1,
                )
                self.redis = Redis(connection_pool=pool, retry_on_timeout=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.pool.close()
                await self.redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def read_body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


accept_app = AcceptApp()


@get("/health/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@post("/api/v1/integrations/webhook/{integration_id:str}", status_code=401)
async def reject(integration_id: str) -> Response[dict[str, Any]]:
    return Response(REJECTED_BODY, status_code=401)


reject_app = Litestar(route_handlers=[live, reject])

# The exact bytes Botlyne answers for `invalid_signature`, for the benchmark's sanity check.
REJECTED_JSON = json.dumps(REJECTED_BODY, separators=(",", ":")).encode()
