"""From uploaded bytes or text to a document's structure: headings and paragraphs.

Every format ends as the same list of `Block`s, so one chunker serves them all. HTML is read with
the standard library's parser (scripts, styles and other invisible elements dropped); PDF with
pypdf. Plain text and PDF have no markup, so a short line that does not end like a sentence and
is followed by text is taken for a heading.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Literal

from pypdf import PdfReader
from pypdf.errors import PdfReadError, PyPdfError

ContentType = Literal["text/plain", "text/markdown", "text/html", "application/pdf"]

TEXT_TYPES: tuple[ContentType, ...] = ("text/plain", "text/markdown", "text/html")
EXTENSIONS: dict[str, ContentType] = {
    ".txt": "text/plain",
    ".text": "text/plain",
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".html": "text/html",
    ".htm": "text/html",
    ".pdf": "application/pdf",
}
MEDIA_TYPES: dict[str, ContentType] = {
    "text/plain": "text/plain",
    "text/markdown": "text/markdown",
    "text/x-markdown": "text/markdown",
    "text/html": "text/html",
    "application/xhtml+xml": "text/html",
    "application/pdf": "application/pdf",
}

# A heading in plain text: short, no sentence punctuation at its end.
_MAX_HEADING_CHARS = 90
_MAX_HEADING_WORDS = 12
_NOT_HEADING_END = (".", ",", ";", ":", "!")
_MD_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_MD_SETEXT = re.compile(r"^(=+|-+)\s*$")
_MD_MARKUP = re.compile(r"(\*\*|__|`|!\[[^\]]*\]\([^)]*\))")
_MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
_SPACES = re.compile(r"[ \t\u00a0]+")


class UnreadableDocument(ValueError):
    """The bytes are not a readable document of the type they claim (a broken PDF, binary)."""


@dataclass(frozen=True, slots=True)
class Block:
    """A heading (level 1-6) or a paragraph (level 0) of a document."""

    text: str
    level: int = 0


def content_type_of(filename: str | None, media_type: str | None) -> ContentType | None:
    """The supported type of an upload, by file extension first, then by its declared type."""
    if filename:
        dot = filename.rfind(".")
        if dot >= 0:
            return EXTENSIONS.get(filename[dot:].lower())
    if media_type:
        return MEDIA_TYPES.get(media_type.split(";", 1)[0].strip().lower())
    return None


def decode_text(data: bytes) -> str:
    """UTF-8 (with or without BOM); Windows-1252 as a fallback for old text files."""
    if b"\x00" in data:
        raise UnreadableDocument("The file is binary, not text")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        try:
            return data.decode("cp1252")
        except UnicodeDecodeError:
            raise UnreadableDocument("The file is not UTF-8 text") from None


def extract_blocks(content: str | bytes, content_type: ContentType) -> list[Block]:
    if content_type == "application/pdf":
        if isinstance(content, str):
            raise UnreadableDocument("A PDF must be uploaded as a file")
        return plain_blocks(pdf_text(content))
    text = content if isinstance(content, str) else decode_text(content)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if content_type == "text/markdown":
        return markdown_blocks(text)
    if content_type == "text/html":
        return html_blocks(text)
    return plain_blocks(text)


def pdf_text(data: bytes) -> str:
    if not data.startswith(b"%PDF-"):
        raise UnreadableDocument("The file is not a PDF")
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableDocument("The PDF is encrypted")
        return "\n\n".join(page.extract_text() or "" for page in reader.pages)
    except (PdfReadError, PyPdfError, ValueError, KeyError, TypeError, AttributeError) as exc:
        # pypdf raises a zoo of errors on damaged files; none of them is the client's business.
        raise UnreadableDocument("The PDF is damaged or unreadable") from exc


def _clean(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def _paragraphs(text: str) -> list[list[str]]:
    """Groups of non-blank lines, split at blank lines."""
    groups: list[list[str]] = [[]]
    for raw in text.split("\n"):
        line = _clean(raw)
        if line:
            groups[-1].append(line)
        elif groups[-1]:
            groups.append([])
    return [group for group in groups if group]


def _looks_like_heading(line: str) -> bool:
    return (
        len(line) <= _MAX_HEADING_CHARS
        and len(line.split()) <= _MAX_HEADING_WORDS
        and not line.endswith(_NOT_HEADING_END)
        and not line.startswith(("-", "*", "•", "|"))
    )


def plain_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    groups = _paragraphs(text)
    for index, lines in enumerate(groups):
        # A lone short line before more text is a heading; so is the first line of a group
        # when prose follows it directly.
        if _looks_like_heading(lines[0]) and (len(lines) > 1 or index + 1 < len(groups)):
            level = 1 if not blocks else 2
            blocks.append(Block(lines[0], level))
            lines = lines[1:]
        if lines:
            blocks.append(Block(_join_lines(lines)))
    return blocks


def _join_lines(lines: list[str]) -> str:
    # Lists and tables keep their lines; wrapped prose becomes one line.
    if any(
        line.startswith(("-", "*", "•", "|")) or line[:2].rstrip(".").isdigit() for line in lines
    ):
        return "\n".join(lines)
    return " ".join(lines)


def markdown_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    for lines in _paragraphs(text):
        body: list[str] = []
        for i, line in enumerate(lines):
            heading = _MD_HEADING.match(line)
            if heading is None and i > 0 and _MD_SETEXT.match(line) and len(body) == 1:
                heading_text, level = body.pop(), 1 if line.startswith("=") else 2
            elif heading is not None:
                heading_text, level = heading.group(2), len(heading.group(1))
            else:
                body.append(line)
                continue
            if body:
                blocks.append(Block(_markdown_inline(_join_lines(body))))
                body = []
            blocks.append(Block(_markdown_inline(heading_text), level))
        if body:
            blocks.append(Block(_markdown_inline(_join_lines(body))))
    return [block for block in blocks if block.text]


def _markdown_inline(text: str) -> str:
    # Table rules such as |---|---| carry no words.
    lines = [line for line in text.split("\n") if line.strip("|-: ")]
    return _MD_MARKUP.sub("", _MD_LINK.sub(r"\1", "\n".join(lines))).strip()


class _HtmlBlocks(HTMLParser):
    HIDDEN = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe"})
    BREAKS = frozenset(
        {"p", "div", "section", "article", "blockquote", "pre", "table", "ul", "ol", "dl", "br",
         "hr", "main", "header", "footer", "aside", "nav", "figure", "form"}
    )  # fmt: skip
    LINES = frozenset({"li", "tr", "dt", "dd"})
    HEADINGS = {f"h{n}": n for n in range(1, 7)}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self.lines: list[str] = []
        self.current: list[str] = []
        self.hidden = 0
        self.heading_level = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag in self.HEADINGS:
            self._end_block()
            self.heading_level = self.HEADINGS[tag]
        elif tag in self.BREAKS:
            self._end_block()
        elif tag in self.LINES:
            self._end_line()
            if tag == "li":
                self.current.append("- ")
        elif tag in ("td", "th") and self.current:
            self.current.append(" | ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in self.HEADINGS or tag in self.BREAKS:
            self._end_block()
        elif tag in self.LINES:
            self._end_line()

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.current.append(data)

    def _end_line(self) -> None:
        line = _clean("".join(self.current))
        self.current = []
        if line and line != "-":
            self.lines.append(line)

    def _end_block(self) -> None:
        self._end_line()
        if self.lines:
            text = "\n".join(self.lines) if not self.heading_level else " ".join(self.lines)
            self.blocks.append(Block(text, self.heading_level))
        self.lines = []
        self.heading_level = 0

    def close(self) -> None:
        super().close()
        self._end_block()


def html_blocks(text: str) -> list[Block]:
    parser = _HtmlBlocks()
    parser.feed(text)
    parser.close()
    return parser.blocks
