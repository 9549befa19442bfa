"""Requests/s of Botlyne's `/health/live` against a bare Litestar app, in one run.

`python -m bench.health_throughput [--rounds 5] [--duration 10] [--warmup 2] [--connections 32]`

Botlyne is started as users start it (`botlyne serve`, one worker, structured INFO logging) on a
fresh database of the local PostgreSQL; `bench.reference_app` runs under the same uvicorn options.
Both stay up while the load generator alternates between them (Botlyne, reference, Botlyne, ...)
so that drift on the machine hits both sides alike. The figure is the ratio of the median
requests/s, Botlyne over reference; the goal is at least 0.8. Also reported: each side's server
CPU microseconds per request and `cpu_ratio` (requests per CPU second, Botlyne over reference),
which neighbours on a shared machine disturb much less than throughput.

The liveness probe does no I/O, so the ratio prices exactly what Botlyne adds on every request:
its middleware, dependency setup, exception handlers and logging configuration.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from typing import Any

from bench import harness

GOAL = 0.8
PATH = "/health/live"
EXPECTED_BODY = b'{"status":"ok"}'
SIDES = ("botlyne", "reference")


def parse_args(
    argv: Sequence[str] | None,
    prog: str = "python -m bench.health_throughput",
    description: str | None = __doc__,
) -> argparse.Namespace:
    """The options of a throughput comparison (also used by `bench.metrics_overhead`)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--rounds", type=int, default=5, help="measurements per side (>= 3)")
    parser.add_argument("--duration", type=int, default=10, help="measured seconds per run")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured seconds before each")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--no-pin", action="store_true", help="do not pin server and client to separate CPUs"
    )
    parser.add_argument(
        "--busy-threshold",
        type=float,
        default=0.25,
        help="cores used by other processes above which a run is repeated (at most --retries)",
    )
    parser.add_argument("--retries", type=int, default=2)
    parser.add_argument(
        "--quiet-timeout",
        type=float,
        default=30.0,
        help="seconds to wait for the machine to be quiet before each run",
    )
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    args = parser.parse_args(argv)
    if args.rounds < 3:
        parser.error("--rounds must be at least 3")
    return args


def check_body(server: harness.ServerProcess) -> None:
    """Both sides must serve the same bytes, or the comparison is meaningless."""
    status, _, body = harness.http_get(server.url(PATH))
    if status != 200 or body != EXPECTED_BODY:
        raise harness.ServerError(f"{server.name} {PATH}: {status} {body!r}")


def measure(
    server: harness.ServerProcess, args: argparse.Namespace, cpus: set[int] | None
) -> dict[str, Any]:
    """One load run; repeated when a neighbour took more than the threshold of the machine."""
    return harness.repeat_while_disturbed(
        lambda: harness.run_load(
            server.url(PATH),
            connections=args.connections,
            duration=args.duration,
            warmup=args.warmup,
            tool=args.tool,
            cpus=cpus,
            server=server,
        ),
        name=server.name,
        retries=args.retries,
        threshold=args.busy_threshold,
        quiet_timeout=args.quiet_timeout,
    )


def cpu_per_request(run: dict[str, Any]) -> float:
    """Server CPU microseconds per request in one run."""
    return float(run["server_cpu_util"]) / float(run["requests_per_s"]) * 1e6


