"""The `botlyne` console script: serve, workers, database migrations, organizations and
maintenance."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable, Sequence
from types import FrameType
from typing import Any

from alembic import command

from app.config import ConfigError, Settings, load_settings
from app.core.logging import configure_logging
from app.core.migrations import alembic_config, database_url_for, upgrade


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    url = database_url_for(settings)
    if settings.auto_migrate:
        upgrade(url)
    # Worker processes read their settings from the environment: hand them the resolved database
    # (the embedded server this process started) and tell them migrations are done.
    os.environ["DATABASE_URL"] = url
    os.environ["AUTO_MIGRATE"] = "false"
    # uvicorn shuts down gracefully on SIGTERM and then raises the signal again under the
    # handler it found. Python's default would kill the process before `atexit` runs, leaving the
    # embedded PostgreSQL running; as an exception the exit unwinds normally.
    signal.signal(signal.SIGTERM, _exit_normally)
    uvicorn.run(
        "app.asgi:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
        proxy_headers=False,  # the webhook decides client IPs itself, from TRUSTED_PROXIES
        server_header=False,
    )
    return 0


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    """The background workers without the HTTP server, until SIGTERM or SIGINT."""
    from app.core.db import create_engine, create_sessionmaker
    from app.core.events import PUBLISH_CONNECTIONS, EventBus, redis_publisher
    from app.core.redis import RedisLane, create_redis
    from app.core.resilience import resilience_manager
    from app.domain.agents.presence import Presence
    from app.domain.conversations.answers import KnowledgeAnswerer
    from app.domain.health.monitor import monitoring
    from app.domain.maintenance.service import keep_maintaining
    from app.gateways.gemini import GeminiGateway
    from app.gateways.http import create_http_client
    from app.workers.runtime import (
        build_runners,
        keep_applying_timeouts,
        keep_checking_presence,
        running,
    )

    url = database_url_for(settings)
    if settings.auto_migrate:
        upgrade(url)

    async def run() -> None:
        engine = create_engine(settings, url)
        redis = create_redis(settings)
        resilience_manager.configure(settings, redis)
        http = create_http_client()
        gemini = GeminiGateway(settings)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        sessionmaker = create_sessionmaker(engine)
        # Events raised here reach API processes through Redis; without it nobody could listen.
        lane = RedisLane(redis, PUBLISH_CONNECTIONS) if redis is not None else None
        events = EventBus(redis_publisher(lane) if lane is not None else None, engine)
        events.bind(sessionmaker)
        presence = Presence(redis, settings.presence_grace_seconds)
        answerer = KnowledgeAnswerer(gemini)
        runners = build_runners(settings, engine, sessionmaker, http, answerer, events)
        try:
            async with (
                monitoring(settings, engine, redis, http, gemini) as monitor,
                running(
                    runners,
                    keep_applying_timeouts(settings, sessionmaker),
                    keep_checking_presence(presence, sessionmaker),
                    monitor.keep_sampling(),
                    keep_maintaining(settings, engine),
                ),
            ):
                await stop.wait()
            await events.aclose()
        finally:
            await gemini.aclose()
            await http.aclose()
            if lane is not None:
                await lane.aclose()
            if redis is not None:
                await redis.aclose()
            await engine.dispose()

    asyncio.run(run())
    return 0


def _db(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "sql":
        command.upgrade(alembic_config(), f"{args.revision or 'head'}", sql=True)
        return 0
    config = alembic_config(database_url_for(settings))
    if args.action == "upgrade":
        command.upgrade(config, args.revision or "head")
    elif args.action == "downgrade":
        if not args.revision:
            print("botlyne db downgrade: a revision is required (e.g. -1 or base)", file=sys.stderr)
            return 2
        command.downgrade(config, args.revision)
    elif args.action == "current":
        command.current(config)
    else:
        command.check(config)
    return 0


def _org_create(args: argparse.Namespace, settings: Settings) -> int:
    from app.core.db import create_engine, create_sessionmaker
    from app.domain.orgs.service import create_organization

    url = database_url_for(settings)
    if settings.auto_migrate:
        upgrade(url)

    async def run() -> tuple[str, str]:
        engine = create_engine(settings, url)
        try:
            async with create_sessionmaker(engine).begin() as session:
                org, key = await create_organization(session, args.name)
                return str(org.id), key
        finally:
            await engine.dispose()

    org_id, key = asyncio.run(run())
    if args.json:
        print(json.dumps({"org_id": org_id, "api_key": key}))
    else:
        print(f"organization {args.name}: {org_id}\nadmin API key (shown once): {key}")
    return 0


def _maintenance_run(args: argparse.Namespace, settings: Settings) -> int:
    from app.core.db import create_engine
    from app.domain.maintenance.service import RetentionPolicy, run

    url = database_url_for(settings)
    if settings.auto_migrate:
        upgrade(url)

    async def passes() -> dict[str, Any]:
        engine = create_engine(settings, url)
        try:
            policy = RetentionPolicy.from_settings(settings)
            return await run(engine, policy, max_passes=1 if args.once else None)
        finally:
            await engine.dispose()

    summary = asyncio.run(passes())
    if args.json:
        print(json.dumps(summary))
    elif summary["skipped"]:
        print("maintenance: skipped, another session is running a pass (it does the work)")
    else:
        print(f"maintenance: {summary['passes']} pass(es) in {summary['duration_ms']} ms")
        for key, value in summary.items():
            if key not in ("passes", "skipped", "duration_ms"):
                shown = ("yes" if value else "no") if isinstance(value, bool) else value
                print(f"  {key.replace('_', ' ')}: {shown}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="botlyne", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)
    serve.set_defaults(handler=_serve)

    worker = commands.add_parser("worker", help="run the background workers (no HTTP)")
    worker.set_defaults(handler=_worker)

    db = commands.add_parser("db", help="database migrations (Alembic)")
    db.add_argument("action", choices=["upgrade", "downgrade", "current", "sql", "check"])
    db.add_argument("revision", nargs="?", help="target revision (upgrade, downgrade, sql)")
    db.set_defaults(handler=_db)

    org = commands.add_parser("org", help="organizations")
    org_commands = org.add_subparsers(dest="org_command", required=True)
    create = org_commands.add_parser("create", help="create an organization and its admin key")
    create.add_argument("--name", required=True)
    create.add_argument("--json", action="store_true", help="print JSON")
    create.set_defaults(handler=_org_create)

    maintenance = commands.add_parser("maintenance", help="retention and clean-up")
    maintenance_commands = maintenance.add_subparsers(dest="maintenance_command", required=True)
    run = maintenance_commands.add_parser(
        "run", help="run maintenance passes (run_maintenance_tasks) until no work remains"
    )
    run.add_argument("--once", action="store_true", help="one pass only")
    run.add_argument("--json", action="store_true", help="print the summary as JSON")
    run.set_defaults(handler=_maintenance_run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"botlyne: configuration error: {exc}", file=sys.stderr)
        return 2
    # The long-running processes log JSON lines (when structured); the other commands log to
    # stderr, since their stdout is their result (JSON, SQL).
    configure_logging(
        settings.log_level,
        settings.enable_structured_logging and args.command in ("serve", "worker"),
    )
    handler: Callable[[argparse.Namespace, Settings], int] = args.handler
    return handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
