"""Alembic, driven from code: the CLI, the server's start and the tests use these functions.

The configuration points at the `migrations` package wherever it is installed, so `botlyne db`
works from any working directory.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from app.config import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"


def database_url_for(settings: Settings) -> str:
    """The asyncpg URL to use: the configured one, or the embedded server's (started if needed)."""
    url = settings.async_database_url
    if url is not None:
        return url
    from app.core.embedded import embedded_database_url

    return embedded_database_url(settings.data_dir)


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolation would choke on a '%' in a password.
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


@cache
def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def upgrade(url: str, revision: str = "head") -> None:
    """Apply migrations (blocking; run it in a thread from async code)."""
    command.upgrade(alembic_config(url), revision)
