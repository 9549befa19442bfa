"""The pure-Python HTTP/1.1 load generator, run as its own process.

`python -m bench.load URL [--connections N] [--duration S] [--warmup S]` prints one JSON object
(the same shape `bench.harness.run_load` returns for wrk). It exists for machines without wrk.

It is built to cost the server's core as little as possible: one event loop (uvloop when
installed), one `asyncio.Protocol` per keep-alive connection, one request in flight per
connection, the request bytes built once, and responses framed by Content-Length alone. No HTTP
library is involved because on a 2-core machine the client shares the CPU with the server, and
every microsecond it spends parsing is one the server does not get.

Two additions for benchmarks that need them (the defaults keep the behaviour above):

`--requests MODULE:ATTR [--requests-arg TEXT]`
    Requests that change from one to the next (signed webhook deliveries, distinct ids).
    `ATTR(url, arg)` returns `for_connection(index) -> next_request() -> bytes`; every
    connection (a reconnect included) gets its own never-reused `index` and asks its
    `next_request()` for the exact bytes of each request it sends.

`--rate R`
    Open loop: requests are due at a fixed rate (R per second, from the start) whatever the
    server does, each sent on an idle connection or, when none is idle, as soon as one frees
    up. Latency is measured from the moment a request was due, not from when it could be sent
    (as wrk2 does), so a server that falls behind shows its queueing instead of hiding it
    ("coordinated omission"). The result adds the target and achieved rates and the backlog.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import importlib
import itertools
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, cast
from urllib.parse import urlsplit

_HEAD_END = b"\r\n\r\n"
_CONTENT_LENGTH = b"\r\ncontent-length:"
_CHUNKED = b"\r\ntransfer-encoding: chunked"


# `for_connection(index) -> next_request() -> bytes`, built by a `--requests` factory.
RequestSource = Callable[[int], Callable[[], bytes]]


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


def load_request_source(spec: str, url: str, arg: str | None = None) -> RequestSource:
    """The `--requests MODULE:ATTR` factory called with the target URL and `--requests-arg`."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"--requests must be MODULE:ATTR, not {spec!r}")
    factory = getattr(importlib.import_module(module_name), attr)
    source: RequestSource = factory(url, arg)
    return source


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; exact, since every latency is kept."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), math.ceil(fraction * len(sorted_values))))
    return sorted_values[rank - 1]


class _Run:
    """State shared by every connection; only plain attribute access on the hot path."""

    def __init__(
        self,
        host: str,
        port: int,
        request: bytes,
        source: RequestSource | None = None,
        rate: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.source = source
        self.connection_numbers = itertools.count()
        # Open loop (`rate` set): idle connections, and the due times (ns) of requests that
        # found none idle.
        self.rate = rate
        # First in, first out: every connection keeps being used, so none sits idle long
        # enough for the server's keep-alive timeout to close it.
        self.idle: collections.deque[_Connection] = collections.deque()
        self.idle_closed = 0
        self.backlog: collections.deque[int] = collections.deque()
        self.max_backlog = 0
        self.issued = 0
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

    def ready(self, connection: _Connection) -> None:
        """Open loop: a connection with nothing in flight takes the oldest due request."""
        if self.backlog:
            connection.send(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def issue(self, due_ns: int) -> None:
        """Open loop: a request is due now; send it, or queue it until a connection frees up."""
        self.issued += 1
        if self.idle:
            self.idle.popleft().send(due_ns)
        else:
            self.backlog.append(due_ns)
            if self.recording and len(self.backlog) > self.max_backlog:
                self.max_backlog = len(self.backlog)


class _Connection(asyncio.Protocol):
    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.body_end = -1
        self.status = 0
        self.sent_at = 0
        self.next_request = (
            run.source(next(run.connection_numbers)) if run.source is not None else None
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport.
        self.transport = cast(asyncio.Transport, transport)
        self.run.open.add(self)
        if self.run.rate is None:
            self.send()
        else:
            self.run.ready(self)

    def send(self, due_ns: int | None = None) -> None:
        """Send the next request; its latency counts from `due_ns` when given (open loop)."""
        assert self.transport is not None
        request = self.run.request if self.next_request is None else self.next_request()
        self.sent_at = time.perf_counter_ns() if due_ns is None else due_ns
        self.transport.write(request)

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
            if run.rate is None:
                self.send()
            else:
                run.ready(self)
        self.buffer = buffer

    def _abort(self) -> None:
        self.buffer = b""
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        run = self.run
        run.open.discard(self)
        idle = self in run.idle
        if idle:
            run.idle.remove(self)
        if run.stopping:
            return
        if idle:
            # Open loop: the server closed a connection with nothing in flight (keep-alive
            # timeout); no request failed. Noted, and replaced.
            run.idle_closed += 1
        else:
            # The server closed a keep-alive connection mid-run: count it, keep the load constant.
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


async def _pace(run: _Run, rate: float) -> None:
    """Open loop: make requests due at `rate` per second from now until the run stops."""
    interval_ns = 1e9 / rate
    start = time.perf_counter_ns()
    issued = 0
    while not run.stopping:
        due_count = int((time.perf_counter_ns() - start) / interval_ns) + 1
        while issued < due_count:
            run.issue(start + int(issued * interval_ns))
            issued += 1
        # The loop's timers have millisecond resolution: a request goes out at most ~1 ms late,
        # and that lateness counts in its latency.
        await asyncio.sleep(min(interval_ns / 1e9, 0.001))


async def generate(
    url: str,
    connections: int,
    duration: float,
    warmup: float,
    *,
    source: RequestSource | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    host, port, request = build_request(url)
    run = _Run(host, port, request, source=source, rate=rate)
    await asyncio.gather(*(_connect(run) for _ in range(connections)))
    pacer = asyncio.get_running_loop().create_task(_pace(run, rate)) if rate else None
    await asyncio.sleep(warmup)
    run.recording = True
    issued_before = run.issued
    started = time.perf_counter()
    await asyncio.sleep(duration)
    run.recording = False
    elapsed = time.perf_counter() - started
    issued = run.issued - issued_before
    backlog_at_end = len(run.backlog)
    run.stopping = True
    if pacer is not None:
        await pacer
    for connection in list(run.open):
        connection._abort()
    await asyncio.sleep(0)
    result = summarize(run, elapsed, url, connections, warmup)
    if rate:
        result["open_loop"] = {
            "target_rate_per_s": rate,
            "issued_per_s": round(issued / elapsed, 1) if elapsed > 0 else 0.0,
            "max_backlog": run.max_backlog,
            "backlog_at_end": backlog_at_end,
            "idle_connections_closed_by_server": run.idle_closed,
            "latency_from": "due time",
        }
    return result


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
    parser.add_argument("--requests", help="MODULE:ATTR building each request (see above)")
    parser.add_argument("--requests-arg", help="text handed to the --requests factory")
    parser.add_argument("--rate", type=float, help="open loop: requests per second")
    args = parser.parse_args(argv)
    if args.connections < 1 or args.duration <= 0 or args.warmup < 0:
        parser.error("connections must be >= 1, duration > 0, warmup >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    source = (
        load_request_source(args.requests, args.url, args.requests_arg) if args.requests else None
    )
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        result = runner.run(
            generate(
                args.url,
                args.connections,
                args.duration,
                args.warmup,
                source=source,
                rate=args.rate,
            )
        )
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
