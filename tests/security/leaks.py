"""Secrets never reach the logs: every log record of the whole test run is kept and, when the
session ends, searched for every secret the tests created. One hit fails the session, naming the
record (the secret itself is shown masked). tests/conftest.py wires it in.

What counts as a secret: every API key and signing secret the application generated (their forms,
`bl_` + 43 characters and `whsec_` + 44, are searched for directly, registered or not), stream
tokens, and whatever the tests register: keys and signing secrets they chose, and the secret
settings of every `make_settings` (OBSERVABILITY_TOKEN, provider keys, alert signing secret).

The records come from a loguru sink at the lowest level, so a secret in a DEBUG line is caught even
when the run logs at INFO. `configure_logging` removes all sinks each time an app is built; the
plugin puts its own back right after every such removal.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import pytest
from loguru import logger

if TYPE_CHECKING:
    from loguru import Message

    from app.config import Settings

# Shorter registered values would match ordinary words; every real secret here is longer.
MIN_SECRET_LENGTH = 12
GENERATED = re.compile(
    r"bl_[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"  # API keys
    r"|whsec_[A-Za-z0-9+/]{43}="  # signing secrets
    r"|[0-9a-f]{32}\.\d{10}\.[A-Za-z0-9_-]{43}"  # event stream tokens
)
SECRET_SETTINGS = (
    "bootstrap_admin_key",
    "google_api_key",
    "evolution_api_global_key",
    "webhook_signature_secret",
    "alert_webhook_secret",
    "observability_token",
)


def mask(secret: str) -> str:
    return f"{secret[:6]}…({len(secret)} chars)"


class LeakScan:
    """Registered secrets, the text of every log record, and the search between them."""

    def __init__(self) -> None:
        self.secrets: set[str] = set()
        self.records: list[str] = []

    def register(self, *secrets: str | None) -> None:
        self.secrets.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def register_settings(self, settings: Settings) -> None:
        self.register(*(getattr(settings, name) for name in SECRET_SETTINGS))

    def sink(self, message: Message) -> None:
        record = message.record
        parts = [record["message"], repr(record["extra"])]
        exception = record["exception"]
        if exception is not None:
            parts.append(repr(exception.value))
        self.records.append("\n".join(parts))

    def leaks(self) -> list[tuple[str, str]]:
        """(secret, the record that holds it) for each secret found in a record."""
        found: list[tuple[str, str]] = []
        for record in self.records:
            found.extend((match.group(), record) for match in GENERATED.finditer(record))
        blob = "\n\x00".join(self.records)
        for secret in self.secrets:
            if GENERATED.fullmatch(secret) or secret not in blob:
                continue
            found.extend((secret, record) for record in self.records if secret in record)
        return found


SCAN = LeakScan()


def register(*secrets: str | None) -> None:
    SCAN.register(*secrets)


def capture_every_record(scan: LeakScan) -> None:
    """Add the scan's sink and keep it through every `logger.remove()` of all sinks."""
    original_remove = logger.remove

    def add() -> None:
        logger.add(scan.sink, level=0, backtrace=False, diagnose=False, catch=True)

    def remove(handler_id: int | None = None) -> None:
        original_remove(handler_id)
        if handler_id is None:
            add()

    logger.remove = remove  # type: ignore[method-assign]
    add()


def fail_on_leaks(session: pytest.Session) -> None:
    """At the end of the session: any secret in any record fails the run."""
    leaks = SCAN.leaks()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(f"SECRETS IN LOGS: {len(leaks)} record(s)", red=True)
        for secret, record in leaks[:20]:
            shown = record.replace(secret, mask(secret))[:300]
            reporter.write_line(f"secret {mask(secret)} in a log record: {shown!r}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
