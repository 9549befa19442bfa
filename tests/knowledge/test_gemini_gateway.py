"""The Gemini gateway against the stub: retries, the breaker, timeouts, and error translation."""

from __future__ import annotations

from typing import Any

import pytest

from app.config import Settings
from app.core.resilience import CircuitOpenError, ClientFault, TransientError
from app.gateways.gemini import GeminiGateway, GeminiUnavailable
from tests.stubs import GeminiStub, hashed_embedding

SYSTEM = "Answer from the sources."
PROMPT = "Sources:\n\n[1] Refunds take 5 days. Really.\n\nQuestion: refunds?"


def gateway(gemini: GeminiStub, **overrides: Any) -> GeminiGateway:
    values = {"google_api_key": gemini.api_key, "google_api_base_url": gemini.base_url}
    return GeminiGateway(Settings(**(values | overrides)))


async def test_generate_and_embed(gemini: GeminiStub) -> None:
    client = gateway(gemini, gemini_embedding_dimensions=32)
    assert await client.generate(SYSTEM, PROMPT) == "Refunds take 5 days. [1]"
    vectors = await client.embed([f"text {n}" for n in range(130)], "RETRIEVAL_DOCUMENT")
    await client.aclose()

    assert len(vectors) == 130
    assert vectors[3] == pytest.approx(hashed_embedding("text 3", 32))
    assert gemini.calls("batch_embed") == 2  # at most 100 texts per request
    assert gemini.requests[0].body["systemInstruction"]["parts"][0]["text"] == SYSTEM


async def test_transient_failures_are_retried(gemini: GeminiStub) -> None:
    client = gateway(gemini)
    gemini.fail_next(1, status=429)
    assert await client.generate(SYSTEM, PROMPT)
    assert gemini.calls("generate") == 2

    gemini.mode = "503"
    with pytest.raises(TransientError):
        await client.generate(SYSTEM, PROMPT)
    assert gemini.calls("generate") == 4  # two attempts each (stamina test mode)
    await client.aclose()


async def test_client_faults_are_not_retried(gemini: GeminiStub) -> None:
    client = gateway(gemini, google_api_key="wrong-key")
    with pytest.raises(ClientFault) as caught:
        await client.generate(SYSTEM, PROMPT)
    assert caught.value.status == 400
    assert gemini.calls("generate") == 1
    await client.aclose()


async def test_timeouts_and_refused_connections_are_transient(gemini: GeminiStub) -> None:
    client = gateway(gemini, gemini_timeout_seconds=0.2)
    gemini.mode = "slow"
    with pytest.raises(TransientError):
        await client.generate(SYSTEM, PROMPT)
    gemini.mode = "ok"
    gemini.stop()
    with pytest.raises(TransientError):
        await client.embed(["x"], "RETRIEVAL_QUERY")
    await client.aclose()


async def test_breaker_opens_and_stops_calling(gemini: GeminiStub) -> None:
    client = gateway(gemini)
    gemini.mode = "500"
    for _ in range(3):  # 2 attempts each; the default threshold is 5 failures
        with pytest.raises((TransientError, CircuitOpenError)):
            await client.generate(SYSTEM, PROMPT)
    calls = gemini.calls("generate")
    with pytest.raises(CircuitOpenError):
        await client.generate(SYSTEM, PROMPT)
    assert gemini.calls("generate") == calls == 5
    await client.aclose()


async def test_without_a_key_nothing_is_called() -> None:
    client = GeminiGateway(Settings())
    assert not client.configured
    with pytest.raises(GeminiUnavailable):
        await client.generate(SYSTEM, PROMPT)
    await client.aclose()
