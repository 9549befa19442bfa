"""Seconds from spawning `botlyne serve` to the first 200 of `/health/ready`, embedded PostgreSQL.

`python -m bench.cold_start [--runs 3]`

Each run, in this order:
  reference  the bare Litestar app under the same uvicorn options, spawn to first 200 of
             `/health/live`: what any Python ASGI service pays to start on this machine;
  cold       `botlyne serve` with DATABASE_URL unset and a brand-new empty BOTLYNE_DATA_DIR:
             initdb, PostgreSQL start, database creation, migrations, bootstrap;
  warm       the same data directory started again once the first server (and the PostgreSQL
             it started) has stopped.
The figures are the medians over the runs, in seconds and as multiples of the reference.
Milestones from Botlyne's structured log say where the cold start spends its time.
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import harness

KINDS = ("reference", "cold", "warm")

# Log messages that mark the phases of a start: milestone name by message prefix. A successful
# postgres command is named after its executable instead (initdb's output quotes pg_ctl).
MILESTONES: tuple[tuple[str, str], ...] = (
    ("database_created", "created the embedded database"),
    ("migrations_started", "Context impl"),
    ("uvicorn_started", "Started server process"),
    ("app_started", "botlyne started"),
    ("listening", "Uvicorn running on"),
)
POSTGRES_COMMAND = "Successful postgres command ('"
POSTGRES_MILESTONES = {"initdb": "initdb_done", "pg_ctl": "postgres_started"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.cold_start", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for ready")
    parser.add_argument(
        "--stop-signal",
        choices=["TERM", "INT"],
        default="TERM",
        help="how each server is stopped (TERM as service managers do, INT as Ctrl-C does)",
    )
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def milestones(server: harness.ServerProcess) -> dict[str, float]:
    """Seconds from spawn to the first log line of each phase (structured log timestamps)."""
    found: dict[str, float] = {}
    records = server.log_records()
    if records:
        found["first_log_line"] = _since_spawn(server, records[0])
    for record in records:
        name = _milestone(str(record.get("message", "")))
        if name is not None and name not in found:
            found[name] = _since_spawn(server, record)
    return found


def _milestone(message: str) -> str | None:
    if message.startswith(POSTGRES_COMMAND):
        executable = message[len(POSTGRES_COMMAND) :].split("'", 1)[0]
        return POSTGRES_MILESTONES.get(Path(executable).name)
    return next((name for name, prefix in MILESTONES if message.startswith(prefix)), None)


def _since_spawn(server: harness.ServerProcess, record: dict[str, Any]) -> float:
    stamp = datetime.fromisoformat(str(record["timestamp"])).timestamp()
    return round(stamp - server.spawned_wall, 3)


def start_once(
    server: harness.ServerProcess, timeout: float, stop_signal: signal.Signals
) -> dict[str, Any]:
    """Spawn, time to the first 200, stop; everything else is read afterwards."""
    server.start()
    try:
        seconds = server.wait_ready(timeout=timeout)
    finally:
        server.stop(sig=stop_signal)
    return {
        "seconds": round(seconds, 3),
        "returncode": server.returncode,
        "killed": server.killed,
        "stopped_after_s": server.stopped_after,
    }


def botlyne_start(
    data_dir: Path, workdir: Path, timeout: float, stop_signal: signal.Signals
) -> dict[str, Any]:
    server = harness.botlyne_server(
        {
            "BOTLYNE_DATA_DIR": str(data_dir),
            "ENABLE_STRUCTURED_LOGGING": "true",
            "LOG_LEVEL": "INFO",
        },
        workdir=workdir,
    )
    result = start_once(server, timeout, stop_signal)
    result["milestones"] = milestones(server)
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    # The embedded PostgreSQL must be gone before the next start, or a "warm" start would only
    # join a running server. How long it takes to go is a figure of its own.
    gone_after = harness.wait_until_gone(pid_file, timeout=10)
    result["postgres_stopped_after_s"] = None if gone_after is None else round(gone_after, 3)
    result["postgres_left_running"] = gone_after is None and harness.stop_embedded_postgres(
        data_dir
    )
    return result


def one_run(number: int, timeout: float, stop_signal: signal.Signals) -> dict[str, Any]:
    """Reference, then cold and warm Botlyne on one new data directory."""
    with harness.scratch_dir("botlyne-cold-") as workdir:
        data_dir = workdir / "data"
        data_dir.mkdir()
        entry: dict[str, Any] = {"run": number}
        entry["other_cpu_util_before"] = harness.wait_for_quiet()
        try:
            reference = harness.asgi_server(
                "bench.reference_app:app", workdir=workdir / "reference"
            )
            entry["reference"] = start_once(reference, timeout, stop_signal)
            entry["cold"] = botlyne_start(data_dir, workdir / "cold", timeout, stop_signal)
            entry["warm"] = botlyne_start(data_dir, workdir / "warm", timeout, stop_signal)
        finally:
            # Whatever happened, no PostgreSQL may outlive the directory about to be deleted.
            harness.stop_embedded_postgres(data_dir)
    for kind in ("cold", "warm"):
        entry[kind]["ratio_to_reference"] = round(
            entry[kind]["seconds"] / entry["reference"]["seconds"], 2
        )
    return entry


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    harness.exit_on_sigterm()
    command = shlex.join([sys.executable, "-m", "bench.cold_start", *(argv or sys.argv[1:])])
    stop_signal = signal.Signals[f"SIG{args.stop_signal}"]
    machine = harness.machine_info()
    runs: list[dict[str, Any]] = []
    for number in range(1, args.runs + 1):
        entry = one_run(number, args.timeout, stop_signal)
        runs.append(entry)
        harness.progress(
            f"run {number}: reference {entry['reference']['seconds']:.2f} s, "
            f"cold {entry['cold']['seconds']:.2f} s, warm {entry['warm']['seconds']:.2f} s"
        )

    medians = {kind: harness.median(entry[kind]["seconds"] for entry in runs) for kind in KINDS}
    summary: dict[str, Any] = {f"{kind}_s_median": round(medians[kind], 3) for kind in KINDS} | {
        "cold_over_reference": round(medians["cold"] / medians["reference"], 2),
        "warm_over_reference": round(medians["warm"] / medians["reference"], 2),
        "cold_milestones_median": _median_milestones([entry["cold"] for entry in runs]),
        "warm_milestones_median": _median_milestones([entry["warm"] for entry in runs]),
        # Starts after which the embedded PostgreSQL was still running once Botlyne had exited.
        "postgres_left_running": {
            kind: sum(bool(entry[kind]["postgres_left_running"]) for entry in runs)
            for kind in ("cold", "warm")
        },
    }
    payload = {
        "benchmark": "cold_start",
        "command": command,
        "machine": machine,
        "config": {
            "runs": args.runs,
            "ready_paths": {"botlyne": "/health/ready", "reference": "/health/live"},
            "poll_interval_s": 0.005,
            "stop_signal": stop_signal.name,
            "botlyne_env": {
                "DATABASE_URL": None,
                "BOTLYNE_DATA_DIR": "<new empty temporary directory>",
                "ENABLE_STRUCTURED_LOGGING": "true",
                "LOG_LEVEL": "INFO",
            },
        },
        "runs": runs,
        "summary": summary,
    }
    harness.write_results("cold_start", payload)
    harness.progress(
        "median: reference {reference:.2f} s, cold {cold:.2f} s, warm {warm:.2f} s".format(
            **medians
        )
    )
    return 0


def _median_milestones(results: list[dict[str, Any]]) -> dict[str, float]:
    """Median seconds per milestone, listed in the order a start passes them."""
    names = {name for result in results for name in result["milestones"]}
    medians = {
        name: round(
            harness.median(r["milestones"][name] for r in results if name in r["milestones"]), 3
        )
        for name in names
    }
    return dict(sorted(medians.items(), key=lambda item: item[1]))


if __name__ == "__main__":
    sys.exit(main())
