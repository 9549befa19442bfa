"""What the audit trigger costs a write, against the same table without it, in one run.

`python -m bench.audit_overhead [--rounds 10] [--single 200] [--bulk 10000]`

A fresh database of the local PostgreSQL gets the app's migrations (so `audit_logs` is
partitioned by day as in production) and four tables shaped like `conversations`
(`CREATE TABLE ... (LIKE conversations INCLUDING ALL)`: same columns, defaults, constraints,
indexes):

- `bench_plain`: no trigger, the reference;
- `bench_audited`: the project's triggers, `app.db.entities.audit_triggers(table, *metric
  columns)`, exactly as `conversations` has them;
- `bench_previous`: the trigger as migrations 0001-0004 had it (statement-level for every event,
  values on insert rows; taken from 0005's downgrade), to show what 0005 changed;
- `bench_naive`: a row-level trigger writing `to_jsonb(OLD)` / `to_jsonb(NEW)` per row, the
  textbook design, for comparison.

Per round, for both `synchronous_commit = on` (the server default: each commit waits for its WAL
flush, as the app's commits do) and `off` (no flush wait, so the triggers' CPU is not hidden
behind the disk), every table in turn (the order rotates each round, so drift on a shared
machine hits all tables alike) gets, on one connection:

- `--single` single-row INSERTs, each its own transaction, as the API writes;
- `--single` single-row UPDATEs of those rows (a real change: status and priority);
- `--single` single-row UPDATEs of a counter only (`message_count`, as update_conversation_metrics
  does on every message), which the audit ignores;
- one INSERT ... SELECT of `--bulk` rows.

Both the wall time and the CPU time of the server backend (`/proc/<pid>/schedstat`, so only when
PostgreSQL runs on this machine) are taken. Reported per workload and mode: rows/s per table in
its fastest round (noise on a shared machine only ever adds time; with `synchronous_commit = on`
the wall time is mostly the disk's flush latency) and each table's ratio to `bench_plain`. The
server CPU ratio is the strict one: it leaves out the client and the network, which a real
request also pays. Goals: audited single-row writes >= 0.8 x plain, the bulk INSERT >= 0.5 x
plain.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shlex
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg

from bench import harness

GOAL_SINGLE = 0.8
GOAL_BULK = 0.5
TABLES = ("bench_plain", "bench_audited", "bench_previous", "bench_naive")
MODES = ("on", "off")
WORKLOADS = ("single_insert", "single_update", "single_counter_update", "bulk_insert")
GOAL_WORKLOADS = ("single_insert", "single_update")

NAIVE_TRIGGER = """
CREATE FUNCTION bench_naive_audit() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO audit_logs (table_name, record_id, operation, old_values, new_values, org_id)
    VALUES (TG_TABLE_NAME, coalesce(NEW.id, OLD.id)::text, TG_OP,
            CASE WHEN TG_OP <> 'INSERT' THEN to_jsonb(OLD) END,
            CASE WHEN TG_OP <> 'DELETE' THEN to_jsonb(NEW) END,
            coalesce(NEW.org_id, OLD.org_id));
    RETURN NULL;
END;
$$;
CREATE TRIGGER bench_naive_audit AFTER INSERT OR UPDATE OR DELETE ON bench_naive
FOR EACH ROW EXECUTE FUNCTION bench_naive_audit();
"""

INSERT_ONE = (
    "INSERT INTO {table} (org_id, integration_id, thread_key, contact_external_id, contact_name) "
    "VALUES ($1, $2, $3, $3, 'Ana') RETURNING id"
)
UPDATE_ONE = "UPDATE {table} SET status = 'queued', priority = 'high' WHERE id = $1"
# What update_conversation_metrics does on every message: counters only, not audited.
COUNT_ONE = "UPDATE {table} SET message_count = message_count + 1 WHERE id = $1"
INSERT_MANY = (
    "INSERT INTO {table} (org_id, integration_id, thread_key, contact_external_id, contact_name) "
    "SELECT $1, $2, $3 || n, $3 || n, 'Ana' FROM generate_series(1, $4) AS n"
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.audit_overhead", description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--single", type=int, default=200, help="single-row statements per run")
    parser.add_argument("--bulk", type=int, default=10_000, help="rows of the bulk INSERT")
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.single < 1 or args.bulk < 1:
        parser.error("--rounds, --single and --bulk must be positive")
    return args


def previous_trigger_function() -> str:
    """0001-0004's log_audit_event, kept by 0005 for its downgrade, under a name of its own."""
    migration = importlib.import_module("migrations.versions.0005_maintenance")
    previous = migration.PREVIOUS_LOG_AUDIT_EVENT
    return f"CREATE FUNCTION bench_previous_audit() {previous.definition}"


async def prepare(url: str) -> None:
    from app.db.entities import CONVERSATION_METRIC_COLUMNS, audit_triggers

    ignored = ", ".join(f"'{column}'" for column in CONVERSATION_METRIC_COLUMNS)
    connection = await asyncpg.connect(url)
    try:
        for table in TABLES:
            await connection.execute(f"CREATE TABLE {table} (LIKE conversations INCLUDING ALL)")
        for trigger in audit_triggers("bench_audited", *CONVERSATION_METRIC_COLUMNS):
            await connection.execute(str(trigger.to_sql_statement_create()))
        await connection.execute(previous_trigger_function())
        for event, transition in (
            ("INSERT", "REFERENCING NEW TABLE AS new_rows"),
            ("UPDATE", "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows"),
        ):
            await connection.execute(
                f"CREATE TRIGGER bench_previous_{event.lower()} AFTER {event} ON bench_previous "
                f"{transition} FOR EACH STATEMENT EXECUTE FUNCTION bench_previous_audit({ignored})"
            )
        await connection.execute(NAIVE_TRIGGER)
    finally:
        await connection.close()


