"""The signed webhook under load: Botlyne against minimal references, in one run.

`python -m bench.webhook [--rounds 3] [--duration 10] [--warmup 2] [--connections 32]`

Three servers are started and stay up for the whole run:

- Botlyne as users start it: `botlyne serve` (one worker) with `DATABASE_URL` = a fresh database
  of the local PostgreSQL (migrated at start), `REDIS_URL`, `RUN_WORKERS=false` (the bot's
  workers would otherwise answer every accepted message and compete for the same cores),
  `WEBHOOK_FAILED_ATTEMPTS_PER_MINUTE=10000000` (the per-IP limit on failed signatures would
  otherwise turn the rejected phase into 429s after 20 requests), structured INFO logging. One
  `generic` integration with its own secret and quotas of 1,000,000 per minute and per hour, made
  through the API with the bootstrap admin key.
- `bench.webhook_reference:accept_app`: a raw ASGI endpoint that checks the HMAC, makes one Redis
  call and one asyncpg INSERT per request (same database, same Redis, same uvicorn options).
- `bench.webhook_reference:reject_app`: a bare Litestar route answering 401.

Phases, each alternating Botlyne and its reference for `--rounds` rounds of `--warmup` +
`--duration` seconds at `--connections` keep-alive connections (`bench.load`, closed loop):

1. accepted: distinct signed deliveries (`bench.webhook_requests.accepted`: one sender per
   connection, a new `message_id` per request, signed on the fly with a fresh timestamp). Every
   answer other than 202 counts as an error. Goal: Botlyne >= 0.5 x the reference's requests/s.
2. rejected: the same bodies with a well-formed wrong `X-Signature` and a fresh timestamp, against
   the bare 401 route. Goal: >= 0.8 x.
3. latency: open loop (`bench.load --rate`) at half of Botlyne's median accepted peak from phase
   1, same connections, latency counted from each request's due time; the reference runs at the
   same rate for comparison. Goal: Botlyne's p99 <= 25 ms (median over the rounds).

Afterwards the benchmark counts the database's `integration_events` by outcome: every accepted
delivery must be there once and no `duplicate` may appear.

CPU: the servers are pinned to one CPU and the load generator to the other (`--no-pin`);
PostgreSQL and Redis are shared services and float. Each run records the cores used by the
server, the client, PostgreSQL (the whole cluster on 5432), Redis and everything else; a run in
which everything else used more than `--busy-threshold` cores is repeated (`--retries`).
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import secrets
import shlex
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from bench import harness

GOAL_ACCEPTED_RATIO = 0.5
GOAL_REJECTED_RATIO = 0.8
GOAL_P99_MS = 25.0
WEBHOOK_PATH = "/api/v1/integrations/webhook/{id}"
ADMIN_KEY = "bl_bench-admin-key-" + "0123456789abcdef"
QUOTA = 1_000_000
FAILED_ATTEMPTS_PER_MINUTE = 10_000_000
DEFAULT_REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ACCEPTED = "bench.webhook_requests:accepted"
BAD_SIGNATURE = "bench.webhook_requests:bad_signature"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.webhook", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="measurements per side and phase")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument(
        "--phases",
        default="accepted,rejected,latency",
        help="comma-separated subset of accepted,rejected,latency",
    )
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="requests/s of the latency phase (default: half the accepted phase's peak)",
    )
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and client")
    parser.add_argument("--busy-threshold", type=float, default=0.3)
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument(
        "--botlyne-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an extra setting for Botlyne (repeatable), e.g. DATABASE_POOL_SIZE=32",
    )
    args = parser.parse_args(argv)
    try:
        args.botlyne_env = dict(item.split("=", 1) for item in args.botlyne_env)
    except ValueError:
        parser.error("--botlyne-env takes NAME=VALUE")
    args.phases = [phase.strip() for phase in args.phases.split(",") if phase.strip()]
    unknown = set(args.phases) - {"accepted", "rejected", "latency"}
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    if "latency" in args.phases and "accepted" not in args.phases and not args.latency_rate:
        parser.error("the latency phase alone needs --latency-rate")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


# --------------------------------------------------------------------------------------------
# HTTP and database helpers


def http_request(
    url: str, method: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.request(method, parts.path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def create_integration(botlyne: harness.ServerProcess, secret: str) -> str:
    payload = {
        "name": "bench",
        "type": "generic",
        "rate_limit_per_minute": QUOTA,
        "rate_limit_per_hour": QUOTA,
        "secret": secret,
    }
    status, body = http_request(
        botlyne.url("/api/v1/integrations"),
        "POST",
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    if status != 201:
        raise harness.ServerError(f"creating the integration: {status} {body!r}")
    return str(json.loads(body)["id"])


def one_request(url: str, spec: str, arg: str) -> tuple[int, bytes]:
    """Send one request built by a `bench.webhook_requests` source; status and body."""
    from bench.load import load_request_source

    raw = load_request_source(spec, url, arg)(10_000_000)()
    head, _, body = raw.partition(b"\r\n\r\n")
    headers = dict(
        line.decode().split(": ", 1) for line in head.split(b"\r\n")[1:] if b": " in line
    )
    headers.pop("Host", None)
    return http_request(url, "POST", body, headers)


async def _sql(url: str, statement: str) -> list[Any]:
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        return list(await connection.fetch(statement))
    finally:
        await connection.close()


def sql(url: str, statement: str) -> list[Any]:
    return asyncio.run(_sql(url, statement))


# --------------------------------------------------------------------------------------------
# Measuring


def measure(
    server: harness.ServerProcess,
    url: str,
    spec: str,
    spec_arg: str,
    args: argparse.Namespace,
    cpus: set[int] | None,
    services: harness.ServiceCpu,
    rate: float | None = None,
) -> dict[str, Any]:
    """One load run; repeated when something else took more than the threshold of the machine."""

    def run_once() -> dict[str, Any]:
        before = services.snapshot()
        busy_before = harness.busy_cpu_seconds()
        started = time.perf_counter()
        result = harness.run_load(
            url,
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            tool="python",
            cpus=cpus,
            server=server,
            requests=spec,
            requests_arg=spec_arg,
            rate=rate,
        )
        wall = time.perf_counter() - started
        busy = (harness.busy_cpu_seconds() - busy_before) / wall
        used = {
            name: value / wall
            for name, value in services.between(before, services.snapshot()).items()
        }
        # PostgreSQL (less its backends serving other databases) and Redis are part of the
        # system under test here; the harness's `other_cpu_util` counted them as "other".
        result["postgres_cpu_util"] = round(used["postgres"] - used["postgres_elsewhere"], 3)
        result["redis_cpu_util"] = round(used["redis"], 3)
        result["other_cpu_util"] = round(
            max(
                0.0,
                busy
                - result["client_cpu_util"]
                - result["server_cpu_util"]
                - result["postgres_cpu_util"]
                - result["redis_cpu_util"],
            ),
            3,
        )
        return result

    return harness.repeat_while_disturbed(
        run_once, name=server.name, retries=args.retries, threshold=args.busy_threshold
    )


def expected_count(run: dict[str, Any], status: str) -> tuple[int, int]:
    """(answers with `status`, answers with any other status or transport errors)."""
    counts = run["status_counts"]
    good = int(counts.get(status, 0))
    bad = sum(int(count) for code, count in counts.items() if code != status)
    return good, bad + sum(int(count) for count in run["errors"].values())


def summarize_side(runs: list[dict[str, Any]], status: str) -> dict[str, Any]:
    rates = [run["requests_per_s"] for run in runs]
    good_rates = [expected_count(run, status)[0] / run["duration_s"] for run in runs]
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for run in runs:
        for code, count in run["status_counts"].items():
            statuses[code] = statuses.get(code, 0) + count
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        # Only answers with the expected status count as throughput.
        f"{status}_per_s_median": round(harness.median(good_rates), 1),
        "requests_per_s_median": round(harness.median(rates), 1),
        "requests_per_s_min": min(rates),
        "requests_per_s_max": max(rates),
        "latency_ms_median": {
            key: round(harness.median(run["latency_ms"][key] for run in runs), 3)
            for key in ("p50", "p90", "p99", "max")
        },
        "cpu_util_median": {
            key: round(harness.median(run[f"{key}_cpu_util"] for run in runs), 3)
            for key in ("server", "client", "postgres", "redis", "other")
        },
        "status_counts": statuses,
        "unexpected_answers": sum(expected_count(run, status)[1] for run in runs),
        "errors": errors,
    }


def run_phase(
    name: str,
    sides: dict[str, tuple[harness.ServerProcess, str, str]],
    spec_arg: str,
    status: str,
    args: argparse.Namespace,
    client_cpus: set[int] | None,
    services: harness.ServiceCpu,
    rate: float | None = None,
) -> dict[str, Any]:
    """Alternate the sides for `args.rounds` rounds; per-side summaries and the ratio."""
    rounds: list[dict[str, Any]] = []
    for number in range(1, args.rounds + 1):
        entry: dict[str, Any] = {"round": number}
        for side, (server, url, spec) in sides.items():
            entry[side] = measure(server, url, spec, spec_arg, args, client_cpus, services, rate)
            good, bad = expected_count(entry[side], status)
            harness.progress(
                f"{name} round {number} {side}: {entry[side]['requests_per_s']} req/s "
                f"({good} x {status}, {bad} other), p99 {entry[side]['latency_ms']['p99']} ms, "
                f"server {entry[side]['server_cpu_util']} / pg {entry[side]['postgres_cpu_util']}"
                f" / client {entry[side]['client_cpu_util']} cores"
            )
        first, second = list(sides)
        entry["ratio"] = round(
            expected_count(entry[first], status)[0]
            / max(1, expected_count(entry[second], status)[0]),
            3,
        )
        rounds.append(entry)
    summary = {side: summarize_side([entry[side] for entry in rounds], status) for side in sides}
    first, second = list(sides)
    key = f"{status}_per_s_median"
    ratio = summary[first][key] / summary[second][key] if summary[second][key] else 0.0
    ratios = [entry["ratio"] for entry in rounds]
    return {
        "rounds": rounds,
        "summary": {
            **summary,
            "ratio_of_medians": round(ratio, 3),
            "round_ratios": {
                "median": round(harness.median(ratios), 3),
                "min": min(ratios),
                "max": max(ratios),
            },
        },
    }


def error_lines(server: harness.ServerProcess) -> dict[str, int]:
    """Botlyne's ERROR/CRITICAL log lines, counted by message and exception."""
    counts: Counter[str] = Counter()
    for record in server.log_records():
        if record.get("level") in ("ERROR", "CRITICAL"):
            exception = record.get("exception") or {}
            counts[
                f"{record.get('message', '')} [{record.get('route', '')}] "
                f"{exception.get('type', '')}: {exception.get('message', '')}"[:300]
            ] += 1
    return dict(counts.most_common(20))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.exit_on_sigterm()
    command = shlex.join([sys.executable, "-m", "bench.webhook", *(argv or sys.argv[1:])])
    machine = harness.machine_info()
    server_cpus, client_cpus = harness.split_cpus(not args.no_pin)
    harness.progress(f"server CPUs {server_cpus}, client {client_cpus}")
    secret = "bench-" + secrets.token_hex(16)
    token = secrets.token_hex(4)
    botlyne_env = {
        "REDIS_URL": args.redis_url,
        "RUN_WORKERS": "false",
        "WEBHOOK_FAILED_ATTEMPTS_PER_MINUTE": str(FAILED_ATTEMPTS_PER_MINUTE),
        "ENABLE_STRUCTURED_LOGGING": "true",
        "LOG_LEVEL": "INFO",
        **args.botlyne_env,
    }
    phases: dict[str, Any] = {}
    with (
        harness.scratch_dir("botlyne-bench-webhook-") as workdir,
        harness.fresh_database(args.admin_database_url, prefix="bench_webhook") as database_url,
    ):
        from bench.webhook_reference import CREATE_TABLE, REJECTED_JSON

        sql(database_url, CREATE_TABLE)
        services = harness.ServiceCpu(database_url)
        botlyne = harness.botlyne_server(
            {**botlyne_env, "DATABASE_URL": database_url, "BOOTSTRAP_ADMIN_KEY": ADMIN_KEY},
            workdir=workdir / "botlyne",
            cpus=server_cpus,
        )
        accept_reference = harness.asgi_server(
            "bench.webhook_reference:accept_app",
            workdir=workdir / "reference-accept",
            env={
                "BENCH_DATABASE_URL": database_url,
                "BENCH_REDIS_URL": args.redis_url,
                "BENCH_WEBHOOK_SECRET": secret,
            },
            cpus=server_cpus,
            name="reference-accept",
        )
        reject_reference = harness.asgi_server(
            "bench.webhook_reference:reject_app",
            workdir=workdir / "reference-reject",
            cpus=server_cpus,
            name="reference-reject",
        )
        with botlyne, accept_reference, reject_reference:
            integration_id = create_integration(botlyne, secret)
            path = WEBHOOK_PATH.format(id=integration_id)
            urls = {
                "botlyne": botlyne.url(path),
                "reference-accept": accept_reference.url(path),
                "reference-reject": reject_reference.url(path),
            }
            spec_arg = json.dumps({"secret": secret, "token": token})
            # Both sides must answer the same way before their speed is compared.
            sanity = {
                "botlyne_accepted": one_request(urls["botlyne"], ACCEPTED, spec_arg),
                "reference_accepted": one_request(urls["reference-accept"], ACCEPTED, spec_arg),
                "botlyne_rejected": one_request(urls["botlyne"], BAD_SIGNATURE, spec_arg),
                "reference_rejected": one_request(
                    urls["reference-reject"], BAD_SIGNATURE, spec_arg
                ),
            }
            expected = {"accepted": 202, "rejected": 401}
            for label, (status, body) in sanity.items():
                if status != expected[label.split("_")[1]]:
                    raise harness.ServerError(f"sanity check {label}: {status} {body!r}")
            if sanity["botlyne_rejected"][1] != REJECTED_JSON:
                raise harness.ServerError(f"401 bodies differ: {sanity['botlyne_rejected'][1]!r}")
            harness.progress(
                f"ready: botlyne {botlyne.ready_after:.1f} s; integration {integration_id}"
            )

            if "accepted" in args.phases:
                phases["accepted"] = run_phase(
                    "accepted",
                    {
                        "botlyne": (botlyne, urls["botlyne"], ACCEPTED),
                        "reference": (accept_reference, urls["reference-accept"], ACCEPTED),
                    },
                    spec_arg,
                    "202",
                    args,
                    client_cpus,
                    services,
                )
            if "rejected" in args.phases:
                phases["rejected"] = run_phase(
                    "rejected",
                    {
                        "botlyne": (botlyne, urls["botlyne"], BAD_SIGNATURE),
                        "reference": (reject_reference, urls["reference-reject"], BAD_SIGNATURE),
                    },
                    spec_arg,
                    "401",
                    args,
                    client_cpus,
                    services,
                )
            if "latency" in args.phases:
                rate = args.latency_rate or round(
                    phases["accepted"]["summary"]["botlyne"]["202_per_s_median"] / 2, 1
                )
                harness.progress(f"latency phase at {rate} requests/s (open loop)")
                phases["latency"] = run_phase(
                    "latency",
                    {
                        "botlyne": (botlyne, urls["botlyne"], ACCEPTED),
                        "reference": (accept_reference, urls["reference-accept"], ACCEPTED),
                    },
                    spec_arg,
                    "202",
                    args,
                    client_cpus,
                    services,
                    rate=rate,
                )
                phases["latency"]["rate_per_s"] = rate
            botlyne_errors = error_lines(botlyne)
        outcomes = {
            f"{row['outcome']}:{row['reason']}": row["n"]
            for row in sql(
                database_url,
                "SELECT outcome, reason, count(*) AS n FROM integration_events "
                "GROUP BY outcome, reason ORDER BY outcome, reason",
            )
        }
        duplicated_keys = sql(
            database_url,
            "SELECT count(*) AS n FROM (SELECT delivery_key FROM integration_events "
            "WHERE outcome = 'accepted' GROUP BY delivery_key HAVING count(*) > 1) AS d",
        )[0]["n"]
        stopped = {
            server.name: {"returncode": server.returncode, "killed": server.killed}
            for server in (botlyne, accept_reference, reject_reference)
        }

    summary: dict[str, Any] = {}
    if "accepted" in phases:
        accepted = phases["accepted"]["summary"]
        summary["accepted_ratio"] = accepted["ratio_of_medians"]
        summary["accepted_goal"] = GOAL_ACCEPTED_RATIO
        summary["accepted_meets_goal"] = accepted["ratio_of_medians"] >= GOAL_ACCEPTED_RATIO
        summary["accepted_per_s"] = {
            side: accepted[side]["202_per_s_median"] for side in ("botlyne", "reference")
        }
    if "rejected" in phases:
        rejected = phases["rejected"]["summary"]
        summary["rejected_ratio"] = rejected["ratio_of_medians"]
        summary["rejected_goal"] = GOAL_REJECTED_RATIO
        summary["rejected_meets_goal"] = rejected["ratio_of_medians"] >= GOAL_REJECTED_RATIO
        summary["rejected_per_s"] = {
            side: rejected[side]["401_per_s_median"] for side in ("botlyne", "reference")
        }
    if "latency" in phases:
        latency = phases["latency"]["summary"]
        p99 = latency["botlyne"]["latency_ms_median"]["p99"]
        summary["latency_rate_per_s"] = phases["latency"]["rate_per_s"]
        summary["latency_p99_ms"] = {
            side: latency[side]["latency_ms_median"]["p99"] for side in ("botlyne", "reference")
        }
        summary["latency_goal_p99_ms"] = GOAL_P99_MS
        summary["latency_meets_goal"] = p99 <= GOAL_P99_MS
    payload = {
        "benchmark": "webhook",
        "command": command,
        "machine": machine,
        "config": {
            "connections": args.connections,
            "rounds": args.rounds,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "load_tool": "python (bench.load, requests signed on the fly)",
            "signing_cost_us_per_request": _signing_cost(),
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "botlyne_env": botlyne_env,
            "botlyne_workers": 1,
            "integration": {
                "type": "generic",
                "rate_limit_per_minute": QUOTA,
                "rate_limit_per_hour": QUOTA,
            },
            "senders": "one per connection, a new message_id per request",
        },
        "sanity": {label: status for label, (status, _) in sanity.items()},
        "phases": phases,
        "summary": summary,
        "database_check": {
            "events_by_outcome": outcomes,
            "accepted_delivery_keys_seen_twice": duplicated_keys,
        },
        "servers": {**stopped, "botlyne_error_log_lines": botlyne_errors},
    }
    harness.write_results("webhook", payload)
    harness.progress(json.dumps(summary))
    return 0


def _signing_cost() -> float:
    from bench.webhook_requests import signing_cost_us

    return signing_cost_us()


if __name__ == "__main__":
    sys.exit(main())
