"""One fault at a time under mixed traffic: what users saw, what was lost or duplicated, and how
long recovery took.

`python -m bench.faults [--faults redis,postgres,gemini,evolution,worker] [--before 20]
    [--outage 15] [--after 60] [--rates webhook=15,...]`

Each fault gets a stack of its own, built as `bench.mixed_load` builds it (`botlyne serve` +
`botlyne worker`, the stubs, a fresh database), except that both processes reach Redis and
PostgreSQL through TCP proxies (`tests.helpers.ThreadedTcpProxy`). The same traffic runs from a
second process for `--before` + `--outage` + `--after` seconds; the fault starts after `--before`
seconds and ends `--outage` seconds later:

- `redis`: the Redis proxy stops (every connection cut, new ones refused) and starts again on
  the same port: to the processes, a Redis restart.
- `postgres`: the same with the PostgreSQL proxy: a database restart (or failover).
- `gemini`: the Gemini stub answers 503 to every model call.
- `evolution`: the Evolution API stub answers 503 to every send.
- `worker`: the worker process is killed with SIGKILL (deliveries and bot turns in flight) and
  a new one is started after the outage, as a Deployment would restart it.

Reported per fault: status counts by phase (before, during, after the fault), the second from
which every answer was 2xx/4xx again (`users_recovered_after_s`, counted from the fault's end),
the job backlog (pending and running jobs, sampled every second) and when it was back to its
level before the fault (`backlog_recovered_after_s`), and, once the jobs have drained, what was
lost (a delivery answered 202 without its stored message) and duplicated (callbacks carry the
message id; Evolution sends are counted against the messages marked sent).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from bench import harness
from bench.mixed_load import (
    Stack,
    TrafficProcess,
    check_data,
    log_levels,
    parse_rates,
    setup,
    stack,
    wait_drained,
)
from bench.webhook import DEFAULT_REDIS_URL, sql

FAULTS = ("redis", "postgres", "gemini", "evolution", "worker")


class Backlog(threading.Thread):
    """Pending and running jobs every second (through the direct URL, never the proxy)."""

    def __init__(self, database_url: str) -> None:
        super().__init__(daemon=True)
        self.database_url = database_url
        self.samples: list[tuple[float, int]] = []  # (wall time, jobs)
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(1.0):
            try:
                rows = sql(
                    self.database_url,
                    "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')",
                )
            except OSError:
                continue
            self.samples.append((time.time(), int(rows[0][0])))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


def inject(fault: str, built: Stack, proxies: dict[str, Any]) -> Callable[[], None]:
    """Start `fault`; return what ends it."""
    if fault in ("redis", "postgres"):
        proxy = proxies[fault]
        proxy.stop()
        return proxy.start  # type: ignore[no-any-return]
    if fault == "gemini":
        built.gemini.mode = "503"
        return lambda: setattr(built.gemini, "mode", "ok")
    if fault == "evolution":
        built.evolution.mode = "503"
        return lambda: setattr(built.evolution, "mode", "ok")
    if fault == "worker":
        os.killpg(built.worker.pid, signal.SIGKILL)
        built.worker.process.wait()  # type: ignore[union-attr]

        def restart() -> None:
            built.start_worker()

        return restart
    raise ValueError(fault)


def phases(
    per_second: dict[str, dict[str, int]], start: float, end: float
) -> dict[str, dict[str, int]]:
    """`kind:status` counts, summed over the seconds before, during and after the fault."""
    result: dict[str, Counter[str]] = {"before": Counter(), "during": Counter(), "after": Counter()}
    for second, counts in per_second.items():
        moment = int(second)
        phase = "before" if moment < start else "during" if moment < end else "after"
        result[phase].update(counts)
    return {phase: dict(sorted(counts.items())) for phase, counts in result.items()}


def failed(key: str) -> bool:
    """A `kind:status` key of a 5xx or of a request that got no answer."""
    status = key.rsplit(":", 1)[1]
    return not status.isdigit() or int(status) >= 500


def users_recovered(per_second: dict[str, dict[str, int]], end: float) -> float | None:
    """Seconds after the fault's end from which no answer was a 5xx or a failed request."""
    bad = [int(second) for second, counts in per_second.items() if any(map(failed, counts))]
    if not bad:
        return 0.0
    last = max(bad)
    return round(max(0.0, last + 1 - end), 1)


def backlog_recovered(samples: list[tuple[float, int]], start: float, end: float) -> float | None:
    """Seconds after the fault's end until the job backlog was back to its level before it."""
    before = sorted(count for moment, count in samples if moment < start)
    if not before:
        return None
    normal = before[int(0.95 * (len(before) - 1))] + 5
    late = [moment for moment, count in samples if moment >= end and count <= normal]
    return round(late[0] - end, 1) if late else None


