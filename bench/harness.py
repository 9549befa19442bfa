"""What every benchmark needs: servers started the way users start them, load, and result files.

Servers
    `botlyne_server(env, workdir=...)` runs the installed console script (`botlyne serve`), and
    `asgi_server("module:attr", workdir=...)` runs any ASGI app under uvicorn with the options
    `botlyne serve` uses (`bench.serve_asgi`). Both return a `ServerProcess`: a subprocess in its
    own session with its output in a log file, `wait_ready()` polling an HTTP path until it answers
    200 (returning the seconds since spawn), and `stop()` sending SIGTERM, then SIGKILL to the
    process group if the server does not exit in time. As a context manager it starts, waits and
    stops. `fresh_database()` creates a throw-away database on the local PostgreSQL and drops it.

Load
    `run_load(url, ...)` drives a server from a separate process: wrk when it is installed, else
    `python -m bench.load`. Both yield the same dictionary: requests/s, status counts, errors and
    latency p50/p90/p99/max in milliseconds, plus the cores used by the client, the server and
    everyone else during the run. `wait_for_quiet()` holds a run back while neighbours are busy.

Results
    `machine_info()` describes the run; `write_results(name, payload)` stores JSON under
    bench/results/ (gitignored) and prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.client
import json
import os
import platform
import resource
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
HOST = "127.0.0.1"
DEFAULT_ADMIN_DATABASE_URL = os.environ.get(
    "BENCH_ADMIN_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)

LoadTool = Literal["auto", "wrk", "python"]


class ServerError(RuntimeError):
    """A server that exited, or never became ready; the message ends with its log's tail."""


# --------------------------------------------------------------------------------------------
# Processes


def free_port(host: str = HOST) -> int:
    """A port nothing listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def split_cpus(pin: bool) -> tuple[set[int] | None, set[int] | None]:
    """CPUs for (server, load generator): one each when pinning and two are available.

    Pinning keeps the scheduler from stacking the single-threaded server and the client on one
    core now and then, which otherwise shows up as run-to-run noise on a 2-core machine.
    """
    available = sorted(os.sched_getaffinity(0))
    if not pin or len(available) < 2 or shutil.which("taskset") is None:
        return None, None
    return {available[0]}, {available[1]}


def pinned(argv: Sequence[str], cpus: Iterable[int] | None) -> list[str]:
    """`argv` run through taskset so that the process and all its children stay on `cpus`."""
    if not cpus:
        return list(argv)
    taskset = shutil.which("taskset")
    if taskset is None:
        return list(argv)
    return [taskset, "-c", ",".join(str(cpu) for cpu in sorted(cpus)), *argv]


def settings_variables() -> list[str]:
    """The environment variables Botlyne reads (one per Settings field)."""
    import msgspec

    from app.config import Settings

    return [field.name.upper() for field in msgspec.structs.fields(Settings)]


def server_env(overrides: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """This process's environment without any Botlyne setting, then `overrides` (None unsets).

    A DATABASE_URL exported in the operator's shell would otherwise silently turn an embedded
    cold start into a remote one.
    """
    env = dict(os.environ)
    for name in settings_variables():
        env.pop(name, None)
    for name, value in (overrides or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def botlyne_executable() -> str:
    """The console script next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).parent / "botlyne"
    if beside.exists():
        return str(beside)
    found = shutil.which("botlyne")
    if found is None:
        raise FileNotFoundError("botlyne console script not found; pip install -e . first")
    return found