class BackendClock:
    """Wall time and the server backend's CPU time (None when PostgreSQL is not local)."""

    def __init__(self, pid: int) -> None:
        self.schedstat = Path(f"/proc/{pid}/schedstat")

    def cpu(self) -> float | None:
        try:
            return int(self.schedstat.read_text().split()[0]) / 1e9
        except OSError:
            return None

    async def time(self, work: Callable[[], Awaitable[None]]) -> tuple[float, float | None]:
        cpu_before, started = self.cpu(), time.perf_counter()
        await work()
        wall, cpu_after = time.perf_counter() - started, self.cpu()
        cpu = None if cpu_before is None or cpu_after is None else cpu_after - cpu_before
        return wall, cpu


async def measure_table(
    connection: asyncpg.Connection, clock: BackendClock, table: str, tag: str, args: Any
) -> dict[str, tuple[float, float | None]]:
    org, integration = uuid.uuid4(), uuid.uuid4()
    insert = await connection.prepare(INSERT_ONE.format(table=table))
    update = await connection.prepare(UPDATE_ONE.format(table=table))
    count = await connection.prepare(COUNT_ONE.format(table=table))
    many = await connection.prepare(INSERT_MANY.format(table=table))
    ids: list[uuid.UUID] = []

    async def inserts() -> None:
        for number in range(args.single):
            ids.append(await insert.fetchval(org, integration, f"{tag}-{number}"))

    async def updates() -> None:
        for id_ in ids:
            await update.fetch(id_)

    async def counter_updates() -> None:
        for id_ in ids:
            await count.fetch(id_)

    async def bulk_insert() -> None:
        await many.fetch(org, integration, f"{tag}-bulk-", args.bulk)

    return {
        "single_insert": await clock.time(inserts),
        "single_update": await clock.time(updates),
        "single_counter_update": await clock.time(counter_updates),
        "bulk_insert": await clock.time(bulk_insert),
    }


async def run_rounds(url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    connection = await asyncpg.connect(url)
    clock = BackendClock(await connection.fetchval("SELECT pg_backend_pid()"))
    rounds: list[dict[str, Any]] = []
    try:
        for number in range(args.rounds):
            entry: dict[str, Any] = {"round": number + 1}
            shift = number % len(TABLES)
            order = TABLES[shift:] + TABLES[:shift]
            await connection.execute(f"TRUNCATE {', '.join(TABLES)}, audit_logs")
            await connection.execute("CHECKPOINT")
            for mode in MODES:
                await connection.execute(f"SET synchronous_commit = {mode}")
                entry[mode] = {
                    table: await measure_table(connection, clock, table, f"r{number}{mode}", args)
                    for table in order
                }
            rounds.append(entry)
            harness.progress(f"round {number + 1}/{args.rounds} done")
        audited = await connection.fetchval(
            "SELECT count(*) FROM audit_logs WHERE table_name = 'bench_audited'"
        )
        if not audited:
            raise RuntimeError("the audited table wrote no audit rows")
    finally:
        await connection.close()
    return rounds


def rows(workload: str, args: argparse.Namespace) -> int:
    return args.bulk if workload == "bulk_insert" else args.single


def summarize(rounds: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for mode in MODES:
        for measure, index in (("wall", 0), ("server_cpu", 1)):
            if any(r[mode][TABLES[0]][WORKLOADS[0]][index] is None for r in rounds):
                continue
            section: dict[str, Any] = {}
            for workload in WORKLOADS:
                # The fastest round of each table: on a shared machine noise only ever adds time.
                rates = {
                    table: rows(workload, args)
                    / min(r[mode][table][workload][index] for r in rounds)
                    for table in TABLES
                }
                section[workload] = {
                    "rows_per_s": {table: round(rate, 1) for table, rate in rates.items()},
                    "ratio_to_plain": {
                        table: round(rates[table] / rates["bench_plain"], 3) for table in TABLES[1:]
                    },
                }
            summary[f"synchronous_commit_{mode}_{measure}"] = section

    def audited(section: str, workload: str) -> float:
        return float(summary[section][workload]["ratio_to_plain"]["bench_audited"])

    summary["goals"] = {
        section: {
            "single_row_min": min(audited(section, w) for w in GOAL_WORKLOADS),
            "single_row_met": min(audited(section, w) for w in GOAL_WORKLOADS) >= GOAL_SINGLE,
            "bulk": audited(section, "bulk_insert"),
            "bulk_met": audited(section, "bulk_insert") >= GOAL_BULK,
        }
        for section in summary
    }
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, "-m", "bench.audit_overhead", *(argv or sys.argv[1:])])
    machine = harness.machine_info()
    from app.core.migrations import upgrade

    with harness.fresh_database(args.admin_database_url, prefix="bench_audit") as url:
        harness.progress("migrating")
        upgrade(url.replace("postgresql://", "postgresql+asyncpg://", 1))
        asyncio.run(prepare(url))
        rounds = asyncio.run(run_rounds(url, args))
    harness.write_results(
        "audit_overhead",
        {
            "benchmark": "audit_overhead",
            "command": command,
            "machine": machine,
            "parameters": {"rounds": args.rounds, "single": args.single, "bulk": args.bulk},
            "goals": {"single_row": GOAL_SINGLE, "bulk_insert": GOAL_BULK},
            "summary": summarize(rounds, args),
            "rounds": rounds,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
