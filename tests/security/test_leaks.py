"""The log scan itself: it sees every record, survives `configure_logging`, and finds secrets."""

from __future__ import annotations

import secrets
import uuid

import httpx
from loguru import logger

from app.core.logging import configure_logging
from app.core.security.keys import generate_api_key
from app.core.security.signatures import generate_secret
from tests.security.leaks import SCAN, LeakScan


def test_the_session_capture_outlives_configure_logging() -> None:
    marker = f"capture-check-{uuid.uuid4().hex}"
    configure_logging("WARNING", structured=True)
    # Below the application's level, and still kept: DEBUG lines leak too when enabled.
    logger.debug(marker)
    assert any(marker in record for record in SCAN.records[-50:])


def test_outbound_urls_are_not_logged() -> None:
    """What the first full scan found: httpx logged each request's URL at INFO, and a callback
    or alert webhook URL (or a stream `?token=`) can be a credential."""
    token = f"hook-token-{secrets.token_hex(12)}"
    configure_logging("DEBUG", structured=True)
    with httpx.Client(transport=httpx.MockTransport(lambda _: httpx.Response(204))) as client:
        assert client.post(f"https://alerts.example/hooks/{token}").status_code == 204
    assert not any(token in record for record in SCAN.records)


def test_the_scan_finds_generated_and_registered_secrets() -> None:
    scan = LeakScan()
    chosen = f"chosen-secret-{secrets.token_hex(8)}"
    scan.register(chosen, "short")
    key, signing = generate_api_key(), generate_secret()
    handler = logger.add(scan.sink, level=0)
    try:
        logger.info("clean line: prefix {} only", key[:12])
        logger.bind(reason=f"Bearer {chosen}").info("bound context")
        logger.warning("a key in a message: {}", key)
        try:
            raise ValueError(f"secret={signing}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.remove(handler)
        # The session's own scan saw these deliberate leaks too: they are not the app's.
        SCAN.records[:] = [r for r in SCAN.records if chosen not in r and key not in r]
        SCAN.records[:] = [r for r in SCAN.records if signing not in r]
    found = scan.leaks()
    assert sorted(secret for secret, _ in found) == sorted([key, chosen, signing])
    assert not any("clean line" in record for _, record in found)
    assert "short" not in scan.secrets
