"""Message retention at volume: the batched purge against one plain DELETE, its transactions, and
webhook ingestion while it runs, in one run.

`python -m bench.maintenance [--messages 1000000] [--rounds 3] [--pairs 3] [--window 5]
    [--connections 32] [--skip-ingestion] [--no-pin]`

Data. A fresh database of the local PostgreSQL gets the app's migrations, then, written with
`generate_series` (triggers and foreign-key checks off while seeding, counters set directly):
`--messages` messages in conversations resolved 30 days ago and as many in live conversations
(`--per-conversation` messages each, user and bot turns alternating, ~100 bytes of text), each
message with its finished job (`bot_reply` or `deliver`) as the app leaves them, and one `generic`
integration whose secret the benchmark knows. The database is vacuumed and analyzed, and every
measurement runs on a copy of it (`CREATE DATABASE ... TEMPLATE`), so each starts from the same
data.

(a) purge time. On one copy, `run_maintenance_tasks()` passes through the app's service
    (`app.domain.maintenance.service.run_pass`, each pass its own transaction, default batch
    sizes and intervals, back to back as the scheduler and `botlyne maintenance run` run them)
    until none reports work remaining; on another copy, one plain
    `DELETE FROM messages WHERE conversation_id IN (<conversations resolved over 7 days ago>)`.
    Both delete the same rows (and their jobs, by cascade); the order alternates per round.
    Goal: passes <= 1.5 x the DELETE (median of the rounds' ratios).
(b) longest transaction. The longest pass of (a), measured from BEGIN to COMMIT by the client.
    Goal: <= 1 s.
(c) ingestion. On a third copy, `botlyne serve` (one worker, `RUN_WORKERS=false` so neither the
    bot nor the scheduler competes) takes signed webhook deliveries from the load generator
    (`bench.webhook_requests:accepted`: every request a new message, signed with a fresh
    timestamp) in `--pairs` pairs of windows (1 s warm-up, `--window` s measured), idle and
    purging alternately: the purge of (a) runs during the purging windows and is paused between
    two passes otherwise, so slow drift of a shared machine falls on both sides alike. A purge
    that ends inside a window does not count that window. Meanwhile `pg_stat_activity` is
    sampled every 50 ms for the oldest open transaction of any Botlyne connection. Goal: median
    accepted/s of the purging windows >= 0.7 x that of the idle ones.

The server is pinned to one CPU and the load generator to the other (`--no-pin`); PostgreSQL and
the purge float.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import secrets
import shlex
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from bench import harness

GOAL_PURGE_RATIO = 1.5
GOAL_LONGEST_TRANSACTION_S = 1.0
GOAL_INGESTION_RATIO = 0.7
QUOTA = 1_000_000
ACCEPTED = "bench.webhook_requests:accepted"
WEBHOOK_PATH = "/api/v1/integrations/webhook/{id}"

SEED = """
SET session_replication_role = replica;
INSERT INTO organizations (id, name) VALUES ('{org}', 'bench');
INSERT INTO integrations (id, org_id, name, type)
VALUES ('{integration}', '{org}', 'bench', 'generic');
INSERT INTO integration_configs (org_id, integration_id, secrets, rate_limit_per_minute,
                                 rate_limit_per_hour)
VALUES ('{org}', '{integration}', jsonb_build_array(jsonb_build_object(
            'secret', '{secret}', 'created_at', now(), 'expires_at', NULL)), {quota}, {quota});
INSERT INTO conversations (org_id, integration_id, thread_key, contact_external_id, status,
                           message_count, last_message_at, resolved_at, resolution_reason,
                           created_at)
SELECT '{org}'::uuid, '{integration}'::uuid, 'old-' || n, 'old-' || n, 'resolved', {per},
       now() - interval '31 days', now() - interval '30 days', 'user', now() - interval '32 days'
FROM generate_series(1, {conversations}) AS n
UNION ALL
SELECT '{org}'::uuid, '{integration}'::uuid, 'live-' || n, 'live-' || n, 'bot', {per},
       now() - (n % 3600) * interval '1 second',
       NULL, NULL, now() - interval '1 hour'
