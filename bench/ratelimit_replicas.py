"""One integration quota shared by two replicas: `botlyne serve` twice on one PostgreSQL and Redis.

`python -m bench.ratelimit_replicas [--burst 200] [--steady-seconds 60] [--rate 4]`

Two servers (`botlyne serve`, one worker each, `RUN_WORKERS=false`, the same `DATABASE_URL` = a
fresh database and the same `REDIS_URL`) and one `generic` integration limited to 60 requests
per minute. Every request is a distinct, correctly signed delivery (its own `message_id`, a fresh
timestamp), sent alternately to one server and the other.

burst
    `--burst` requests (200) as fast as possible, 16 in flight per server, against a fresh
    integration. A quota shared through Redis admits exactly its burst, 60 (plus at most one per
    second the burst lasts, GCRA's refill), so 60 +/- 2; two per-process limits would admit 120.

steady
    Against another fresh integration, `--rate` requests per second per server (4, so 8/s in
    total and 480 attempts over `--steady-seconds` 60). What "60 per minute" admits then follows
    from GCRA with a burst equal to the quota: the 60 of the burst at once, then one every
    second (emission interval 60 s / 60), so about 60 + 60 = 120 in the first minute from empty
    (~119: the last refill lands as the minute ends), and 60 in every later minute. Per-process
    limits would admit about twice that, ~240. The figure to compare with the issue's "60 +/- 2
    in a minute, not 120" is the burst's; the steady count checks the refill.

Each phase also counts the `integration_events` rows by outcome (every 202 stored once, every
429 recorded as `rate_limited`) and reads both servers' logs for a switch of the limiter to its
in-process fallback, which would make limits per process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shlex
import sys
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from typing import Any

from bench import harness
from bench.webhook import ADMIN_KEY, DEFAULT_REDIS_URL, WEBHOOK_PATH, http_request, sql
from bench.webhook_requests import accepted

QUOTA = 60
IN_FLIGHT_PER_SERVER = 16


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.ratelimit_replicas", description=__doc__)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--steady-seconds", type=float, default=60.0, help="0 skips the phase")
    parser.add_argument("--rate", type=float, default=4.0, help="steady requests/s per server")
    parser.add_argument(
        "--no-cold",
        dest="cold",
        action="store_false",
        help="skip the burst sent right after the servers start (before any warm-up)",
    )
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args(argv)


def create_integration(server: harness.ServerProcess, secret: str, name: str) -> str:
    payload = {"name": name, "type": "generic", "rate_limit_per_minute": QUOTA, "secret": secret}
    status, body = http_request(
        server.url("/api/v1/integrations"),
        "POST",
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    if status != 201:
        raise harness.ServerError(f"creating the integration: {status} {body!r}")
    return str(json.loads(body)["id"])


async def _send(host: str, port: int, raw: bytes) -> int:
    """One request on a fresh connection; its status (0 when the connection failed)."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 10)
    except (OSError, TimeoutError):
        return 0
    try:
        writer.write(raw.replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n", 1))
        await writer.drain()
        response = await asyncio.wait_for(reader.read(), 10)
        return int(response[9:12]) if response.startswith(b"HTTP/1.1 ") else 0
    except (OSError, TimeoutError, ValueError):
        return 0
    finally:
        writer.close()


class Deliveries:
    """Distinct signed deliveries for one integration, per server."""

    def __init__(self, servers: Sequence[harness.ServerProcess], integration: str, secret: str):
        arg = json.dumps({"secret": secret, "token": "replicas"})
        path = WEBHOOK_PATH.format(id=integration)
        self.targets = [(server.host, server.port) for server in servers]
        self.next = [accepted(server.url(path), arg)(index) for index, server in enumerate(servers)]

    def request(self, number: int) -> tuple[str, int, bytes, int]:
        side = number % len(self.targets)
        host, port = self.targets[side]
        return host, port, self.next[side](), side


async def burst(deliveries: Deliveries, count: int) -> dict[str, Any]:
    limit = asyncio.Semaphore(IN_FLIGHT_PER_SERVER * len(deliveries.targets))
    statuses: list[Counter[int]] = [Counter() for _ in deliveries.targets]

    async def one(number: int) -> None:
        host, port, raw, side = deliveries.request(number)
        async with limit:
            statuses[side][await _send(host, port, raw)] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(number) for number in range(count)))
    return _tally(statuses, time.perf_counter() - started)


