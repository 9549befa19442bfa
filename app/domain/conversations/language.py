"""Recognising a request for a person, and the notices users read, in English, Portuguese and
Spanish. Matching works on case- and accent-folded text so "Atenção", "atencao" and "ATENCAO"
are one word."""

from __future__ import annotations

import re
import unicodedata


def fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


_PERSON = {
    "en": r"(human|person|people|agent|someone|somebody|representative|operator|rep|staff|real person)",
    "pt": r"(humano|humana|pessoa|atendente|agente|alguem|operador|operadora|representante)",
    "es": r"(humano|humana|persona|agente|alguien|operador|operadora|asesor|asesora|representante|ejecutivo)",
}
_ASK = {
    "en": [
        rf"\b(talk|speak|chat|connect me|transfer me|put me through)\b.{{0,25}}\b(to|with)\b.{{0,15}}\b{_PERSON['en']}\b",
        rf"\b(want|need|get|give me|can i have)\b.{{0,15}}\b{_PERSON['en']}\b",
        r"\b(live|human|real) (agent|support|person|help)\b",
        r"\bcustomer (service|support) (agent|representative|rep)\b",
    ],
    "pt": [
        rf"\b(falar|conversar|fale|converse)\b.{{0,20}}\bcom\b.{{0,15}}\b{_PERSON['pt']}\b",
        rf"\b(quero|preciso de|queria|gostaria de)\b.{{0,20}}\b{_PERSON['pt']}\b",
        r"\batendimento (humano|pessoal)\b",
        r"\bpessoa de verdade\b",
    ],
    "es": [
        rf"\b(hablar|conversar|comunicarme|hable)\b.{{0,20}}\bcon\b.{{0,15}}\b{_PERSON['es']}\b",
        rf"\b(quiero|necesito|quisiera|me pasas con|pasame con)\b.{{0,20}}\b{_PERSON['es']}\b",
        r"\batencion (humana|personal|al cliente)\b",
        r"\bpersona real\b",
    ],
}
_ASK_RE = {lang: [re.compile(p) for p in patterns] for lang, patterns in _ASK.items()}

_MARKERS = {
    "pt": {
        "voce",
        "nao",
        "obrigado",
        "obrigada",
        "pedido",
        "quero",
        "preciso",
        "entrega",
        "com",
        "uma",
        "minha",
        "meu",
        "oi",
        "ola",
        "tudo",
        "bem",
    },
    "es": {
        "usted",
        "gracias",
        "pedido",
        "quiero",
        "necesito",
        "hola",
        "con",
        "una",
        "mi",
        "por",
        "favor",
        "el",
        "los",
        "que",
        "es",
    },
    "en": {
        "the",
        "you",
        "my",
        "order",
        "please",
        "thanks",
        "want",
        "need",
        "hello",
        "hi",
        "is",
        "what",
        "how",
    },
}


def asks_for_human(text: str) -> str | None:
    """The language of a request for a person, or None when the text is not one."""
    folded = fold(text)
    for language, patterns in _ASK_RE.items():
        if any(pattern.search(folded) for pattern in patterns):
            return language
    return None


def guess_language(text: str) -> str:
    words = set(re.findall(r"[a-z]+", fold(text)))
    scores = {language: len(words & markers) for language, markers in _MARKERS.items()}
    best = max(scores, key=lambda language: scores[language])
    return best if scores[best] > 0 else "en"


NOTICES = {
    "connecting": {
        "en": "I'm connecting you with a member of our team. You are number {position} in line.",
        "pt": "Estou transferindo você para um atendente. Você é o número {position} na fila.",
        "es": "Te estoy conectando con una persona de nuestro equipo. Eres el número {position} en la fila.",
    },
    "no_answer": {
        "en": "I couldn't find that in our help articles, so I'm connecting you with a member of our team. You are number {position} in line.",
        "pt": "Não encontrei isso nos nossos artigos de ajuda, então vou transferir você para um atendente. Você é o número {position} na fila.",
        "es": "No encontré eso en nuestros artículos de ayuda, así que te conecto con una persona de nuestro equipo. Eres el número {position} en la fila.",
    },
}


def notice(kind: str, language: str, **values: object) -> str:
    templates = NOTICES[kind]
    return templates.get(language, templates["en"]).format(**values)