def run_fault(fault: str, args: argparse.Namespace, rates: dict[str, float]) -> dict[str, Any]:
    from tests.helpers import ThreadedTcpProxy

    redis_host, redis_port = "127.0.0.1", int(args.redis_url.rsplit(":", 1)[1].split("/")[0])
    proxies = {"redis": ThreadedTcpProxy(redis_host, redis_port), "postgres": None}
    proxies["redis"].start()
    postgres = ThreadedTcpProxy("127.0.0.1", 5432)
    postgres.start()
    proxies["postgres"] = postgres
    redis_database = args.redis_url.rsplit("/", 1)[1]
    try:
        with stack(
            redis_url=f"redis://127.0.0.1:{proxies['redis'].port}/{redis_database}",
            admin_database_url=args.admin_database_url,
            database_host_port=("127.0.0.1", postgres.port),
        ) as built:
            plan = setup(built)
            duration = args.before + args.outage + args.after
            harness.progress(f"{fault}: traffic for {duration:.0f} s, fault at {args.before:.0f} s")
            backlog = Backlog(built.database_url)
            backlog.start()
            traffic_process = TrafficProcess(plan, duration, rates, built.workdir)
            try:
                time.sleep(max(0.0, args.before - traffic_process.elapsed()))
                fault_wall = time.time()
                heal = inject(fault, built, proxies)
                time.sleep(max(0.0, args.before + args.outage - traffic_process.elapsed()))
                heal()
                healed_wall = time.time()
                traffic = traffic_process.wait()
            finally:
                traffic_process.stop()
            harness.progress(f"{fault}: waiting for the worker to drain its jobs")
            drained_after = wait_drained(built.database_url)
            backlog.stop()
            # Seconds since the traffic process started sending, as its per-second counts are.
            zero = traffic["started_wall"]
            started, ended = fault_wall - zero, healed_wall - zero
            samples = [(moment - zero, count) for moment, count in backlog.samples]
            data = check_data(built, traffic["accepted_message_ids"])
            logs = {"server": log_levels(built.server), "worker": log_levels(built.worker)}
            alive = {
                "server": built.server.process is not None and built.server.process.poll() is None,
                "worker": built.worker.process is not None and built.worker.process.poll() is None,
            }
    finally:
        for proxy in proxies.values():
            if proxy is not None:
                proxy.close()
    per_second = traffic["per_second"]
    return {
        "fault": fault,
        "fault_window_s": [round(started, 1), round(ended, 1)],
        "users_saw": phases(per_second, started, ended),
        "users_recovered_after_s": users_recovered(per_second, ended),
        "failed_answers_per_second": {
            second: sum(count for key, count in counts.items() if failed(key))
            for second, counts in per_second.items()
            if any(map(failed, counts))
        },
        "backlog_max": max((count for _, count in samples), default=0),
        "backlog_recovered_after_s": backlog_recovered(samples, started, ended),
        "drained_after_traffic_s": drained_after,
        "processes_alive_at_end": alive,
        "data": data,
        "latency_ms": {kind: v["latency_ms"] for kind, v in traffic["kinds"].items()},
        "logs_warning_or_worse": logs,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__)
    parser.add_argument("--faults", default=",".join(FAULTS))
    parser.add_argument("--before", type=float, default=20.0)
    parser.add_argument("--outage", type=float, default=15.0)
    parser.add_argument("--after", type=float, default=60.0)
    parser.add_argument(
        "--rates",
        default="webhook=15",
        help="per kind requests/s, as for bench.mixed_load (webhooks at 15/s by default, which "
        "the worker keeps up with, so the backlog shows the fault alone)",
    )
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.exit_on_sigterm()
    faults = [name.strip() for name in args.faults.split(",") if name.strip()]
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(FAULTS)}")
    rates = parse_rates(args.rates)
    payload: dict[str, Any] = {
        "benchmark": "faults",
        "machine": harness.machine_info(),
        "rates": rates,
        "timing_s": {"before": args.before, "outage": args.outage, "after": args.after},
        "faults": [run_fault(fault, args, rates) for fault in faults],
    }
    payload["summary"] = {
        item["fault"]: {
            "failed_answers": sum(
                count
                for phase in item["users_saw"].values()
                for key, count in phase.items()
                if failed(key)
            ),
            "lost": item["data"]["lost"],
            "duplicated": item["data"]["callback_duplicates"]
            + item["data"]["evolution_duplicates"],
            "users_recovered_after_s": item["users_recovered_after_s"],
            "backlog_recovered_after_s": item["backlog_recovered_after_s"],
        }
        for item in payload["faults"]
    }
    harness.write_results("faults", payload)
    return 0 if all(item["lost"] == 0 for item in payload["summary"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
