"""The pure-Python HTTP/1.1 load generator, run as its own process.

`python -m bench.load URL [--connections N] [--duration S] [--warmup S]` prints one JSON object
(the same shape `bench.harness.run_load` returns for wrk). It exists for machines without wrk.

It is built to cost the server's core as little as possible: one event loop (uvloop when
installed), one `asyncio.Protocol` per keep-alive connection, one request in flight per
connection, the request bytes built once, and responses framed by Content-Length alone. No HTTP
library is involved because on a 2-core machine the client shares the CPU with the server, and
every microsecond it spends parsing is one the server does not get.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import sys
import time
from collections.abc import Sequence
from typing import Any, cast
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"


class ProtocolError(Exception):
    """A response this client cannot frame (it handles Content-Length bodies only)."""


def build_request(url: str) -> tuple[str, int, bytes]:
    """Host, port and the exact bytes of one GET request, as wrk would send them."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only plain http:// URLs are supported: {url}")
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target = f"{target}?{parts.query}"
    request = f"GET {target} HTTP/1.1\r\nHost: {parts.hostname}:{port}\r\n\r\n".encode("ascii")
    return parts.hostname, port, request


def parse_head(head: bytes) -> tuple[int, int]:
    """Status code and body length from a response head (without the blank line)."""
    status = int(head[9:12])
    lowered = head.lower()
    start = lowered.find(_CONTENT_LENGTH)
    if start < 0:
        if _CHUNKED in lowered:
            raise ProtocolError("chunked responses are not supported")
        return status, 0
    start += len(_CONTENT_LENGTH)
    end = lowered.find(b"\r\n", start)
    return status, int(lowered[start:] if end < 0 else lowered[start:end])


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; exact, since every latency is kept."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


class _Run:
    """State shared by every connection; only plain attribute access on the hot path."""

    def __init__(self, host: str, port: int, request: bytes) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.recording = False
        self.stopping = False
        self.latencies_ns: list[int] = []
        self.statuses: dict[int, int] = {}
        self.errors: dict[str, int] = {}
        self.open: set[_Connection] = set()
        # Reconnect tasks, held so the loop cannot collect them mid-flight.
        self.tasks: set[asyncio.Task[None]] = set()

    def reconnect(self) -> None:
        task = asyncio.get_running_loop().create_task(_connect(self))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def error(self, kind: str) -> None:
        if self.recording:
            self.errors[kind] = self.errors.get(kind, 0) + 1


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.body_end = -1
        self.status = 0
        self.sent_at = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.run.open.add(self)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.sent_at = time.perf_counter_ns()
        self.transport.write(self.run.request)

    def data_received(self, data: bytes) -> None:
        run = self.run
        buffer = self.buffer + data if self.buffer else data
        while True:
            if self.body_end < 0:
                head_end = buffer.find(_HEAD_END)
                if head_end < 0:
                    break
                try:
                    self.status, length = parse_head(buffer[:head_end])
                except (ValueError, ProtocolError):
                    run.error("parse")
                    self._abort()
                    return
                self.body_end = head_end + 4 + length
            if len(buffer) < self.body_end:
                break
            elapsed = time.perf_counter_ns() - self.sent_at
            if run.recording:
                run.latencies_ns.append(elapsed)
                run.statuses[self.status] = run.statuses.get(self.status, 0) + 1
            buffer = buffer[self.body_end :]
            self.body_end = -1
            if run.stopping:
                self._abort()
                return
            self.send()
        self.buffer = buffer

    def _abort(self) -> None:
        self.buffer = b""
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.open.discard(self)
        if run.stopping:
            return
        # The server closed a keep-alive connection mid-run: count it and keep the load constant.
        run.error("closed")
        run.reconnect()


async def _connect(run: _Run) -> None:
    try:
        await asyncio.get_running_loop().create_connection(
            lambda: _Connection(run), run.host, run.port
        )
    except OSError:
        run.error("connect")
        if not run.stopping:
            await asyncio.sleep(0.01)
            run.reconnect()


async def generate(url: str, connections: int, duration: float, warmup: float) -> dict[str, Any]:
    host, port, request = build_request(url)
    run = _Run(host, port, request)
    await asyncio.gather(*(_connect(run) for _ in range(connections)))
    await asyncio.sleep(warmup)
    run.recording = True
    started = time.perf_counter()
    await asyncio.sleep(duration)
    run.recording = False
    elapsed = time.perf_counter() - started
    run.stopping = True
    for connection in list(run.open):
        connection._abort()
    await asyncio.sleep(0)
    return summarize(run, elapsed, url, connections, warmup)


def summarize(
    run: _Run, elapsed: float, url: str, connections: int, warmup: float
) -> dict[str, Any]:
    latencies_ms = sorted(ns / 1e6 for ns in run.latencies_ns)
    requests = len(latencies_ms)
    return {
        "tool": "python",
        "url": url,
        "connections": connections,
        "warmup_s": warmup,
        "duration_s": round(elapsed, 3),
        "requests": requests,
        "requests_per_s": round(requests / elapsed, 1) if elapsed > 0 else 0.0,
        "status_counts": {str(code): count for code, count in sorted(run.statuses.items())},
        "errors": dict(sorted(run.errors.items())),
        "latency_ms": {
            "p50": round(percentile(latencies_ms, 0.50), 3),
            "p90": round(percentile(latencies_ms, 0.90), 3),
            "p99": round(percentile(latencies_ms, 0.99), 3),
            "max": round(latencies_ms[-1], 3) if latencies_ms else float("nan"),
        },
    }


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("connections must be >= 1, duration > 0, warmup >= 0")
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        result = runner.run(generate(args.url, args.connections, args.duration, args.warmup))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