def summarize_side(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rates = [run["requests_per_s"] for run in runs]
    statuses: dict[str, int] = {}
    errors: dict[str, int] = {}
    for run in runs:
        for code, count in run["status_counts"].items():
            statuses[code] = statuses.get(code, 0) + count
        for kind, count in run["errors"].items():
            errors[kind] = errors.get(kind, 0) + count
    return {
        "requests_per_s_median": round(harness.median(rates), 1),
        "requests_per_s_min": min(rates),
        "requests_per_s_max": max(rates),
        # Per percentile, the median over the runs (not a percentile of pooled samples).
        "latency_ms_median": {
            key: round(harness.median(run["latency_ms"][key] for run in runs), 3)
            for key in ("p50", "p90", "p99", "max")
        },
        "server_cpu_util_median": round(harness.median(run["server_cpu_util"] for run in runs), 3),
        "server_cpu_us_per_request_median": round(
            harness.median(cpu_per_request(run) for run in runs), 1
        ),
        "client_cpu_util_median": round(harness.median(run["client_cpu_util"] for run in runs), 3),
        "status_counts": statuses,
        "errors": errors,
    }


def compare(
    summary: dict[str, Any], rounds: list[dict[str, Any]], side: str, reference: str, goal: float
) -> dict[str, Any]:
    """`side` against `reference`: the ratio of median requests/s (the goal's figure), the ratio
    of requests per server CPU second (what the throughput ratio would be with each server alone
    on its core; neighbours disturb it much less) and the spread of the per-round ratios."""
    ratio = summary[side]["requests_per_s_median"] / summary[reference]["requests_per_s_median"]
    cpu_ratio = (
        summary[reference]["server_cpu_us_per_request_median"]
        / summary[side]["server_cpu_us_per_request_median"]
    )
    ratios = [entry["ratio"] for entry in rounds]
    return {
        "ratio_of_medians": round(ratio, 3),
        "cpu_ratio": round(cpu_ratio, 3),
        "round_ratios": {
            "median": round(harness.median(ratios), 3),
            "min": min(ratios),
            "max": max(ratios),
        },
        "goal": goal,
        "meets_goal": ratio >= goal,
    }


def error_lines(server: harness.ServerProcess) -> list[str]:
    return [
        record.get("message", "")
        for record in server.log_records()
        if record.get("level") in ("ERROR", "CRITICAL")
    ]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.exit_on_sigterm()
    command = shlex.join([sys.executable, "-m", "bench.health_throughput", *(argv or sys.argv[1:])])
    machine = harness.machine_info()
    tool = harness.load_tool(args.tool)
    server_cpus, client_cpus = harness.split_cpus(not args.no_pin)
    harness.progress(f"load generator: {tool}; server CPUs {server_cpus}, client {client_cpus}")

    rounds: list[dict[str, Any]] = []
    with (
        harness.scratch_dir("botlyne-bench-") as workdir,
        harness.fresh_database(args.admin_database_url) as database_url,
    ):
        botlyne = harness.botlyne_server(
            {
                "DATABASE_URL": database_url,
                "ENABLE_STRUCTURED_LOGGING": "true",
                "LOG_LEVEL": "INFO",
            },
            workdir=workdir / "botlyne",
            cpus=server_cpus,
        )
        reference = harness.asgi_server(
            "bench.reference_app:app", workdir=workdir / "reference", cpus=server_cpus
        )
        with botlyne, reference:
            harness.progress(
                f"botlyne ready in {botlyne.ready_after:.2f} s, "
                f"reference in {reference.ready_after:.2f} s"
            )
            servers = {"botlyne": botlyne, "reference": reference}
            for server in servers.values():
                check_body(server)
            for number in range(1, args.rounds + 1):
                entry: dict[str, Any] = {"round": number}
                for side in SIDES:
                    entry[side] = measure(servers[side], args, client_cpus)
                    harness.progress(
                        f"round {number} {side}: {entry[side]['requests_per_s']} req/s, "
                        f"p99 {entry[side]['latency_ms']['p99']} ms"
                    )
                entry["ratio"] = round(
                    entry["botlyne"]["requests_per_s"] / entry["reference"]["requests_per_s"], 3
                )
                rounds.append(entry)
            botlyne_errors = error_lines(botlyne)
        stopped = {
            name: {"returncode": server.returncode, "killed": server.killed}
            for name, server in servers.items()
        }

    summary = {side: summarize_side([entry[side] for entry in rounds]) for side in SIDES}
    comparison = compare(summary, rounds, "botlyne", "reference", GOAL)
    # Runs still disturbed after every retry: the figure is then only an indication.
    disturbed = [
        f"round {entry['round']} {side}"
        for entry in rounds
        for side in SIDES
        if entry[side]["other_cpu_util"] > args.busy_threshold
    ]
    payload = {
        "benchmark": "health_throughput",
        "command": command,
        "machine": machine,
        "config": {
            "path": PATH,
            "rounds": args.rounds,
            "order": "botlyne, reference, botlyne, reference, ...",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "load_tool": tool,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
            "botlyne_env": {"ENABLE_STRUCTURED_LOGGING": "true", "LOG_LEVEL": "INFO"},
            "botlyne_workers": 1,
        },
        "rounds": rounds,
        "summary": {
            **summary,
            **comparison,
            "disturbed_runs": disturbed,
        },
        "servers": {**stopped, "botlyne_error_log_lines": botlyne_errors},
    }
    harness.write_results("health_throughput", payload)
    harness.progress(
        "median req/s: botlyne {:.0f}, reference {:.0f}; ratio {:.3f} (goal >= {}); "
        "requests per CPU second ratio {:.3f}".format(
            summary["botlyne"]["requests_per_s_median"],
            summary["reference"]["requests_per_s_median"],
            comparison["ratio_of_medians"],
            GOAL,
            comparison["cpu_ratio"],
        )
    )
    if disturbed:
        harness.progress(
            f"WARNING: {len(disturbed)} of {2 * args.rounds} runs shared the machine with other "
            f"work (> {args.busy_threshold} cores): {', '.join(disturbed)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
