"""Several replicas as production runs them: two `botlyne serve` and one `botlyne worker`, real
processes started with the console script, sharing one PostgreSQL database and one Redis, with
Gemini and Evolution API played by the stubs (their base URLs in the environment).

Every process runs the background workers, the queue timeouts and the maintenance scheduler
(`MAINTENANCE_INTERVAL_SECONDS` small), so each guarantee checked here is held by the database
and Redis, never by one process happening to do all the work. The processes are started once for
the module; each test works in an organization of its own, and the tables are emptied once the
processes have stopped (emptying them under running workers would deadlock with their
transactions).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.db import create_engine, create_sessionmaker
from app.domain.orgs.service import create_organization
from bench.harness import ServerProcess, botlyne_executable, botlyne_server, server_env
from tests.conftest import _truncate_all, make_settings
from tests.stubs.evolution import EvolutionStub
from tests.stubs.gemini import GeminiStub

SERVERS = 2
MAINTENANCE_INTERVAL = "0.3"


@dataclass
class Cluster:
    servers: list[ServerProcess]
    worker: ServerProcess
    evolution: EvolutionStub
    gemini: GeminiStub

    @property
    def processes(self) -> list[ServerProcess]:
        return [*self.servers, self.worker]

    def base(self, number: int) -> str:
        """The URL of server `number % SERVERS`: requests spread over the replicas by number."""
        return self.servers[number % len(self.servers)].url("")

    def messages(self, process: ServerProcess) -> list[str]:
        """The log messages of one process so far, in order."""
        return [str(record.get("message", "")) for record in process.log_records()]

    def check_alive(self) -> None:
        for process in self.processes:
            assert process.process is not None
            code = process.process.poll()
            assert code is None, f"{process.name} exited with {code}\n{process.log_tail()}"


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory, database_url: str, redis_url: str
) -> Iterator[Cluster]:
    workdir = tmp_path_factory.mktemp("replicas")
    with EvolutionStub() as evolution, GeminiStub() as gemini:
        env = {
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "AUTO_MIGRATE": "false",  # the database_url fixture has migrated it
            "RUN_WORKERS": "true",
            "WORKER_CONCURRENCY": "8",
            "DATABASE_POOL_SIZE": "5",
            "MAINTENANCE_INTERVAL_SECONDS": MAINTENANCE_INTERVAL,
            "QUEUE_CHECK_INTERVAL_SECONDS": "0.5",
            "HEALTH_CHECK_INTERVAL_SECONDS": "3600",
            "DELIVERY_RETRY_BASE_SECONDS": "0.05",
            "EVOLUTION_API_BASE_URL": evolution.base_url,
            "EVOLUTION_API_GLOBAL_KEY": evolution.api_key,
            "GOOGLE_API_KEY": gemini.api_key,
            "GOOGLE_API_BASE_URL": gemini.base_url,
            "ENABLE_STRUCTURED_LOGGING": "true",
            # The maintenance scheduler says at DEBUG when it found another pass running.
            "LOG_LEVEL": "DEBUG",
        }
        servers = [botlyne_server(env, workdir=workdir) for _ in range(SERVERS)]
        worker = ServerProcess(
            "worker",
            [botlyne_executable(), "worker"],
            port=0,
            env=server_env(env),
            cwd=workdir,
            ready_path="/",
        )
        cluster = Cluster(servers, worker, evolution, gemini)
        try:
            for process in cluster.processes:
                process.start()
            for server in servers:
                server.wait_ready(timeout=90)
            deadline = time.monotonic() + 90
            while not any(m.startswith("workers started") for m in cluster.messages(worker)):
                cluster.check_alive()
                assert time.monotonic() < deadline, worker.log_tail()
                time.sleep(0.1)
            yield cluster
        finally:
            for process in cluster.processes:
                process.stop()
            asyncio.run(_empty(database_url))


async def _empty(database_url: str) -> None:
    engine = create_engine(make_settings(database_url), database_url)
    try:
        await _truncate_all(engine)
    finally:
        await engine.dispose()


@dataclass
class Org:
    """An organization of the test's own and its admin key."""

    id: uuid.UUID
    admin: dict[str, str]


@pytest.fixture
async def org(engine: AsyncEngine) -> Org:
    async with create_sessionmaker(engine).begin() as session:
        organization, key = await create_organization(session, f"replicas-{uuid.uuid4().hex[:8]}")
    return Org(organization.id, {"Authorization": f"Bearer {key}"})


@pytest.fixture
async def http() -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def eventually(
    check: Any,
    what: str,
    timeout: float = 60.0,  # noqa: ASYNC109
    state: Any = None,
) -> Any:
    """Poll the coroutine function `check` until it returns something truthy; `state` is shown
    when it never does."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout:.0f} s ({state!r})")
        await asyncio.sleep(0.1)
