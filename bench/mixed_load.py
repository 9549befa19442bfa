"""Mixed traffic for minutes against `botlyne serve` + `botlyne worker`: nothing fails, nothing is
lost, memory stays flat.

`python -m bench.mixed_load [--duration 300] [--warmup 60] [--rates webhook=40,query=5,...]`

The stack, as deployed: one `botlyne serve` (`RUN_WORKERS=false`) and one `botlyne worker` on a
fresh database of the local PostgreSQL and the local Redis; Gemini and Evolution API are the
test stubs (`tests/stubs`, their base URLs in the environment), and the generic integrations'
callback URL is a recording stub too. Through the API: a knowledge base with a few articles,
two Evolution and two generic integrations answering from it, four online agents.

The traffic comes from a second process (`python -m bench.mixed_load drive PLAN OUT`), open
loop: each kind of request is due at its own fixed rate whatever the server does, on shared
keep-alive connections (httpx), with a 15 s timeout:

- `webhook`: signed deliveries spread over the four integrations, each a new message (its own
  `message_id`) of one of a few hundred customers; one in twenty asks for a person.
- `query`: `POST /api/v1/query` with questions the articles answer.
- `agent`: an agent's desk in turn: the queue, a conversation's messages, an escalation, an
  answer by the conversation's agent, a resolution (a 409 for a move that no longer applies is a
  correct answer, not an error).
- `health`: `/health/live`, every fifth `/health/ready`.
- `metrics`: `/metrics` with the observability token.

Reported per kind: requests, status counts, client errors and latency percentiles (from the
moment the request was sent). Afterwards, once the worker has drained its jobs: every delivery
answered 202 must be a stored message (`lost` lists those that are not), the outbox's state,
and duplicates (callbacks carry the message id; Evolution sends are counted against the messages
marked sent). The RSS of the server and of the worker (each with its children) is sampled every
2 s; `rss.growth` compares the median of the last minute with the median of the minute after
`--warmup`. Goals: no 5xx, nothing lost, growth < 10 %.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import itertools
import json
import secrets
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import harness
from bench.webhook import ADMIN_KEY, DEFAULT_REDIS_URL, WEBHOOK_PATH, http_request, sql

DEFAULT_RATES = {"webhook": 40.0, "query": 5.0, "agent": 5.0, "health": 10.0, "metrics": 1.0}
OBSERVABILITY_TOKEN = "bench-observability-token-0123456789"
GOAL_RSS_GROWTH = 0.10
REQUEST_TIMEOUT = 15.0
MAX_IN_FLIGHT = 300  # per kind; past it a due request is counted as `client_skipped`

ARTICLES = {
    "Shipping": (
        "## Shipping times\n\nOrders ship within 2 business days from our warehouse in Campinas."
        " Delivery to capitals takes 3 to 5 business days after shipping.\n\n## Tracking\n\n"
        "Every order gets a tracking code by e-mail once it ships."
    ),
    "Returns": (
        "## Returns\n\nYou can return any product within 30 days of delivery. Refunds reach "
        "your card within 10 business days after we receive the product."
    ),
    "Payments": (
        "## Payment methods\n\nWe accept credit cards, Pix and boleto. Boleto payments are "
        "confirmed within 2 business days."
    ),
}
QUESTIONS = (
    "How long does shipping take?",
    "Where is my tracking code?",
    "Can I return a product?",
    "When will I get my refund?",
    "Do you accept Pix?",
)
HUMAN = "I want to talk to a person, please"


# --------------------------------------------------------------------------------------------
# The stack: stubs, database, server and worker


class CallbackReceiver:
    """The generic integrations' callback URL: answers 200 and counts each message id."""

    def __init__(self) -> None:
        from tests.stubs.server import Request, Response, StubServer

        self.received: Counter[str] = Counter()
        self._lock = threading.Lock()

        async def handle(request: Request) -> Response:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                message_id = str(request.json()["message_id"])
                with self._lock:
                    self.received[message_id] += 1
            return Response.json(200, {"ok": True})

        self.server = StubServer(handle)

    def counts(self) -> Counter[str]:
        with self._lock:
            return Counter(self.received)


