"""What the request observer (request id + metrics) costs `/health/live`, in one run.

`python -m bench.metrics_overhead [--rounds 5] [--duration 10] [--warmup 2] [--connections 32]`

Two servers run the same Botlyne on the same fresh database of the local PostgreSQL, both under
`bench.serve_asgi` with `botlyne serve`'s uvicorn options, structured INFO logging and no
background workers (their polling would be noise on both sides):

- `observed`: `app.asgi:create_app`, as deployed;
- `bare`: `bench.unobserved_app:create_app`, the same app with the observer unwrapped.

Both stay up while the load generator alternates between them (observed, bare, observed, ...),
so drift on the machine hits both alike. The figure is the ratio of the median requests/s,
observed over bare; the goal is at least 0.85. `/health/live` does no I/O, so the ratio is the
observer's whole price on the cheapest request there is: a dearer request pays the same
absolute cost, a smaller share. Also reported: the server's CPU microseconds per request on each
side and `cpu_ratio` (bare over observed, i.e. requests per CPU second, observed over bare),
which neighbours on a shared machine disturb less than throughput.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from typing import Any

from bench import harness
from bench.health_throughput import (
    check_body,
    compare,
    error_lines,
    measure,
    parse_args,
    summarize_side,
)

GOAL = 0.85
PATH = "/health/live"
APPS = {"observed": "app.asgi:create_app", "bare": "bench.unobserved_app:create_app"}
ENV = {
    "ENABLE_STRUCTURED_LOGGING": "true",
    "LOG_LEVEL": "INFO",
    "RUN_WORKERS": "false",
}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv, prog="python -m bench.metrics_overhead", description=__doc__)
    command = shlex.join([sys.executable, "-m", "bench.metrics_overhead", *(argv or sys.argv[1:])])
    machine = harness.machine_info()
    tool = harness.load_tool(args.tool)
    server_cpus, client_cpus = harness.split_cpus(not args.no_pin)
    harness.progress(f"load generator: {tool}; server CPUs {server_cpus}, client {client_cpus}")

    rounds: list[dict[str, Any]] = []
    with (
        harness.scratch_dir("botlyne-bench-") as workdir,
        harness.fresh_database(args.admin_database_url) as database_url,
    ):
        servers = {
            side: harness.asgi_server(
                app,
                workdir=workdir / side,
                env={**ENV, "DATABASE_URL": database_url},
                factory=True,
                cpus=server_cpus,
                name=side,
            )
            for side, app in APPS.items()
        }
        # Started one after the other: the first applies the migrations.
        with servers["observed"], servers["bare"]:
            for server in servers.values():
                check_body(server)
            observed_headers = harness.http_get(servers["observed"].url(PATH))[1]
            bare_headers = harness.http_get(servers["bare"].url(PATH))[1]
            if "x-request-id" not in observed_headers or "x-request-id" in bare_headers:
                raise harness.ServerError("the two sides do not differ by the observer")
            for number in range(1, args.rounds + 1):
                entry: dict[str, Any] = {"round": number}
                for side, server in servers.items():
                    entry[side] = measure(server, args, client_cpus)
                    harness.progress(
                        f"round {number} {side}: {entry[side]['requests_per_s']} req/s, "
                        f"p99 {entry[side]['latency_ms']['p99']} ms"
                    )
                entry["ratio"] = round(
                    entry["observed"]["requests_per_s"] / entry["bare"]["requests_per_s"], 3
                )
                rounds.append(entry)
            errors = {side: error_lines(server) for side, server in servers.items()}

    summary = {side: summarize_side([entry[side] for entry in rounds]) for side in APPS}
    comparison = compare(summary, rounds, "observed", "bare", GOAL)
    payload = {
        "benchmark": "metrics_overhead",
        "command": command,
        "machine": machine,
        "config": {
            "path": PATH,
            "apps": APPS,
            "env": ENV,
            "rounds": args.rounds,
            "order": "observed, bare, observed, bare, ...",
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "connections": args.connections,
            "load_tool": tool,
            "server_cpus": sorted(server_cpus) if server_cpus else None,
            "client_cpus": sorted(client_cpus) if client_cpus else None,
        },
        "rounds": rounds,
        "summary": {
            **summary,
            **comparison,
        },
        "error_log_lines": errors,
    }
    harness.write_results("metrics_overhead", payload)
    harness.progress(
        "median req/s: observed {:.0f}, bare {:.0f}; ratio {:.3f} (goal >= {}); "
        "CPU per request ratio {:.3f}".format(
            summary["observed"]["requests_per_s_median"],
            summary["bare"]["requests_per_s_median"],
            comparison["ratio_of_medians"],
            GOAL,
            comparison["cpu_ratio"],
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
