"""From an upload to the chunks that will be stored: size and type checks, extraction, chunking,
term analysis. Pure CPU work with no I/O, so the service runs it in a worker thread and a large
PDF never stalls the event loop."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from litestar.exceptions import HTTPException
from litestar.status_codes import (
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_422_UNPROCESSABLE_ENTITY,
)

from app.domain.knowledge import analysis
from app.domain.knowledge.chunking import chunk_blocks
from app.domain.knowledge.extraction import ContentType, UnreadableDocument, extract_blocks


@dataclass(frozen=True, slots=True)
class Upload:
    title: str
    content: str | bytes
    # None: a file of a type Botlyne cannot read.
    content_type: ContentType | None
    filename: str | None = None


@dataclass(frozen=True, slots=True)
class PreparedChunk:
    heading: str
    content: str
    terms: list[str]

    @property
    def indexed_text(self) -> str:
        """What is embedded; the same words the terms came from."""
        return f"{self.heading}\n{self.content}" if self.heading else self.content


@dataclass(frozen=True, slots=True)
class Prepared:
    title: str
    content_type: ContentType
    filename: str | None
    size_bytes: int
    sha256: str
    text: str
    language: str | None
    chunks: list[PreparedChunk]


def _reject(status: int, detail: str) -> HTTPException:
    return HTTPException(status_code=status, detail=detail)


def prepare(upload: Upload, max_bytes: int) -> Prepared:
    raw = upload.content.encode() if isinstance(upload.content, str) else upload.content
    if upload.content_type is None:
        raise _reject(
            HTTP_415_UNSUPPORTED_MEDIA_TYPE,
            "Unsupported document type: send .txt, .md, .html or .pdf",
        )
    if len(raw) > max_bytes:
        raise _reject(
            HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"The document is larger than the limit of {max_bytes} bytes",
        )
    if not raw.strip():
        raise _reject(HTTP_422_UNPROCESSABLE_ENTITY, "The document is empty")
    try:
        blocks = extract_blocks(upload.content, upload.content_type)
    except UnreadableDocument as exc:
        raise _reject(HTTP_422_UNPROCESSABLE_ENTITY, str(exc)) from None
    chunks = [
        PreparedChunk(chunk.heading, chunk.text, terms)
        for chunk in chunk_blocks(blocks, upload.title)
        # The title is indexed with every chunk: it names what the chunk is about.
        if (terms := analysis.terms(f"{upload.title}\n{chunk.heading}\n{chunk.text}"))
    ]
    text = "\n\n".join(block.text for block in blocks)
    if not chunks or not analysis.terms(text):
        raise _reject(
            HTTP_422_UNPROCESSABLE_ENTITY,
            "The document has no text that can be searched (a scanned PDF needs OCR first)",
        )
    return Prepared(
        title=upload.title,
        content_type=upload.content_type,
        filename=upload.filename,
        size_bytes=len(raw),
        sha256=hashlib.sha256(raw).hexdigest(),
        text=text,
        language=analysis.language(text),
        chunks=chunks,
    )