@dataclass
class Stack:
    database_url: str
    server: harness.ServerProcess
    worker: harness.ServerProcess
    evolution: Any
    gemini: Any
    callbacks: CallbackReceiver
    workdir: Path
    env: dict[str, str]

    def start_worker(self) -> harness.ServerProcess:
        """A (new) `botlyne worker`, started; the old one must have exited."""
        self.worker = worker_process(self.env, self.workdir)
        self.worker.start()
        wait_for_message(self.worker, "workers started")
        return self.worker


def worker_process(env: dict[str, str], workdir: Path) -> harness.ServerProcess:
    # No HTTP: port and ready path are unused; readiness is its "workers started" log line.
    return harness.ServerProcess(
        "worker",
        [harness.botlyne_executable(), "worker"],
        port=0,
        env=harness.server_env(env),
        cwd=workdir,
        ready_path="/",
    )


def wait_for_message(process: harness.ServerProcess, prefix: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(str(r.get("message", "")).startswith(prefix) for r in process.log_records()):
        if process.process is not None and process.process.poll() is not None:
            raise harness.ServerError(f"{process.name} exited\n{process.log_tail()}")
        if time.monotonic() > deadline:
            raise harness.ServerError(f"{process.name}: no {prefix!r} line\n{process.log_tail()}")
        time.sleep(0.1)


@contextlib.contextmanager
def stack(
    *,
    redis_url: str,
    admin_database_url: str,
    env: dict[str, str] | None = None,
    database_host_port: tuple[str, int] | None = None,
) -> Iterator[Stack]:
    """Stubs, a fresh database, `botlyne serve` and `botlyne worker`, all stopped afterwards.

    `database_host_port` makes the processes reach PostgreSQL at another address (a proxy in
    front of it); the benchmark itself always uses the direct URL.
    """
    from tests.stubs.evolution import EvolutionStub
    from tests.stubs.gemini import GeminiStub

    callbacks = CallbackReceiver()
    with (
        EvolutionStub() as evolution,
        GeminiStub() as gemini,
        callbacks.server,
        harness.scratch_dir("botlyne-mixed-") as workdir,
        harness.fresh_database(admin_database_url, prefix="bench_mixed") as database_url,
    ):
        served_url = database_url
        if database_host_port is not None:
            from urllib.parse import urlsplit, urlunsplit

            parts = urlsplit(database_url)
            host, port = database_host_port
            netloc = f"{parts.username}@{host}:{port}" if parts.username else f"{host}:{port}"
            served_url = urlunsplit(parts._replace(netloc=netloc))
        # Migrations first, alone, as a deployment's migration Job does.
        harness.progress("migrating the fresh database")
        subprocess.run(
            [harness.botlyne_executable(), "db", "upgrade"],
            env=harness.server_env({"DATABASE_URL": database_url}),
            cwd=workdir,
            check=True,
            capture_output=True,
        )
        settings = {
            "DATABASE_URL": served_url,
            "REDIS_URL": redis_url,
            "AUTO_MIGRATE": "false",
            "BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "OBSERVABILITY_TOKEN": OBSERVABILITY_TOKEN,
            "GOOGLE_API_KEY": gemini.api_key,
            "GOOGLE_API_BASE_URL": gemini.base_url,
            "EVOLUTION_API_BASE_URL": evolution.base_url,
            "EVOLUTION_API_GLOBAL_KEY": evolution.api_key,
            "WEBHOOK_FAILED_ATTEMPTS_PER_MINUTE": "100000",
            "ENABLE_STRUCTURED_LOGGING": "true",
            "LOG_LEVEL": "INFO",
            **(env or {}),
        }
        server = harness.botlyne_server({**settings, "RUN_WORKERS": "false"}, workdir=workdir)
        built = Stack(
            database_url,
            server,
            worker_process(settings, workdir),
            evolution,
            gemini,
            callbacks,
            workdir,
            settings,
        )
        try:
            server.start()
            server.wait_ready()
            built.start_worker()
            yield built
        finally:
            built.worker.stop()
            server.stop()


def _api(stack: Stack, method: str, path: str, payload: Any) -> Any:
    status, body = http_request(
        stack.server.url(path),
        method,
        json.dumps(payload).encode(),
        {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"},
    )
    if status >= 300:
        raise harness.ServerError(f"{method} {path}: {status} {body[:300]!r}")
    return json.loads(body) if body else None


def setup(stack: Stack) -> dict[str, Any]:
    """The knowledge base, integrations and agents; the plan handed to the traffic process."""
    kb = _api(stack, "POST", "/api/v1/knowledge-bases", {"name": "help"})
    for title, content in ARTICLES.items():
        _api(
            stack,
            "POST",
            f"/api/v1/knowledge-bases/{kb['id']}/documents",
            {"title": title, "content": content, "content_type": "text/markdown"},
        )
    integrations = []
    for number in range(2):
        instance = f"store-{number}"
        created = _api(
            stack,
            "POST",
            "/api/v1/integrations",
            {
                "name": f"whatsapp {number}",
                "type": "evolution",
                "knowledge_base_id": kb["id"],
                "rate_limit_per_minute": 1_000_000,
                "rate_limit_per_hour": 1_000_000,
                "config": {"instance": instance},
            },
        )
        integrations.append(
            {"id": created["id"], "secret": created["secret"], "instance": instance}
        )
        created = _api(
            stack,
            "POST",
            "/api/v1/integrations",
            {
                "name": f"site {number}",
                "type": "generic",
                "knowledge_base_id": kb["id"],
                "rate_limit_per_minute": 1_000_000,
                "rate_limit_per_hour": 1_000_000,
                "config": {"callback_url": f"{stack.callbacks.server.base_url}/hook"},
            },
        )
        integrations.append({"id": created["id"], "secret": created["secret"], "instance": None})
    agents = []
    for number in range(4):
        agent = _api(
            stack,
            "POST",
            "/api/v1/agents",
            {
                "name": f"Agent {number}",
                "email": f"agent{number}@example.com",
                "max_concurrent_conversations": 50,
            },
        )
        _api(stack, "PUT", f"/api/v1/agents/{agent['id']}/status", {"status": "online"})
        agents.append(agent["id"])
    return {
        "base": stack.server.url(""),
        "admin_key": ADMIN_KEY,
        "observability_token": OBSERVABILITY_TOKEN,
        "integrations": integrations,
        "agents": agents,
        "token": secrets.token_hex(4),
    }


# --------------------------------------------------------------------------------------------
# The traffic process


@dataclass
class Recorder:
    """What the traffic process saw: per kind statuses and latencies, per second the classes."""

    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    statuses: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    per_second: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    accepted: list[str] = field(default_factory=list)

    def record(self, kind: str, status: int | str, sent: float) -> None:
        now = time.monotonic()
        self.statuses[kind][str(status)] += 1
        if isinstance(status, int):
            self.latencies[kind].append((now - sent) * 1000)
        self.per_second[int(sent - self.started)][f"{kind}:{status}"] += 1

    def result(self, elapsed: float) -> dict[str, Any]:
        kinds = {}
        for kind, statuses in sorted(self.statuses.items()):
            latencies = sorted(self.latencies[kind])
            total = sum(statuses.values())
            kinds[kind] = {
                "requests": total,
                "requests_per_s": round(total / elapsed, 1),
                "status_counts": dict(sorted(statuses.items())),
                "latency_ms": percentiles(latencies),
            }
        return {
            "started_wall": self.started_wall,
            "duration_s": round(elapsed, 1),
            "kinds": kinds,
            "per_second": {str(k): dict(v) for k, v in sorted(self.per_second.items())},
            "accepted_message_ids": self.accepted,
        }


def percentiles(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {}

    def at(fraction: float) -> float:
        return round(values[min(len(values) - 1, int(fraction * len(values)))], 2)

    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": round(values[-1], 2)}


class Traffic:
    """Builds and sends each kind of request; one instance per traffic process."""

    def __init__(self, client: Any, plan: dict[str, Any], recorder: Recorder) -> None:
        self.client = client
        self.plan = plan
        self.recorder = recorder
        self.admin = {"Authorization": f"Bearer {plan['admin_key']}"}
        self.conversations: list[str] = []
        self.agent_steps = itertools.count()

    async def send(self, kind: str, method: str, path: str, **kwargs: Any) -> Any:
        sent = time.monotonic()
        try:
            response = await self.client.request(method, path, **kwargs)
        except Exception as exc:  # any failure to get an answer is what users see
            self.recorder.record(kind, type(exc).__name__, sent)
            return None
        self.recorder.record(kind, response.status_code, sent)
        return response

    async def webhook(self, number: int) -> None:
        from tests.stubs.evolution import messages_upsert_payload

        integrations = self.plan["integrations"]
        integration = integrations[number % len(integrations)]
        customer = number // len(integrations) % 300
        text = HUMAN if number % 20 == 19 else QUESTIONS[number % len(QUESTIONS)]
        message_id = f"{self.plan['token']}-{number}"
        payload: dict[str, Any]
        if integration["instance"]:
            payload = messages_upsert_payload(
                integration["instance"], f"55119{customer:08d}", text, message_id=message_id
            )
        else:
            payload = {
                "message": {"body": text},
                "sender": {"id": f"web-{customer}"},
                "message_id": message_id,
            }
        body = json.dumps(payload).encode()
        timestamp = str(int(time.time()))
        mac = hmac.new(integration["secret"].encode(), f"{timestamp}.".encode() + body, "sha256")
        headers = {
            "Content-Type": "application/json",
            "X-Timestamp": timestamp,
            "X-Signature": f"sha256={mac.hexdigest()}",
        }
        path = WEBHOOK_PATH.format(id=integration["id"])
        response = await self.send("webhook", "POST", path, content=body, headers=headers)
        if response is not None and response.status_code == 202:
            self.recorder.accepted.append(message_id)

    async def query(self, number: int) -> None:
        question = {"question": QUESTIONS[number % len(QUESTIONS)]}
        await self.send("query", "POST", "/api/v1/query", json=question, headers=self.admin)

    async def health(self, number: int) -> None:
        await self.send("health", "GET", "/health/ready" if number % 5 == 4 else "/health/live")

    async def metrics(self, number: int) -> None:
        token = {"Authorization": f"Bearer {self.plan['observability_token']}"}
        await self.send("metrics", "GET", "/metrics", headers=token)

    async def agent(self, number: int) -> None:
        step = next(self.agent_steps)
        if step % 50 == 0 or not self.conversations:
            listed = await self.send(
                "agent", "GET", "/api/v1/conversations", params={"limit": 50}, headers=self.admin
            )
            if listed is not None and listed.status_code == 200:
                self.conversations = [item["id"] for item in listed.json()["items"]]
            return
        conversation = self.conversations[step % len(self.conversations)]
        move = step % 5
        if move == 0:
            await self.send("agent", "GET", "/api/v1/agents/queue", headers=self.admin)
        elif move == 1:
            path = f"/api/v1/conversations/{conversation}/messages"
            await self.send("agent", "GET", path, headers=self.admin)
        elif move == 2:
            path = f"/api/v1/agents/escalate/{conversation}"
            await self.send("agent", "POST", path, json={"reason": "load"}, headers=self.admin)
        elif move == 3:
            found = await self.send(
                "agent", "GET", f"/api/v1/conversations/{conversation}", headers=self.admin
            )
            if found is None or found.status_code != 200:
                return
            agent_id = found.json().get("assigned_agent_id")
            if agent_id:
                await self.send(
                    "agent",
                    "POST",
                    f"/api/v1/agents/response/{conversation}",
                    json={"agent_id": agent_id, "message": "Let me check that for you."},
                    headers=self.admin,
                )
        else:
            path = f"/api/v1/conversations/{conversation}/resolve"
            await self.send("agent", "POST", path, json={}, headers=self.admin)


async def pace(rate: float, action: Any, kind: str, recorder: Recorder, until: float) -> None:
    """Open loop: `action(n)` due every 1/rate s until `until`, each in its own task."""
    in_flight: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    for number in itertools.count():
        due = started + number / rate
        if due >= until:
            break
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        if len(in_flight) >= MAX_IN_FLIGHT:
            recorder.record(kind, "client_skipped", time.monotonic())
            continue
        task = asyncio.create_task(action(number))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)


async def drive(plan: dict[str, Any], duration: float, rates: dict[str, float]) -> dict[str, Any]:
    import httpx

    recorder = Recorder()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=64)
    async with httpx.AsyncClient(
        base_url=plan["base"], timeout=REQUEST_TIMEOUT, limits=limits
    ) as client:
        traffic = Traffic(client, plan, recorder)
        until = time.monotonic() + duration
        await asyncio.gather(
            *(
                pace(rate, getattr(traffic, kind), kind, recorder, until)
                for kind, rate in rates.items()
                if rate > 0
            )
        )
    return recorder.result(time.monotonic() - recorder.started)


class TrafficProcess:
    """`python -m bench.mixed_load drive`: the traffic, from a process of its own."""

    def __init__(
        self, plan: dict[str, Any], duration: float, rates: dict[str, float], workdir: Path
    ) -> None:
        self.plan_path = workdir / "plan.json"
        self.out_path = workdir / "traffic.json"
        self.plan_path.write_text(json.dumps({**plan, "duration": duration, "rates": rates}))
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.mixed_load", "drive", str(self.plan_path)],
            cwd=harness.REPO_ROOT,
            stdout=self.out_path.open("wb"),
            start_new_session=True,
        )
        self.started = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def wait(self) -> dict[str, Any]:
        if self.process.wait() != 0:
            raise RuntimeError(f"the traffic process exited with {self.process.returncode}")
        result: dict[str, Any] = json.loads(self.out_path.read_text())
        return result

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