def http_status(host: str, port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of one GET, or None when nothing answers."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return None
    finally:
        connection.close()


def http_get(url: str, timeout: float = 5.0) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and body of one GET."""
    parts = urlsplit(url)
    host, port = parts.hostname or HOST, parts.port or 80
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        body = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, body
    finally:
        connection.close()


class ServerProcess:
    """One server subprocess: start, wait until an HTTP path answers 200, stop."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        port: int,
        env: Mapping[str, str],
        cwd: Path,
        ready_path: str,
        host: str = HOST,
        cpus: Iterable[int] | None = None,
    ) -> None:
        self.name = name
        self.argv = pinned(argv, cpus)
        self.port = port
        self.host = host
        self.env = dict(env)
        self.cwd = cwd
        self.ready_path = ready_path
        self.log_path = cwd / f"{name}-{port}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.spawned_at = 0.0
        self.spawned_wall = 0.0
        self.ready_after: float | None = None
        self.returncode: int | None = None
        self.stopped_after: float | None = None
        self.killed = False

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}{path}"

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            # Timestamps taken right before the fork, so spawn-to-ready includes the interpreter
            # start and every import, as a user's `botlyne serve` does.
            self.spawned_wall = time.time()
            self.spawned_at = time.perf_counter()
            # A session of its own: a Ctrl-C in the benchmark's terminal must not reach the
            # server behind the harness's back, and a final SIGKILL can take the whole group.
            self.process = subprocess.Popen(
                self.argv,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 180.0, interval: float = 0.005) -> float:
        """Poll `ready_path` until it answers 200; return the seconds since spawn."""
        if self.process is None:
            raise RuntimeError(f"{self.name} is not started")
        deadline = self.spawned_at + timeout
        while True:
            code = self.process.poll()
            if code is not None:
                self.returncode = code
                raise ServerError(
                    f"{self.name} exited with status {code} before {self.ready_path} answered 200"
                    f"\n{self.log_tail()}"
                )
            if http_status(self.host, self.port, self.ready_path) == 200:
                self.ready_after = time.perf_counter() - self.spawned_at
                return self.ready_after
            if time.perf_counter() > deadline:
                raise ServerError(
                    f"{self.name}: {self.ready_path} did not answer 200 within {timeout:.0f} s"
                    f"\n{self.log_tail()}"
                )
            time.sleep(interval)

    def stop(self, timeout: float = 20.0, sig: signal.Signals = signal.SIGTERM) -> int | None:
        """`sig` (SIGTERM, as a service manager sends); SIGKILL the group after `timeout` s.

        Sets `returncode` (negative: killed by that signal), `stopped_after` (seconds from the
        signal to the exit) and `killed`.
        """
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            signalled = time.perf_counter()
            process.send_signal(sig)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.killed = True
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            self.stopped_after = round(time.perf_counter() - signalled, 3)
        self.returncode = process.returncode
        return self.returncode

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server process and its children so far."""
        import psutil

        try:
            times = psutil.Process(self.pid).cpu_times()
        except psutil.NoSuchProcess:
            return float("nan")
        return times.user + times.system + times.children_user + times.children_system

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON lines of the log (structured logging); other lines are skipped."""
        records = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    records.append(json.loads(line))
        return records

    def __enter__(self) -> ServerProcess:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def botlyne_server(
    env: Mapping[str, str | None],
    *,
    workdir: Path,
    port: int | None = None,
    workers: int = 1,
    cpus: Iterable[int] | None = None,
    ready_path: str = "/health/ready",
) -> ServerProcess:
    """`botlyne serve` with exactly `env` as its Botlyne settings, run in `workdir`.

    `workdir` is the current directory, so no stray `.env` or `./.botlyne` of the repository
    leaks into the run.
    """
    port = port or free_port()
    argv = [botlyne_executable(), "serve", "--host", HOST, "--port", str(port)]
    argv += ["--workers", str(workers)]
    return ServerProcess(
        "botlyne",
        argv,
        port=port,
        env=server_env(env),
        cwd=workdir,
        ready_path=ready_path,
        cpus=cpus,
    )


def asgi_server(
    app: str,
    *,
    workdir: Path,
    env: Mapping[str, str | None] | None = None,
    port: int | None = None,
    factory: bool = False,
    cpus: Iterable[int] | None = None,
    ready_path: str = "/health/live",
    name: str = "reference",
) -> ServerProcess:
    """Any ASGI app ("module:attr") under uvicorn with `botlyne serve`'s options."""
    port = port or free_port()
    argv = [sys.executable, "-m", "bench.serve_asgi", app, "--host", HOST, "--port", str(port)]
    if factory:
        argv.append("--factory")
    environment = server_env(env)
    environment["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), environment.get("PYTHONPATH", "")) if part
    )
    return ServerProcess(
        name, argv, port=port, env=environment, cwd=workdir, ready_path=ready_path, cpus=cpus
    )


def wait_until_gone(path: Path, timeout: float = 30.0) -> float | None:
    """Seconds until `path` disappears (e.g. an embedded postmaster.pid), None on timeout."""
    started = time.perf_counter()
    while path.exists():
        if time.perf_counter() - started > timeout:
            return None
        time.sleep(0.02)
    return time.perf_counter() - started


def stop_embedded_postgres(data_dir: Path, timeout: float = 30.0) -> bool:
    """Fast-shut-down an embedded PostgreSQL still running in `data_dir`; True if one was.

    For after a Botlyne server has exited: its PostgreSQL should be gone by then, and deleting
    the directory under a running one would leave it orphaned. The pid comes from the
    postmaster.pid that server wrote, so nothing else is signalled.
    """
    pid_file = data_dir / "pgdata" / "postmaster.pid"
    try:
        pid = int(pid_file.read_text().splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)
    wait_until_gone(pid_file, timeout)
    return True


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards (even when an embedded server wrote into it)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Databases


