"""A real HTTP server for tests that need one (streams, browsers) and a small SSE client.

`LiveServer` runs an application under uvicorn in a background thread with its own event loop
(its lifespan included), on a free port of 127.0.0.1. `SseClient` reads a Server-Sent Events
stream over httpx, in a task, into a list the test can wait on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import httpx
import uvicorn


class LiveServer:
    def __init__(self, app: Any) -> None:
        self.app = app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app,
            lifespan="on",
            access_log=False,
            log_config=None,
            log_level="warning",
            timeout_graceful_shutdown=2,
        )
        self._server = server = uvicorn.Server(config)
        self._thread = thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="live-server", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the live server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(10)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class SseClient:
    """Reads one event stream; `events` holds each event's decoded JSON data, in order."""

    def __init__(
        self, url: str, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
    ) -> None:
        self.url = url
        self.headers = headers or {}
        self.params = params or {}
        self.events: list[dict[str, Any]] = []
        self.comments: list[str] = []
        self.status_code: int | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=None))

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._read())
        await self.wait_for(lambda e: e["type"] == "stream.open", within=10)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Drop the connection, as a closed browser tab does."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        await self._client.aclose()

    async def _read(self) -> None:
        async with self._client.stream(
            "GET", self.url, headers=self.headers, params=self.params
        ) as response:
            self.status_code = response.status_code
            if response.status_code != 200:
                self._changed.set()
                return
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    self._changed.set()
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif line == "" and data:
                    self.events.append(json.loads("\n".join(data)))
                    data = []
                    self._changed.set()

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event["type"] == kind]

    async def wait_for(self, check: Any, within: float = 5.0) -> dict[str, Any]:
        """The first event for which `check(event)` holds, waiting up to `within` seconds."""
        deadline = time.monotonic() + within
        while True:
            for event in self.events:
                if check(event):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or (self._task is not None and self._task.done()):
                raise AssertionError(
                    f"no matching event within {within} s; got {[e['type'] for e in self.events]}"
                    f" (status {self.status_code})"
                )
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)