# --------------------------------------------------------------------------------------------
# Memory and the data afterwards


class RssSampler(threading.Thread):
    """RSS (MiB) of processes and their children every `interval` s, with the time."""

    def __init__(self, processes: dict[str, harness.ServerProcess], interval: float = 2.0):
        super().__init__(daemon=True)
        self.processes = processes
        self.interval = interval
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in processes}
        self.started = time.monotonic()
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.wait(self.interval):
            for name, server in self.processes.items():
                try:
                    process = psutil.Process(server.pid)
                    rss = process.memory_info().rss + sum(
                        child.memory_info().rss for child in process.children(recursive=True)
                    )
                except psutil.Error:
                    continue
                self.samples[name].append((time.monotonic() - self.started, rss / 2**20))

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    def summary(self, warmup: float, window: float = 60.0) -> dict[str, Any]:
        result = {}
        for name, samples in self.samples.items():
            if not samples:
                continue
            end = samples[-1][0]
            after_warmup = [v for t, v in samples if warmup <= t < warmup + window]
            last = [v for t, v in samples if t >= end - window]
            base = statistics.median(after_warmup) if after_warmup else samples[0][1]
            final = statistics.median(last)
            result[name] = {
                "mib_after_warmup": round(base, 1),
                "mib_last_minute": round(final, 1),
                "mib_max": round(max(v for _, v in samples), 1),
                "growth": round(final / base - 1, 4),
            }
        return result


