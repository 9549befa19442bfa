"""Helpers shared by the tests: a client with a chosen peer address, signed webhook requests, a
TCP proxy that simulates an outage of whatever it fronts (Redis, PostgreSQL)."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import msgspec
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.engine import make_url

from app.core.security.signatures import sign_hmac
from tests.security.leaks import register


class PeerOverride:
    """Runs the app as if the socket peer were `X-Test-Peer` (the test transport has none)."""

    def __init__(self, app: Litestar) -> None:
        self.app = app

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"x-test-peer":
                    scope = {**scope, "client": (value.decode(), 40000)}
        await self.app(scope, receive, send)


def signed(
    secret: str, payload: Any, *, timestamp: int | None = None, peer: str = "203.0.113.7"
) -> tuple[bytes, dict[str, str]]:
    register(secret)
    body = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    headers = sign_hmac(secret, body, timestamp if timestamp is not None else int(time.time()))
    headers["Content-Type"] = "application/json"
    headers["X-Test-Peer"] = peer
    return body, headers


async def create_integration(
    client: AsyncTestClient[Any], headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/integrations", json={"name": "site", "type": "generic", **fields}, headers=headers
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def database_target(database_url: str) -> tuple[str, int]:
    """Where a proxy in front of the test database connects: its host and port, or, for the
    embedded server (reached over a Unix socket), the socket's path."""
    url = make_url(database_url)
    socket_dir = url.query.get("host")
    port = url.port or 5432
    if url.host is None and isinstance(socket_dir, str):
        return f"{socket_dir}/.s.PGSQL.{port}", 0
    return url.host or "127.0.0.1", port


def database_url_via(database_url: str, port: int) -> str:
    """`database_url`, reaching its server through a proxy on 127.0.0.1:`port`."""
    url = make_url(database_url).difference_update_query(["host"])
    return url.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)


class TcpProxy:
    """A TCP relay to `target_host:target_port` (or to the Unix socket at `target_host` when it
    is a path) that a test stops and starts again on the same port (an outage and a recovery at
    one address), or, with `blackhole`, a server that accepts connections and never answers.
    Stopping drops every relayed connection at once."""

    def __init__(self, target_host: str, target_port: int, *, blackhole: bool = False) -> None:
        self.target = (target_host, target_port)
        self.blackhole = blackhole
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            if self.blackhole:
                while await reader.read(65536):
                    pass
                return
            host, port = self.target
            if host.startswith("/"):  # a Unix socket (the embedded PostgreSQL's)
                up_reader, up_writer = await asyncio.open_unix_connection(host)
            else:
                up_reader, up_writer = await asyncio.open_connection(host, port)
            self._writers.add(up_writer)
            pumps = [
                asyncio.create_task(self._pump(reader, up_writer)),
                asyncio.create_task(self._pump(up_reader, writer)),
            ]
            self._tasks.update(pumps)
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for pump in pumps:
                pump.cancel()
                self._tasks.discard(pump)
            up_writer.transport.abort()
            self._writers.discard(up_writer)
        except (OSError, asyncio.CancelledError):
            pass
        finally:
            writer.transport.abort()
            self._writers.discard(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except OSError:
            pass


class ThreadedTcpProxy:
    """A `TcpProxy` on an event loop of its own thread, driven with plain calls.

    For a proxy in front of an app under `AsyncTestClient`: the client runs the app's lifespan
    from a blocking portal, which would stall a proxy living on the test's own loop.
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self.proxy = TcpProxy(target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.proxy.port

    def start(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.start(), self._loop).result(5)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.proxy.stop(), self._loop).result(5)

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