async def steady(deliveries: Deliveries, rate_per_server: float, seconds: float) -> dict[str, Any]:
    servers = len(deliveries.targets)
    interval = 1.0 / (rate_per_server * servers)
    count = round(seconds / interval)
    statuses: list[Counter[int]] = [Counter() for _ in deliveries.targets]
    accepted_at: list[float] = []
    started = time.perf_counter()

    async def one(number: int) -> None:
        await asyncio.sleep(max(0.0, started + number * interval - time.perf_counter()))
        host, port, raw, side = deliveries.request(number)
        status = await _send(host, port, raw)
        statuses[side][status] += 1
        if status == 202:
            accepted_at.append(round(time.perf_counter() - started, 3))

    await asyncio.gather(*(one(number) for number in range(count)))
    result = _tally(statuses, time.perf_counter() - started)
    accepted_at.sort()
    result["accepted_in_first_10_s"] = sum(1 for moment in accepted_at if moment < 10)
    result["accepted_after_10_s_per_s"] = round(
        sum(1 for moment in accepted_at if moment >= 10) / max(seconds - 10, 1e-9), 3
    )
    return result


def _tally(statuses: list[Counter[int]], seconds: float) -> dict[str, Any]:
    total: Counter[int] = Counter()
    for counter in statuses:
        total.update(counter)
    return {
        "attempts": sum(total.values()),
        "seconds": round(seconds, 3),
        "accepted": total[202],
        "rate_limited": total[429],
        "other": {str(code): n for code, n in total.items() if code not in (202, 429)},
        "per_server": [
            {str(code): n for code, n in sorted(counter.items())} for counter in statuses
        ],
    }


def events(database_url: str, integration: str) -> dict[str, int]:
    uuid.UUID(integration)  # only a UUID goes into the statement
    rows = sql(
        database_url,
        "SELECT outcome || ':' || reason AS k, count(*) AS n FROM integration_events "  # noqa: S608
        f"WHERE integration_id = '{integration}' GROUP BY 1 ORDER BY 1",
    )
    return {row["k"]: row["n"] for row in rows}


class LimiterLog:
    """The rate limiter's mode switches each server logged since the last `take()`."""

    def __init__(self, servers: Sequence[harness.ServerProcess]) -> None:
        self.servers = servers
        self.seen = [0 for _ in servers]

    def take(self) -> list[list[str]]:
        lines = []
        for index, server in enumerate(self.servers):
            records = server.log_records()
            lines.append(
                [
                    record.get("message", "")
                    for record in records[self.seen[index] :]
                    if record.get("message", "").startswith("rate limiter")
                ]
            )
            self.seen[index] = len(records)
        return lines


def warm_up(servers: Sequence[harness.ServerProcess], secret: str, first: Any) -> None:
    """Open each server's Redis connections and load the script, then let any server that fell
    back to in-process limits meanwhile probe Redis again (every 5 s) and switch back."""
    integration = create_integration(first, secret, "warm-up")
    deliveries = Deliveries(servers, integration, secret)
    for number in range(4):
        asyncio.run(_send(*deliveries.request(number)[:3]))
    asyncio.run(burst(deliveries, 16 * len(servers)))
    time.sleep(6)
    for number in range(4):
        asyncio.run(_send(*deliveries.request(number)[:3]))