def wait_drained(database_url: str, timeout: float = 300.0) -> float:
    """Seconds until no job is pending or running (deliveries waiting on a retry included)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        rows = sql(database_url, "SELECT count(*) FROM jobs WHERE status IN ('pending', 'running')")
        if rows[0][0] == 0:
            break
        time.sleep(1)
    return round(time.monotonic() - started, 1)


def check_data(stack: Stack, accepted: Sequence[str]) -> dict[str, Any]:
    """Every 202 a stored message; the outbox's end state; duplicate sends."""
    import asyncpg

    async def query() -> dict[str, Any]:
        connection = await asyncpg.connect(stack.database_url)
        try:
            stored = {
                row[0]
                for row in await connection.fetch(
                    "SELECT external_id FROM messages WHERE role = 'user' "
                    "AND external_id = ANY($1::text[])",
                    list(accepted),
                )
            }
            outbox = {
                f"{row[0]}:{row[1]}": row[2]
                for row in await connection.fetch(
                    "SELECT i.type, m.delivery_status, count(*) FROM messages m "
                    "JOIN conversations c ON c.id = m.conversation_id "
                    "JOIN integrations i ON i.id = c.integration_id "
                    "WHERE m.delivery_status IS NOT NULL GROUP BY 1, 2 ORDER BY 1, 2"
                )
            }
            events = {
                row[0]: row[1]
                for row in await connection.fetch(
                    "SELECT outcome, count(*) FROM integration_events GROUP BY 1"
                )
            }
            jobs = {
                f"{row[0]}:{row[1]}": row[2]
                for row in await connection.fetch(
                    "SELECT kind, status, count(*) FROM jobs GROUP BY 1, 2 ORDER BY 1, 2"
                )
            }
        finally:
            await connection.close()
        return {"stored": stored, "outbox": outbox, "events": events, "jobs": jobs}

    found = asyncio.run(query())
    lost = sorted(set(accepted) - found["stored"])
    callbacks = stack.callbacks.counts()
    evolution_sends = len(stack.evolution.sent)
    evolution_sent_rows = found["outbox"].get("evolution:sent", 0)
    return {
        "accepted": len(accepted),
        "stored": len(found["stored"]),
        "lost": len(lost),
        "lost_examples": lost[:10],
        "integration_events": found["events"],
        "outbox": found["outbox"],
        "jobs": found["jobs"],
        "callbacks_received": sum(callbacks.values()),
        "callback_duplicates": sum(n - 1 for n in callbacks.values() if n > 1),
        "evolution_sends": evolution_sends,
        "evolution_duplicates": max(0, evolution_sends - evolution_sent_rows),
    }


