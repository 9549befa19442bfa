"""Run a tiny ASGI handler under uvicorn in a background thread.

Raw ASGI rather than Litestar: a handful of regexes routes both APIs (Google's
``models/x:generateContent`` segments stay literal), every status and byte of the
body is under the stub's control, and there is no framework start-up to wait for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, ClassVar, NamedTuple, Self
from urllib.parse import parse_qsl

import uvicorn

JSON_CONTENT_TYPE = "application/json; charset=UTF-8"


@dataclass(frozen=True, slots=True)
class Request:
    """What a stub handler sees of one HTTP request."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # names lower-cased, duplicates keep the last value
    body: bytes

    def json(self) -> Any:
        """Decode the body; raises ValueError (json.JSONDecodeError) when it is not JSON."""
        return json.loads(self.body or b"null")


@dataclass(slots=True)
class Response:
    """A complete, non-streamed HTTP response."""

    status: int
    body: bytes = b""
    content_type: str = JSON_CONTENT_TYPE
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, data: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, json.dumps(data).encode(), JSON_CONTENT_TYPE, headers or {})

    @classmethod
    def text(cls, status: int, text: str, content_type: str = "text/plain") -> Response:
        return cls(status, text.encode(), content_type)


Handler = Callable[[Request], Awaitable[Response]]


class _AsgiAdapter:
    """Turn a ``Request -> Response`` coroutine into an ASGI HTTP app."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Awaitable[dict[str, Any]]],
        send: Callable[[dict[str, Any]], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            # lifespan is disabled in the config; anything else is unsupported.
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        request = Request(
            method=scope["method"],
            path=scope["path"],
            query=dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"))),
            headers={k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]},
            body=b"".join(chunks),
        )
        response = await self._handler(request)
        raw_headers = [(b"content-type", response.content_type.encode("latin-1"))]
        raw_headers += [
            (k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in response.headers.items()
        ]
        await send(
            {"type": "http.response.start", "status": response.status, "headers": raw_headers}
        )
        await send({"type": "http.response.body", "body": response.body})


class StubServer:
    """Serve ``handler`` on 127.0.0.1 from a daemon thread.

    The listening socket is bound here (port 0 unless given) so the port is known
    before uvicorn starts, and it is reused across ``stop()``/``start()`` so a test
    can simulate an outage and a recovery at the same address.
    """

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._app = _AsgiAdapter(handler)
        self._host = host
        self._port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._lifecycle = threading.Lock()

    @property
    def port(self) -> int:
        if not self._port:
            raise RuntimeError("server was never started, no port bound yet")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, timeout: float = 5.0) -> Self:
        with self._lifecycle:
            if self.running:
                return self
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            # Restarting on the same port must not trip over the previous TIME_WAIT.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self._host, self._port))
                sock.listen(128)
            except OSError:
                sock.close()
                raise
            sock.setblocking(False)
            self._port = sock.getsockname()[1]
            config = uvicorn.Config(
                self._app,
                lifespan="off",
                access_log=False,
                # None keeps uvicorn from calling dictConfig and rewiring the
                # test process's logging (caplog, loguru interception).
                log_config=None,
                log_level="warning",
                timeout_graceful_shutdown=1,
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(
                target=server.run,
                kwargs={"sockets": [sock]},
                name=f"stub-server-{self._port}",
                daemon=True,
            )
            thread.start()
            deadline = time.monotonic() + timeout
            while not server.started:
                if not thread.is_alive():
                    sock.close()
                    raise RuntimeError("stub server thread died during startup")
                if time.monotonic() > deadline:
                    server.should_exit = server.force_exit = True
                    thread.join(1.0)
                    sock.close()
                    raise TimeoutError(f"stub server did not start within {timeout}s")
                time.sleep(0.002)
            self._server, self._thread, self._sock = server, thread, sock
            return self

    def stop(self, timeout: float = 5.0) -> None:
        with self._lifecycle:
            server, thread, sock = self._server, self._thread, self._sock
            self._server = self._thread = self._sock = None
            if server is None or thread is None:
                return
            server.should_exit = True
            thread.join(timeout / 2)
            if thread.is_alive():
                # A handler is parked (slow mode); skip the graceful wait so
                # asyncio.run() cancels it on the way out.
                server.force_exit = True
                thread.join(timeout / 2)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.close()
            if thread.is_alive():
                raise TimeoutError("stub server thread did not stop")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RecordedRequest(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]
    body: Any  # decoded JSON, or None for empty / non-JSON bodies


class ControlledStub(StubServer):
    """Recording and failure injection shared by the stubs.

    Everything here is called from the test thread while the server thread
    serves, hence one lock around all mutable state.
    """

    MODES: ClassVar[tuple[str, ...]] = ("ok", "500", "503", "slow")
    FAIL_STATUSES: ClassVar[frozenset[int]] = frozenset({500, 503})

    DEFAULT_SLOW_SECONDS: ClassVar[float] = 2.0

    def __init__(self, *, port: int = 0) -> None:
        super().__init__(self._handle, port=port)
        self.slow_seconds = self.DEFAULT_SLOW_SECONDS
        # A Condition doubles as the state lock and lets waiters sleep until a record lands.
        self._cond = threading.Condition()
        self._mode = "ok"
        self._failures: deque[int] = deque()
        self._requests: list[RecordedRequest] = []
        self._calls: Counter[str] = Counter()

    async def _handle(self, request: Request) -> Response:
        raise NotImplementedError

    @property
    def mode(self) -> str:
        with self._cond:
            return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        if value not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {value!r}")
        with self._cond:
            self._mode = value

    def fail_next(self, n: int, status: int = 503) -> None:
        """Fail the next ``n`` failure-eligible calls with ``status``, then recover."""
        if status not in self.FAIL_STATUSES:
            raise ValueError(f"status must be one of {sorted(self.FAIL_STATUSES)}")
        with self._cond:
            self._failures.extend([status] * n)

    def reset(self) -> None:
        """Back to defaults and empty records, for sharing one stub across tests."""
        with self._cond:
            self._mode = "ok"
            self._failures.clear()
            self._requests.clear()
            self._calls.clear()
            self.slow_seconds = self.DEFAULT_SLOW_SECONDS
            self._reset_locked()

    def _reset_locked(self) -> None:
        """Hook for subclass state; runs with the lock held."""

    @property
    def requests(self) -> list[RecordedRequest]:
        """Snapshot of every request received, in arrival order."""
        with self._cond:
            return list(self._requests)

    def calls(self, kind: str | None = None) -> int:
        """Requests that reached endpoint ``kind`` (failed ones included); None counts all."""
        with self._cond:
            return self._calls.total() if kind is None else self._calls[kind]

    def _record(self, request: Request, kind: str | None) -> Any:
        """Log the request and return its decoded JSON body (None when not JSON)."""
        try:
            body = request.json()
        except ValueError:
            body = None
        with self._cond:
            self._requests.append(
                RecordedRequest(request.method, request.path, dict(request.headers), body)
            )
            if kind:
                self._calls[kind] += 1
        return body

    async def _injected_failure(self) -> int | None:
        """Status to fail this call with, after sleeping first when in slow mode."""
        with self._cond:
            if self._failures:
                return self._failures.popleft()
            mode = self._mode
        if mode == "slow":
            await self._slow_sleep()
            return None
        return int(mode) if mode.isdigit() else None

    async def _slow_sleep(self) -> None:
        # Short slices so setting mode back to "ok" (or reset()) releases parked
        # requests instead of leaving them to the shutdown timeout.
        deadline = time.monotonic() + self.slow_seconds
        while self.mode == "slow":
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))
