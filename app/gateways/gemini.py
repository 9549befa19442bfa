"""The only door to Gemini: answer generation and embeddings.

One google-genai async client per application, built at start-up. Every call is wrapped as
retry (outermost) → circuit breaker "gemini" → the call under an explicit deadline, and the SDK's
errors are translated into the resilience vocabulary:

- HTTP 429 and 5xx, timeouts and connection errors (google-genai 3.6 sends through `httpx2`, its
  own fork of httpx, so both families are caught) → `TransientError`, retried and counted by the
  breaker;
- other 4xx (a bad key, an unknown model) → `ClientFault`, neither retried nor held against
  Gemini's health;
- an open breaker → `CircuitOpenError`, raised before any request is made.

Callers treat all three as "Gemini is not available now" and degrade; this module never decides
what the user sees.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import httpx2
from google import genai
from google.genai import errors, types

from app.config import Settings
from app.core.resilience import (
    ClientFault,
    TransientError,
    is_transient_status,
    retry_async,
    with_circuit_breaker,
)

BREAKER = "gemini"
MAX_ATTEMPTS = 3
# batchEmbedContents accepts at most 100 texts per request.
EMBED_BATCH = 100
_RETRY_DELAY = re.compile(r"^(\d+(?:\.\d+)?)s$")

EmbeddingTask = Literal["RETRIEVAL_DOCUMENT", "RETRIEVAL_QUERY"]


class GeminiUnavailable(Exception):
    """Gemini is not configured; callers degrade exactly as when it is down."""


def _retry_after(error: errors.APIError) -> float | None:
    """Google's RetryInfo hint ("retryDelay": "12s") of a 429, in seconds."""
    details = error.details.get("error", {}).get("details", []) if error.details else []
    for detail in details if isinstance(details, list) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        match = _RETRY_DELAY.match(delay) if isinstance(delay, str) else None
        if match:
            return float(match.group(1))
    return None


@asynccontextmanager
async def _translated(deadline: float) -> AsyncIterator[None]:
    try:
        async with asyncio.timeout(deadline):
            yield
    except errors.APIError as exc:
        if is_transient_status(exc.code):
            raise TransientError(
                f"Gemini answered {exc.code}", retry_after=_retry_after(exc)
            ) from exc
        raise ClientFault(f"Gemini refused the request ({exc.code})", status=exc.code) from exc
    except (TimeoutError, httpx2.TransportError, httpx.TransportError) as exc:
        raise TransientError(f"Gemini unreachable: {type(exc).__name__}") from exc


class GeminiGateway:
    def __init__(self, settings: Settings) -> None:
        self.model = settings.gemini_model
        self.embedding_model = settings.gemini_embedding_model
        self.embedding_dimensions = settings.gemini_embedding_dimensions
        self.deadline = settings.gemini_timeout_seconds
        self._client: genai.Client | None = None
        if settings.google_api_key:
            self._client = genai.Client(
                api_key=settings.google_api_key,
                http_options=types.HttpOptions(
                    base_url=settings.google_api_base_url,
                    api_version="v1beta",
                    timeout=int(settings.gemini_timeout_seconds * 1000),
                ),
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    def _sdk(self) -> genai.Client:
        # Checked before the breaker: a missing key says nothing about Gemini's health.
        if self._client is None:
            raise GeminiUnavailable("GOOGLE_API_KEY is not set")
        return self._client

    async def probe(self, deadline: float) -> None:
        """GET models/{model}: proves Gemini answers and accepts the key without spending quota.

        Outside the retry and the breaker on purpose: a health probe must neither trip the
        breaker nor be refused by it. Raises what a call raises (`TransientError`,
        `ClientFault`, `GeminiUnavailable`).
        """
        client = self._sdk()
        async with _translated(deadline):
            await client.aio.models.get(model=self.model)

    async def generate(self, system: str, prompt: str) -> str:
        """The model's text for `prompt` under the `system` instruction ("" when it gave none)."""
        return await self._generate(self._sdk(), system, prompt)

    @retry_async(max_attempts=MAX_ATTEMPTS, on=TransientError)
    @with_circuit_breaker(BREAKER)
    async def _generate(self, client: genai.Client, system: str, prompt: str) -> str:
        async with _translated(self.deadline):
            response = await client.aio.models.generate_content(
                model=self.model,
                contents=prompt,
                config=types.GenerateContentConfig(system_instruction=system, temperature=0.2),
            )
        return response.text or ""

    async def embed(self, texts: Sequence[str], task: EmbeddingTask) -> list[list[float]]:
        """One vector per text, in order; batched as the API requires."""
        client = self._sdk()
        vectors: list[list[float]] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            vectors.extend(await self._embed_batch(client, batch, task))
        return vectors

    @retry_async(max_attempts=MAX_ATTEMPTS, on=TransientError)
    @with_circuit_breaker(BREAKER)
    async def _embed_batch(
        self, client: genai.Client, texts: Sequence[str], task: EmbeddingTask
    ) -> list[list[float]]:
        async with _translated(self.deadline):
            response = await client.aio.models.embed_content(
                model=self.embedding_model,
                contents=list(texts),
                config=types.EmbedContentConfig(
                    task_type=task, output_dimensionality=self.embedding_dimensions
                ),
            )
        embeddings: list[Any] = response.embeddings or []
        if len(embeddings) != len(texts):
            raise TransientError("Gemini returned a different number of embeddings")
        return [list(embedding.values or []) for embedding in embeddings]

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aio.aclose()
