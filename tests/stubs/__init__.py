"""Local HTTP stand-ins for Gemini and Evolution API, speaking their real wire formats."""

from tests.stubs.evolution import (
    EvolutionStub,
    extended_text_upsert_payload,
    messages_upsert_payload,
)
from tests.stubs.gemini import GeminiStub, hashed_embedding
from tests.stubs.server import StubServer

__all__ = [
    "EvolutionStub",
    "GeminiStub",
    "StubServer",
    "extended_text_upsert_payload",
    "hashed_embedding",
    "messages_upsert_payload",
]