FROM generate_series(1, {conversations}) AS n;
INSERT INTO messages (org_id, conversation_id, role, content, created_at)
SELECT c.org_id, c.id, CASE WHEN k % 2 = 1 THEN 'user' ELSE 'bot' END,
       'Message ' || k || ' of a conversation about an order that has not arrived yet, '
       || 'with the tracking number and a question.',
       c.last_message_at - ({per} - k) * interval '1 minute'
FROM conversations AS c, generate_series(1, {per}) AS k;
INSERT INTO jobs (kind, org_id, conversation_id, message_id, status, created_at, finished_at)
SELECT CASE WHEN role = 'user' THEN 'bot_reply' ELSE 'deliver' END, org_id, conversation_id,
       id, 'done', created_at, created_at
FROM messages;
SET session_replication_role = origin;
"""

PLAIN_DELETE = """
DELETE FROM messages WHERE conversation_id IN (
    SELECT id FROM conversations
    WHERE status = 'resolved' AND resolved_at < now() - interval '7 days'
)
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.maintenance", description=__doc__)
    parser.add_argument("--messages", type=int, default=1_000_000, help="expired (and live)")
    parser.add_argument("--per-conversation", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=3, help="idle/purging load windows")
    parser.add_argument("--window", type=int, default=5, help="measured seconds per window")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--skip-ingestion", action="store_true", help="only (a) and (b)")
    parser.add_argument("--no-pin", action="store_true")
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    args = parser.parse_args(argv)
    if args.messages < args.per_conversation or args.per_conversation < 1 or args.rounds < 1:
        parser.error("--messages >= --per-conversation >= 1 and --rounds >= 1")
    return args


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def _name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def _execute(url: str, *statements: str, args: Sequence[Any] = ()) -> None:
    connection = await asyncpg.connect(url, timeout=30)
    try:
        for statement in statements:
            await connection.execute(statement, *args)
    finally:
        await connection.close()