async def _execute(admin_url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(admin_url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def fresh_database(
    admin_url: str = DEFAULT_ADMIN_DATABASE_URL, prefix: str = "bench"
) -> Iterator[str]:
    """Create an empty database next to `admin_url`'s, yield its URL, drop it afterwards."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    asyncio.run(_execute(admin_url, f'CREATE DATABASE "{name}"'))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        # FORCE: a killed server may have left connections behind.
        asyncio.run(_execute(admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


# --------------------------------------------------------------------------------------------
# Load


_WRK_SCRIPT = r"""
-- Generated by bench/harness.py: count statuses per thread, print one JSON line at the end.
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, count in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(totals) do
    parts[#parts + 1] = string.format('"%d": %d', status, count)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"p50": %d, "p90": %d, "p99": %d, "max": %d}, "statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    table.concat(parts, ", ")))
end
"""


def load_tool(preferred: LoadTool = "auto") -> Literal["wrk", "python"]:
    """wrk when installed (and not refused), else the Python client."""
    has_wrk = shutil.which("wrk") is not None
    if preferred == "wrk" and not has_wrk:
        raise FileNotFoundError("wrk is not installed (apt-get install -y wrk), use --tool python")
    if preferred == "python" or not has_wrk:
        return "python"
    return "wrk"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run_wrk(
    url: str, connections: int, duration: int, warmup: int, threads: int, cpus: Iterable[int] | None
) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    base = [wrk, f"-t{threads}", f"-c{connections}", "--timeout", "5s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(_WRK_SCRIPT)
    try:
        if warmup > 0:
            # wrk cannot discard its first seconds, so the warm-up is a run of its own.
            subprocess.run(
                pinned([*base, f"-d{warmup}s", url], cpus),
                check=True,
                capture_output=True,
                timeout=warmup + 60,
            )
        completed = subprocess.run(
            pinned([*base, f"-d{duration}s", "-s", script.name, url], cpus),
            check=True,
            capture_output=True,
            text=True,
            timeout=duration + 60,
        )
    finally:
        os.unlink(script.name)
    line = next(
        (row for row in completed.stdout.splitlines() if row.startswith("BENCH_JSON ")), None
    )
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{completed.stdout}\n{completed.stderr}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    seconds = raw["duration_us"] / 1e6
    latency = raw["latency_us"]
    errors = {kind: count for kind, count in raw["errors"].items() if count and kind != "status"}
    return {
        "tool": "wrk",
        "url": url,
        "connections": connections,
        "warmup_s": warmup,
        "duration_s": round(seconds, 3),
        "requests": raw["requests"],
        "requests_per_s": round(raw["requests"] / seconds, 1),
        "status_counts": dict(sorted(raw["statuses"].items())),
        "errors": errors,
        "latency_ms": {key: round(value / 1000, 3) for key, value in latency.items()},
    }


def _run_python(
    url: str,
    connections: int,
    duration: int,
    warmup: int,
    cpus: Iterable[int] | None,
    extra: Sequence[str] = (),
) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.load", url, f"--connections={connections}"]
    argv += [f"--duration={duration}", f"--warmup={warmup}", *extra]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if part
    )
    completed = subprocess.run(
        pinned(argv, cpus),
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=duration + warmup + 60,
    )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all cores, /proc/stat) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def repeat_while_disturbed(
    run_once: Callable[[], dict[str, Any]],
    *,
    name: str,
    retries: int,
    threshold: float,
    quiet_timeout: float = 30.0,
) -> dict[str, Any]:
    """`run_once()` after waiting for a quiet machine, again (at most `retries` times) while its
    result says other processes used more than `threshold` cores (`other_cpu_util`). The last
    run is returned, with the discarded ones summarised in it."""
    attempts: list[dict[str, Any]] = []
    for _ in range(retries + 1):
        quiet = wait_for_quiet(threshold=threshold, timeout=quiet_timeout)
        result = run_once()
        result["other_cpu_util_before"] = quiet
        attempts.append(result)
        if result["other_cpu_util"] <= threshold:
            break
        progress(f"  {name}: other processes used {result['other_cpu_util']} cores, repeating")
    final = attempts[-1]
    final["discarded_attempts"] = [
        {key: attempt[key] for key in ("requests_per_s", "other_cpu_util")}
        for attempt in attempts[:-1]
    ]
    return final


def wait_for_quiet(threshold: float = 0.25, window: float = 1.0, timeout: float = 30.0) -> float:
    """Wait until the machine uses less than `threshold` cores over `window` s; return that use.

    Called while the benchmark's own servers are idle, so what it sees is other people's work.
    It gives up after `timeout` s and returns the last reading, which the results then record:
    on a shared machine a figure is only as good as the quiet it was taken in.
    """
    deadline = time.perf_counter() + timeout
    while True:
        before = busy_cpu_seconds()
        time.sleep(window)
        used = (busy_cpu_seconds() - before) / window
        if used < threshold or time.perf_counter() > deadline:
            return round(used, 3)


def run_load(
    url: str,
    *,
    connections: int = 32,
    duration: int = 10,
    warmup: int = 2,
    tool: LoadTool = "auto",
    threads: int = 1,
    cpus: Iterable[int] | None = None,
    server: ServerProcess | None = None,
    requests: str | None = None,
    requests_arg: str | None = None,
    rate: float | None = None,
) -> dict[str, Any]:
    """Keep `connections` keep-alive connections busy on `url` from another process.

    Durations are whole seconds because wrk takes no fractions. The result also says, over the
    client's whole run (warm-up included), how many cores the client, the `server` (if given) and
    everything else on the machine used: a server near 1.0 is the saturated side, and a large
    `other_cpu_util` marks a run disturbed by a neighbour.

    `requests` ("MODULE:ATTR", with `requests_arg`) builds every request itself and `rate` sends
    at a fixed rate (open loop); both exist only in `bench.load` (see its docstring), so they
    select the Python client.
    """
    if connections < 1 or duration < 1 or warmup < 0:
        raise ValueError("connections and duration must be >= 1, warmup >= 0")
    extra: list[str] = []
    if requests is not None:
        extra.append(f"--requests={requests}")
        if requests_arg is not None:
            extra.append(f"--requests-arg={requests_arg}")
    if rate is not None:
        extra.append(f"--rate={rate}")
    if extra:
        if tool == "wrk":
            raise ValueError("requests= and rate= need the Python load generator (tool='python')")
        tool = "python"
    chosen = load_tool(tool)
    server_before = server.cpu_seconds() if server else 0.0
    client_before = _children_cpu()
    busy_before = busy_cpu_seconds()
    started = time.perf_counter()
    if chosen == "wrk":
        result = _run_wrk(url, connections, duration, warmup, threads, cpus)
    else:
        result = _run_python(url, connections, duration, warmup, cpus, extra)
    wall = time.perf_counter() - started
    client = _children_cpu() - client_before
    server_used = server.cpu_seconds() - server_before if server else 0.0
    other = busy_cpu_seconds() - busy_before - client - server_used
    result["client_cpu_util"] = round(client / wall, 3)
    if server is not None:
        result["server_cpu_util"] = round(server_used / wall, 3)
    result["other_cpu_util"] = round(max(other, 0.0) / wall, 3)
    return result


# --------------------------------------------------------------------------------------------
# CPU of the shared services a server leans on (PostgreSQL, Redis)


async def _postmaster_pid(database_url: str) -> int:
    import asyncpg
    import psutil

    connection = await asyncpg.connect(database_url)
    try:
        backend = await connection.fetchval("SELECT pg_backend_pid()")
        # Read while the backend lives: its parent is the postmaster of the cluster.
        return int(psutil.Process(backend).ppid())
    finally:
        await connection.close()


def _postmaster(database_url: str) -> Any:
    import psutil

    try:
        return psutil.Process(asyncio.run(_postmaster_pid(database_url)))
    except psutil.Error:
        return None


def _backend_database(cmdline: Sequence[str]) -> str | None:
    """The database of a backend titled "postgres: [cluster:] user database host(port) state";
    None for auxiliary processes ("postgres: 15/main: walwriter")."""
    words = " ".join(cmdline).split()
    if not words or words[0] != "postgres:":
        return None
    rest = words[1:]
    if rest and rest[0].endswith(":"):
        rest = rest[1:]
    if len(rest) >= 3 and (rest[2].endswith(")") or rest[2] == "[local]"):
        return rest[1]
    return None


class ServiceCpu:
    """Cores used by the PostgreSQL cluster of `database_url` and by redis-server over a window.

    `snapshot()` before and after, then `between(before, after)`: `postgres` (postmaster and its
    children, including those that exited meanwhile), `postgres_elsewhere` (the part of it spent
    by backends of other databases: a neighbour's tests on the same cluster) and `redis`, in CPU
    seconds. A child that exits has its whole life's CPU added to the postmaster's reaped total at
    once, so what it had used before the window (known from the first snapshot) is taken off.
    """

    def __init__(self, database_url: str) -> None:
        self.postmaster = _postmaster(database_url)
        # Backends show "postgres: <user> <database> <host> ..." as their command line.
        self.database = urlsplit(database_url).path.lstrip("/")

    def snapshot(self) -> dict[str, Any]:
        import psutil

        children: dict[int, tuple[float, bool]] = {}
        own = reaped = 0.0
        if self.postmaster is not None:
            times = self.postmaster.cpu_times()
            own = times.user + times.system
            reaped = times.children_user + times.children_system
            for child in self.postmaster.children():
                try:
                    child_times = child.cpu_times()
                    database = _backend_database(child.cmdline())
                except psutil.Error:
                    continue
                elsewhere = database is not None and database != self.database
                children[child.pid] = (child_times.user + child_times.system, elsewhere)
        redis = 0.0
        for process in psutil.process_iter(["name"]):
            if process.info["name"] == "redis-server":
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                redis += times.user + times.system
        return {"own": own, "reaped": reaped, "children": children, "redis": redis}

    @staticmethod
    def between(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
        live = elsewhere = 0.0
        for pid, (cpu, other_database) in after["children"].items():
            previous = before["children"].get(pid, (0.0, other_database))[0]
            live += cpu - previous
            if other_database:
                elsewhere += cpu - previous
        gone = {pid: v for pid, v in before["children"].items() if pid not in after["children"]}
        exited = max(0.0, after["reaped"] - before["reaped"] - sum(v[0] for v in gone.values()))
        if gone:
            elsewhere += exited * sum(1 for _, other in gone.values() if other) / len(gone)
        return {
            "postgres": after["own"] - before["own"] + live + exited,
            "postgres_elsewhere": elsewhere,
            "redis": after["redis"] - before["redis"],
        }


# --------------------------------------------------------------------------------------------
# Results


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    # `wrk -v` prints its version then usage, and exits non-zero.
    completed = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    first = (completed.stdout or completed.stderr).splitlines()
    return first[0].strip() if first else "unknown"


def _git_revision() -> str | None:
    # rev-parse only reads; nothing here may touch the index or the work tree.
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    return None


def source_digest() -> str:
    """A short hash of app/ and migrations/ as they are on disk.

    The git revision alone does not say what ran when the work tree has uncommitted changes;
    two results with the same digest measured the same code.
    """
    digest = hashlib.sha256()
    for folder in ("app", "migrations"):
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            digest.update(str(path.relative_to(REPO_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_at_start": [round(value, 2) for value in os.getloadavg()],
        "git_revision": _git_revision(),
        "source_digest": source_digest(),
        "packages": {
            name: _version(name) for name in ("litestar", "uvicorn", "uvloop", "httptools")
        },
        "wrk": _wrk_version(),
    }


def write_results(name: str, payload: Mapping[str, Any], *, echo: bool = True) -> Path:
    """Store `payload` as bench/results/<name>-<UTC time>.json and print it."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS_DIR / f"{name}-{stamp}.json"
    text = json.dumps(payload, indent=2, sort_keys=False)
    path.write_text(text + "\n", encoding="utf-8")
    if echo:
        print(text)
        print(f"results written to {path}", file=sys.stderr)
    return path


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def exit_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so that a benchmark stopped with `kill` still runs its
    `finally` blocks: servers stopped, scratch databases dropped."""

    def stop(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, stop)


def progress(message: str) -> None:
    """Progress goes to stderr so stdout stays the JSON result."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m bench.harness load URL`: the load generator on an already running server."""
    parser = argparse.ArgumentParser(prog="python -m bench.harness")
    commands = parser.add_subparsers(dest="command", required=True)
    load = commands.add_parser("load", help="drive a running server and print the figures")
    load.add_argument("url")
    load.add_argument("--connections", type=int, default=32)
    load.add_argument("--duration", type=int, default=10)
    load.add_argument("--warmup", type=int, default=2)
    load.add_argument("--tool", choices=["auto", "wrk", "python"], default="auto")
    args = parser.parse_args(argv)
    result = run_load(
        args.url,
        connections=args.connections,
        duration=args.duration,
        warmup=args.warmup,
        tool=args.tool,
    )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