def log_levels(process: harness.ServerProcess) -> dict[str, int]:
    """Counts of WARNING and worse lines of a process, by level and message (first 80 chars)."""
    found: Counter[str] = Counter()
    for record in process.log_records():
        if record.get("level") in ("WARNING", "ERROR", "CRITICAL"):
            found[f"{record['level']}: {str(record.get('message', ''))[:80]}"] += 1
    return dict(found.most_common(20))


def five_xx(traffic: dict[str, Any]) -> int:
    return sum(
        count
        for kind in traffic["kinds"].values()
        for status, count in kind["status_counts"].items()
        if status.isdigit() and int(status) >= 500
    )


# --------------------------------------------------------------------------------------------
# The command


def parse_rates(text: str | None) -> dict[str, float]:
    rates = dict(DEFAULT_RATES)
    for item in (text or "").split(","):
        if item.strip():
            kind, _, value = item.partition("=")
            if kind.strip() not in DEFAULT_RATES:
                raise SystemExit(f"unknown traffic kind {kind!r}; known: {', '.join(rates)}")
            rates[kind.strip()] = float(value)
    return rates


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.mixed_load", description=__doc__)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds before RSS counts")
    parser.add_argument("--rates", help="per kind requests/s, e.g. webhook=40,query=5")
    parser.add_argument("--admin-database-url", default=harness.DEFAULT_ADMIN_DATABASE_URL)
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments[:1] == ["drive"]:
        plan = json.loads(Path(arguments[1]).read_text())
        result = asyncio.run(drive(plan, plan["duration"], plan["rates"]))
        json.dump(result, sys.stdout)
        return 0
    args = parse_args(arguments)
    harness.exit_on_sigterm()
    rates = parse_rates(args.rates)
    info = harness.machine_info()
    with stack(redis_url=args.redis_url, admin_database_url=args.admin_database_url) as built:
        plan = setup(built)
        harness.progress(f"traffic for {args.duration:.0f} s at {rates}")
        sampler = RssSampler({"server": built.server, "worker": built.worker})
        sampler.start()
        traffic_process = TrafficProcess(plan, args.duration, rates, built.workdir)
        try:
            traffic = traffic_process.wait()
        finally:
            traffic_process.stop()
            sampler.stop()
        harness.progress("waiting for the worker to drain its jobs")
        drained_after = wait_drained(built.database_url)
        data = check_data(built, traffic.pop("accepted_message_ids"))
        rss = sampler.summary(args.warmup)
        logs = {"server": log_levels(built.server), "worker": log_levels(built.worker)}
    failures = five_xx(traffic)
    payload = {
        "benchmark": "mixed_load",
        "machine": info,
        "rates": rates,
        "traffic": {
            key: value
            for key, value in traffic.items()
            if key not in ("per_second", "started_wall")
        },
        "drained_after_s": drained_after,
        "data": data,
        "rss": rss,
        "logs_warning_or_worse": logs,
        "summary": {
            "five_xx": failures,
            "lost": data["lost"],
            "max_rss_growth": max(item["growth"] for item in rss.values()),
            "goals_met": failures == 0
            and data["lost"] == 0
            and all(item["growth"] < GOAL_RSS_GROWTH for item in rss.values()),
        },
    }
    harness.write_results("mixed_load", payload)
    return 0 if payload["summary"]["goals_met"] else 1


if __name__ == "__main__":
    sys.exit(main())
