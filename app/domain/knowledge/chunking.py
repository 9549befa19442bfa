"""Cutting a document into passages that can be retrieved and quoted on their own.

A chunk is filled with whole paragraphs, in order, up to about `TARGET_WORDS`; it ends early rather
than overflow, and a paragraph longer than a chunk is cut between sentences. Each chunk knows the
heading path of its first paragraph; later sections inside it keep their heading as a line of
text, so a chunk never loses the context a reader would see. When a cut falls inside a section,
the next chunk starts with the last sentences of the previous one (`OVERLAP_WORDS`), so a fact
spread across the cut is whole in at least one chunk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from app.domain.knowledge.analysis import fold
from app.domain.knowledge.extraction import Block

TARGET_WORDS = 120
OVERLAP_WORDS = 30
HEADING_SEPARATOR = " > "

_SENTENCE_END = re.compile(r"(?<=[.!?;])\s+|\n+")


@dataclass(frozen=True, slots=True)
class Chunk:
    heading: str
    text: str


@dataclass(frozen=True, slots=True)
class _Unit:
    path: tuple[str, ...]
    text: str
    words: int


def sentences(text: str) -> list[str]:
    return [piece.strip() for piece in _SENTENCE_END.split(text) if piece.strip()]


def _units(blocks: list[Block], title: str, target: int) -> list[_Unit]:
    stack: list[tuple[int, str]] = []
    units: list[_Unit] = []
    folded_title = fold(title).strip()
    for block in blocks:
        if block.level:
            stack = [(level, text) for level, text in stack if level < block.level]
            stack.append((block.level, block.text))
            continue
        # The title is stored with the document; repeating it in every path adds nothing.
        path = tuple(text for _, text in stack if fold(text).strip() != folded_title)
        words = len(block.text.split())
        if words <= target:
            units.append(_Unit(path, block.text, words))
            continue
        piece: list[str] = []
        count = 0
        for sentence in sentences(block.text):
            size = len(sentence.split())
            if piece and count + size > target:
                units.append(_Unit(path, " ".join(piece), count))
                piece, count = [], 0
            piece.append(sentence)
            count += size
        if piece:
            units.append(_Unit(path, " ".join(piece), count))
    if not units and stack:
        # A document of headings only still has words worth finding.
        units.append(_Unit((), "\n".join(text for _, text in stack), len(stack)))
    return units


def _tail(text: str, words: int) -> str:
    """The last whole sentences of `text` totalling at most `words` words."""
    kept: list[str] = []
    count = 0
    for sentence in reversed(sentences(text)):
        count += len(sentence.split())
        if count > words:
            break
        kept.append(sentence)
    return " ".join(reversed(kept))


def _render(units: list[_Unit], lead: str) -> Chunk:
    lines = [lead] if lead else []
    path = units[0].path
    for unit in units:
        if unit.path != path:
            new = unit.path[len(_common(path, unit.path)) :] or unit.path[-1:]
            if new:
                lines.append(HEADING_SEPARATOR.join(new))
            path = unit.path
        lines.append(unit.text)
    return Chunk(HEADING_SEPARATOR.join(units[0].path), "\n".join(lines))


def _common(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def chunk_blocks(
    blocks: list[Block],
    title: str,
    target_words: int = TARGET_WORDS,
    overlap_words: int = OVERLAP_WORDS,
) -> list[Chunk]:
    chunks: list[Chunk] = []
    current: list[_Unit] = []
    lead = ""
    size = 0
    for unit in _units(blocks, title, target_words):
        if current and size + unit.words > target_words:
            chunks.append(_render(current, lead))
            last = current[-1]
            lead = _tail(last.text, overlap_words) if last.path == unit.path else ""
            current, size = [], len(lead.split())
        current.append(unit)
        size += unit.words
    if current:
        chunks.append(_render(current, lead))
    return chunks
