"""The console script, run as a user runs it: a subprocess, from another working directory."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine

BOTLYNE = str(Path(sys.executable).with_name("botlyne"))


def _env(**values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(values)
    return env


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BOTLYNE, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True, timeout=120
    )


async def test_org_create_prints_a_working_key(
    tmp_path: Path,
    database_url: str,
    client: AsyncTestClient[Litestar],
    clean_db: AsyncEngine,
) -> None:
    result = run_cli(
        "org", "create", "--name", "cli-org", "--json", cwd=tmp_path, DATABASE_URL=database_url
    )
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert set(created) == {"org_id", "api_key"}
    assert created["api_key"] not in result.stderr

    headers = {"Authorization": f"Bearer {created['api_key']}"}
    org = await client.get("/api/v1/organization", headers=headers)
    assert org.status_code == 200
    assert org.json() == {**org.json(), "id": created["org_id"], "name": "cli-org"}
    unknown = await client.get("/api/v1/organization", headers={"Authorization": "Bearer bl_x"})
    assert unknown.status_code == 401


def test_db_sql_prints_the_schema_without_a_database(tmp_path: Path) -> None:
    result = run_cli("db", "sql", cwd=tmp_path, DATABASE_URL="postgresql://nobody@127.0.0.1:1/x")
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE organizations" in result.stdout
    assert 'CREATE FUNCTION "public"."log_audit_event"()' in result.stdout
    assert "CREATE TRIGGER" in result.stdout


def test_bad_configuration_stops_with_one_line(tmp_path: Path) -> None:
    result = run_cli("serve", cwd=tmp_path, RATE_LIMIT_REQUESTS_PER_MINUTE="lots")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "RATE_LIMIT_REQUESTS_PER_MINUTE" in lines[0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _serve_until_ready(data_dir: Path, cwd: Path) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [BOTLYNE, "serve", "--port", str(port)],
        cwd=cwd,
        env=_env(BOTLYNE_DATA_DIR=str(data_dir)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}"
        except httpx.HTTPError:
            pass
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.2)
    process.kill()
    raise AssertionError("server did not become ready")


def _stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    return stderr


def test_bare_start_uses_embedded_postgres_and_keeps_its_data(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    postmaster = data_dir / "pgdata" / "postmaster.pid"
    process, base = _serve_until_ready(data_dir, tmp_path)
    try:
        live = httpx.get(f"{base}/health/live")
        assert live.json() == {"status": "ok"}
        # A production server does not name its software.
        assert "server" not in live.headers
        assert postmaster.exists()
    finally:
        first_stderr = _stop(process)
    # SIGTERM is a normal stop: the embedded PostgreSQL stops with the server.
    assert process.returncode == 0, first_stderr
    assert not postmaster.exists()
    key = first_stderr.split("(shown once): ", 1)[1].split()[0]

    process, base = _serve_until_ready(data_dir, tmp_path)
    try:
        response = httpx.get(f"{base}/api/v1/organization", headers={"X-API-Key": key})
        assert response.status_code == 200
        assert response.json()["name"] == "default"
    finally:
        second_stderr = _stop(process)
    assert "shown once" not in second_stderr
    assert not postmaster.exists()
