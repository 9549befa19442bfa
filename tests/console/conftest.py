from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stubs.evolution import EvolutionStub
from tests.stubs.gemini import GeminiStub


@pytest.fixture(scope="session")
def console_evolution() -> Iterator[EvolutionStub]:
    with EvolutionStub() as stub:
        yield stub


@pytest.fixture(scope="session")
def console_gemini() -> Iterator[GeminiStub]:
    with GeminiStub() as stub:
        yield stub
