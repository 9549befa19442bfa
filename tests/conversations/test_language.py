from __future__ import annotations

import pytest

from app.domain.conversations.language import asks_for_human, guess_language, notice


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("I want to talk to a human", "en"),
        ("can I speak with a real person please", "en"),
        ("Connect me to an agent", "en"),
        ("I need a live agent", "en"),
        ("Quero falar com um atendente", "pt"),
        ("preciso de atendimento humano", "pt"),
        ("Gostaria de falar com uma pessoa", "pt"),
        ("ATENDENTE, quero falar com ALGUÉM", "pt"),
        ("Quiero hablar con un agente", "es"),
        ("necesito hablar con una persona real", "es"),
        ("pásame con un asesor", "es"),
        ("Quisiera atención humana", "es"),
    ],
)
def test_requests_for_a_person_are_recognised(text: str, language: str) -> None:
    assert asks_for_human(text) == language


@pytest.mark.parametrize(
    "text",
    [
        "How do I reset my password?",
        "Where is my order E1042?",
        "O atendimento foi ótimo, obrigado",
        "¿Cuánto cuesta el envío?",
        "The agent field in the API returns null",
    ],
)
def test_ordinary_questions_are_not(text: str) -> None:
    assert asks_for_human(text) is None


def test_language_guess_and_notices() -> None:
    assert guess_language("Olá, meu pedido não chegou") == "pt"
    assert guess_language("Hola, mi pedido no llegó, por favor") == "es"
    assert guess_language("Where is my order?") == "en"
    assert guess_language("12345") == "en"
    assert "3" in notice("connecting", "es", position=3)
