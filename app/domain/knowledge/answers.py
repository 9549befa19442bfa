"""Turning retrieved passages into an answer: the grounded prompt, the citation check, and the
extractive answer used whenever Gemini cannot be.

The prompt numbers the passages `[1]`, `[2]`, ... and asks for those markers after each claim.
A citation the model makes up (a number with no passage) is removed from the text, and only
passages actually cited are returned as sources; an answer without any citation returns the
best passages instead.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from app.domain.knowledge import analysis
from app.domain.knowledge.chunking import sentences
from app.domain.knowledge.repository import Passage

NO_ANSWER = "NO_ANSWER"
SYSTEM_INSTRUCTION = f"""You are the support assistant of a company. Answer the customer's \
question using only the numbered sources you are given, never your own knowledge.
After every sentence that uses a source, cite it as [n] with the source's number.
If the sources do not contain the answer, reply with exactly {NO_ANSWER} and nothing else.
Answer in the language of the question, briefly and plainly."""

NO_ANSWER_TEXT = {
    "en": "I couldn't find an answer to that in the knowledge base.",
    "pt": "Não encontrei uma resposta para isso na base de conhecimento.",
    "es": "No encontré una respuesta a eso en la base de conocimiento.",
}
# Sources shown when the model cites none, and passages an extractive answer draws from.
FALLBACK_SOURCES = 3
EXTRACTIVE_SENTENCES = 2
SNIPPET_CHARS = 300
_MIN_SENTENCE_WORDS = 4

_CITATION = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")


@dataclass(frozen=True, slots=True)
class Cited:
    text: str
    # 0-based indexes of the passages cited, in order of first citation.
    cited: list[int]
    invented: int


def no_answer_text(question: str) -> str:
    return NO_ANSWER_TEXT.get(analysis.language(question) or "en", NO_ANSWER_TEXT["en"])


def build_prompt(
    question: str, passages: Sequence[Passage], history: Sequence[tuple[str, str]] = ()
) -> str:
    parts = ["Sources:"]
    for number, passage in enumerate(passages, start=1):
        where = f"{passage.title} > {passage.heading}" if passage.heading else passage.title
        parts.append(f"[{number}] ({where})\n{passage.content}")
    if history:
        turns = "\n".join(f"{role}: {content}" for role, content in history)
        parts.append(f"Conversation so far:\n{turns}")
    parts.append(f"Question: {question}")
    return "\n\n".join(parts)


def check_citations(answer: str, sources: int) -> Cited:
    """Keep citations of passages that exist, drop the others from the text."""
    cited: list[int] = []
    invented = 0

    def keep(match: re.Match[str]) -> str:
        nonlocal invented
        numbers = [int(number) for number in match.group(1).split(",")]
        valid = [number for number in numbers if 1 <= number <= sources]
        invented += len(numbers) - len(valid)
        for number in valid:
            if number - 1 not in cited:
                cited.append(number - 1)
        if not valid:
            return ""
        return " [" + ", ".join(str(number) for number in valid) + "]"

    return Cited(_CITATION.sub(keep, answer).strip(), cited, invented)


def _sentence_weight(sentence: str, weights: Mapping[str, float]) -> float:
    return sum(weights.get(term, 0.0) for term in set(analysis.terms(sentence)))


def best_sentences(content: str, weights: Mapping[str, float], count: int) -> list[str]:
    """The `count` sentences of `content` carrying most of the question's weight, in order."""
    candidates = [s for s in sentences(content) if len(s.split()) >= _MIN_SENTENCE_WORDS]
    scored = sorted(
        ((_sentence_weight(s, weights), -i, s) for i, s in enumerate(candidates)), reverse=True
    )
    chosen = {-negative for weight, negative, _ in scored[:count] if weight > 0}
    if not chosen and candidates:
        chosen = {0}
    return [s for i, s in enumerate(candidates) if i in chosen]


def snippet(content: str, weights: Mapping[str, float]) -> str:
    text = " ".join(best_sentences(content, weights, 1)) or content
    return text if len(text) <= SNIPPET_CHARS else text[: SNIPPET_CHARS - 1].rstrip() + "…"


def extractive(passages: Sequence[Passage], weights: Mapping[str, float]) -> Cited:
    """The best sentences of the best passages, each cited, for when no model writes the answer."""
    scored: list[tuple[float, int, str]] = []
    for index, passage in enumerate(passages[:FALLBACK_SOURCES]):
        for sentence in best_sentences(passage.content, weights, EXTRACTIVE_SENTENCES):
            scored.append((_sentence_weight(sentence, weights), index, sentence))
    # Highest weight first; on a tie the better-ranked passage wins.
    chosen = sorted(scored, key=lambda item: (-item[0], item[1]))[:EXTRACTIVE_SENTENCES]
    chosen.sort(key=lambda item: item[1])
    text = " ".join(f"{sentence} [{index + 1}]" for _, index, sentence in chosen)
    return Cited(text, list(dict.fromkeys(index for _, index, _ in chosen)), 0)