def run_burst(
    servers: Sequence[harness.ServerProcess],
    first: harness.ServerProcess,
    secret: str,
    database_url: str,
    count: int,
    name: str,
    log: LimiterLog,
) -> dict[str, Any]:
    integration = create_integration(first, secret, name)
    log.take()
    result = asyncio.run(burst(Deliveries(servers, integration, secret), count))
    result["events"] = events(database_url, integration)
    result["expected"] = f"{QUOTA} +/- 2 (per-process limits would give {2 * QUOTA})"
    result["within_60_pm_2"] = abs(result["accepted"] - QUOTA) <= 2
    result["limiter_log"] = log.take()
    harness.progress(f"{name}: {json.dumps(result)}")
    return result


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.exit_on_sigterm()
    command = shlex.join(
        [sys.executable, "-m", "bench.ratelimit_replicas", *(argv or sys.argv[1:])]
    )
    machine = harness.machine_info()
    env = {
        "REDIS_URL": args.redis_url,
        "RUN_WORKERS": "false",
        "BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
        "ENABLE_STRUCTURED_LOGGING": "true",
        "LOG_LEVEL": "INFO",
    }
    phases: dict[str, Any] = {}
    with (
        harness.scratch_dir("botlyne-bench-replicas-") as workdir,
        harness.fresh_database(args.admin_database_url, prefix="bench_replicas") as database_url,
    ):
        first = harness.botlyne_server({**env, "DATABASE_URL": database_url}, workdir=workdir / "a")
        # The second starts once the first has migrated the database, as a rolling deploy does.
        second = harness.botlyne_server(
            {**env, "DATABASE_URL": database_url}, workdir=workdir / "b"
        )
        with first, second:
            servers = [first, second]
            log = LimiterLog(servers)
            harness.progress(f"servers on ports {first.port} and {second.port}")
            secret = "bench-" + secrets.token_hex(16)
            if args.cold:
                phases["cold_burst"] = run_burst(
                    servers, first, secret, database_url, args.burst, "cold_burst", log
                )
            warm_up(servers, secret, first)
            phases["warm_up_limiter_log"] = log.take()
            phases["burst"] = run_burst(
                servers, first, secret, database_url, args.burst, "burst", log
            )
            if args.steady_seconds > 0:
                time.sleep(6)  # a server that fell back during the burst probes Redis again
                log.take()
                integration = create_integration(first, secret, "steady")
                harness.progress(
                    f"steady: {args.rate}/s per server for {args.steady_seconds:.0f} s"
                )
                result = asyncio.run(
                    steady(Deliveries(servers, integration, secret), args.rate, args.steady_seconds)
                )
                result["events"] = events(database_url, integration)
                expected = QUOTA + args.steady_seconds * QUOTA / 60
                result["expected"] = (
                    f"~{expected - 1:.0f}: burst {QUOTA} + refill 1/s over "
                    f"{args.steady_seconds:.0f} s (per-process limits: ~{2 * (expected - 1):.0f})"
                )
                result["limiter_log"] = log.take()
                phases["steady"] = result
                harness.progress(f"steady: {json.dumps(result)}")
    summary: dict[str, Any] = {
        "burst_accepted": phases["burst"]["accepted"],
        "burst_goal": "60 +/- 2",
        "burst_meets_goal": phases["burst"]["within_60_pm_2"],
        "steady_accepted": phases.get("steady", {}).get("accepted"),
        "steady_expected": phases.get("steady", {}).get("expected"),
    }
    if "cold_burst" in phases:
        summary["cold_burst_accepted"] = phases["cold_burst"]["accepted"]
        summary["cold_burst_meets_goal"] = phases["cold_burst"]["within_60_pm_2"]
    payload = {
        "benchmark": "ratelimit_replicas",
        "command": command,
        "machine": machine,
        "config": {
            "servers": 2,
            "botlyne_env": env,
            "rate_limit_per_minute": QUOTA,
            "burst_requests": args.burst,
            "burst_in_flight_per_server": IN_FLIGHT_PER_SERVER,
            "steady_rate_per_server": args.rate,
            "steady_seconds": args.steady_seconds,
        },
        "phases": phases,
        "summary": summary,
    }
    harness.write_results("ratelimit_replicas", payload)
    harness.progress(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