def seed(url: str, args: argparse.Namespace) -> dict[str, Any]:
    from app.core.migrations import upgrade

    harness.progress("migrating the template database")
    upgrade(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    org, integration = uuid.uuid4(), uuid.uuid4()
    secret = "bench-" + secrets.token_hex(16)
    conversations = args.messages // args.per_conversation
    harness.progress(f"seeding {2 * conversations * args.per_conversation:,} messages")
    started = time.perf_counter()

    async def go() -> dict[str, int]:
        connection = await asyncpg.connect(url, timeout=30)
        try:
            # Values the benchmark made itself (uuids, hex, integers): safe to write inline.
            await connection.execute(
                SEED.format(
                    org=org,
                    integration=integration,
                    secret=secret,
                    quota=QUOTA,
                    conversations=conversations,
                    per=args.per_conversation,
                )
            )
            await connection.execute("VACUUM ANALYZE")
            row = await connection.fetchrow(
                "SELECT (SELECT count(*) FROM conversations) AS conversations, "
                "(SELECT count(*) FROM messages) AS messages, (SELECT count(*) FROM jobs) AS jobs"
            )
            return {key: int(value) for key, value in row.items()}
        finally:
            await connection.close()

    counts = asyncio.run(go())
    harness.progress(f"seeded in {time.perf_counter() - started:.0f} s: {counts}")
    return {"integration_id": str(integration), "secret": secret, "rows": counts}


@contextlib.contextmanager
def copy_of(template_url: str, admin_url: str) -> Iterator[str]:
    name = f"{_name(template_url)}_copy_{secrets.token_hex(3)}"
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{_name(template_url)}"'))
    try:
        yield _with_database(template_url, name)
    finally:
        asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


class Purge(threading.Thread):
    """`run_maintenance_tasks()` passes through the app's service (`run_pass`: each its own
    transaction, the settings' default intervals), each timed from BEGIN to COMMIT, until none
    reports work remaining. Clearing `active` pauses it between two passes."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.active = threading.Event()
        self.active.set()
        self.pass_seconds: list[float] = []
        self.messages_deleted = 0
        self.analyzed: list[str] = []
        self.elapsed = 0.0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._passes())
        except BaseException as exc:  # reported by the caller
            self.error = exc

    async def _passes(self) -> None:
        from app.config import Settings
        from app.core.db import create_engine
        from app.domain.maintenance.service import RetentionPolicy, run_pass

        settings = Settings(database_url=self.url)
        engine = create_engine(settings, settings.async_database_url or self.url)
        policy = RetentionPolicy.from_settings(settings)
        started = time.perf_counter()
        try:
            while True:
                if not self.active.is_set():
                    await asyncio.sleep(0.01)
                    continue
                begun = time.perf_counter()
                summary = await run_pass(engine, policy)
                self.pass_seconds.append(time.perf_counter() - begun)
                self.messages_deleted += summary["messages_deleted"]
                if summary["analyzed"]:
                    self.analyzed.append(summary["analyzed"])
                if not summary["work_remaining"]:
                    break
        finally:
            await engine.dispose()
        # Pauses included: the wall time of (a), where nothing pauses it.
        self.elapsed = time.perf_counter() - started

    def report(self) -> dict[str, Any]:
        if self.error is not None:
            raise self.error
        ordered = sorted(self.pass_seconds)
        return {
            "seconds": round(self.elapsed, 2),
            "seconds_in_passes": round(sum(ordered), 2),
            "passes": len(ordered),
            "messages_deleted": self.messages_deleted,
            "analyzed": self.analyzed,
            "pass_seconds": {
                "median": round(harness.median(ordered), 4),
                "p99": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))], 4),
                "max": round(ordered[-1], 4),
            },
        }


def purge_by_passes(url: str) -> dict[str, Any]:
    purge = Purge(url)
    purge.start()
    purge.join()
    return purge.report()


def plain_delete(url: str) -> dict[str, Any]:
    async def go() -> dict[str, Any]:
        connection = await asyncpg.connect(url, timeout=30)
        try:
            started = time.perf_counter()
            status = await connection.execute(PLAIN_DELETE)
            return {
                "seconds": round(time.perf_counter() - started, 2),
                "messages_deleted": int(status.split()[-1]),
            }
        finally:
            await connection.close()

    return asyncio.run(go())


class OldestTransaction:
    """Samples pg_stat_activity: the oldest open transaction of a Botlyne connection."""

    def __init__(self, url: str, interval: float = 0.05) -> None:
        self.url = url
        self.interval = interval
        self.oldest_s = 0.0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._sample()), daemon=True)

    async def _sample(self) -> None:
        connection = await asyncpg.connect(self.url, timeout=30)
        try:
            while not self._stop.is_set():
                age = await connection.fetchval(
                    "SELECT coalesce(max(extract(epoch FROM clock_timestamp() - xact_start)), 0) "
                    "FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name = 'botlyne' AND xact_start IS NOT NULL"
                )
                self.oldest_s = max(self.oldest_s, float(age))
                self.samples += 1
                await asyncio.sleep(self.interval)
        finally:
            await connection.close()

    def __enter__(self) -> OldestTransaction:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def ingestion(
    url: str, seeded: dict[str, Any], args: argparse.Namespace, workdir: Any
) -> dict[str, Any]:
    server_cpus, client_cpus = harness.split_cpus(not args.no_pin)
    server = harness.botlyne_server(
        {
            "DATABASE_URL": url,
            "AUTO_MIGRATE": "false",
            "RUN_WORKERS": "false",
            "ENABLE_STRUCTURED_LOGGING": "true",
            "LOG_LEVEL": "INFO",
        },
        workdir=workdir,
        cpus=server_cpus,
    )
    webhook = server.url(WEBHOOK_PATH.format(id=seeded["integration_id"]))
    purge = Purge(url)
    purge.active.clear()
    purge.start()
    windows: list[dict[str, Any]] = []
    with server, OldestTransaction(url) as oldest:
        for number in range(2 * args.pairs):
            side = "purging" if number % 2 else "idle"
            if side == "purging":
                purge.active.set()
            result = harness.run_load(
                webhook,
                connections=args.connections,
                duration=args.window,
                warmup=1,
                tool="python",
                cpus=client_cpus,
                server=server,
                requests=ACCEPTED,
                requests_arg=json.dumps({"secret": seeded["secret"], "token": f"w{number}"}),
            )
            # A purge that finished inside its window did not cover it: not a purging figure.
            result["side"] = side if side == "idle" or purge.is_alive() else "purge_ended"
            result["accepted_per_s"] = result["status_counts"].get("202", 0) / result["duration_s"]
            purge.active.clear()
            windows.append(result)
            harness.progress(
                f"  {result['side']}: {result['accepted_per_s']:.1f} accepted/s, "
                f"other processes {result['other_cpu_util']} cores"
            )
        purge.active.set()
        purge.join()
    rates = {
        side: [w["accepted_per_s"] for w in windows if w["side"] == side]
        for side in ("idle", "purging")
    }
    return {
        "windows": windows,
        "accepted_per_s_median": {side: harness.median(r) for side, r in rates.items() if r},
        "ratio": round(harness.median(rates["purging"]) / harness.median(rates["idle"]), 3)
        if rates["purging"]
        else None,
        "purge": purge.report(),
        "oldest_botlyne_transaction_s": round(oldest.oldest_s, 3),
        "activity_samples": oldest.samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    command = shlex.join([sys.executable, "-m", "bench.maintenance", *(argv or sys.argv[1:])])
    machine = harness.machine_info()
    admin = args.admin_database_url
    rounds: list[dict[str, Any]] = []
    ingestion_rounds: list[dict[str, Any]] = []
    with (
        harness.fresh_database(admin, prefix="bench_maint") as template,
        harness.scratch_dir("botlyne-bench-maintenance-") as workdir,
    ):
        seeded = seed(template, args)
        for number in range(args.rounds):
            entry: dict[str, Any] = {"round": number + 1}
            order = ("passes", "delete") if number % 2 == 0 else ("delete", "passes")
            for side in order:
                with copy_of(template, admin) as copy:
                    harness.wait_for_quiet()
                    entry[side] = purge_by_passes(copy) if side == "passes" else plain_delete(copy)
                harness.progress(f"round {number + 1} {side}: {entry[side]}")
            entry["ratio"] = round(entry["passes"]["seconds"] / entry["delete"]["seconds"], 3)
            rounds.append(entry)
            if not args.skip_ingestion:
                with copy_of(template, admin) as copy:
                    ingestion_rounds.append(ingestion(copy, seeded, args, workdir))
                harness.progress(f"round {number + 1} ingestion: {ingestion_rounds[-1]['ratio']}")

    passes = [entry["passes"]["seconds"] for entry in rounds]
    deletes = [entry["delete"]["seconds"] for entry in rounds]
    longest = max(entry["passes"]["pass_seconds"]["max"] for entry in rounds)
    summary: dict[str, Any] = {
        "purge_seconds_median": {
            "passes": harness.median(passes),
            "delete": harness.median(deletes),
        },
        # Each round's two sides ran back to back: their ratio is the better-matched figure.
        "purge_ratio_median": harness.median(entry["ratio"] for entry in rounds),
        "purge_ratio_of_medians": round(harness.median(passes) / harness.median(deletes), 3),
        "purge_goal": GOAL_PURGE_RATIO,
        "longest_transaction_s": longest,
        "longest_transaction_goal_s": GOAL_LONGEST_TRANSACTION_S,
    }
    if ingestion_rounds:
        summary["ingestion_ratio_median"] = harness.median(
            r["ratio"] for r in ingestion_rounds if r["ratio"] is not None
        )
        summary["ingestion_goal"] = GOAL_INGESTION_RATIO
        summary["oldest_botlyne_transaction_during_purge_s"] = max(
            r["oldest_botlyne_transaction_s"] for r in ingestion_rounds
        )
    harness.write_results(
        "maintenance",
        {
            "benchmark": "maintenance",
            "command": command,
            "machine": machine,
            "parameters": {
                key: value for key, value in vars(args).items() if key != "admin_database_url"
            },
            "seeded_rows": seeded["rows"],
            "summary": summary,
            "rounds": rounds,
            "ingestion": ingestion_rounds,
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
