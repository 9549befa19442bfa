"""Request and response bodies of knowledge bases, documents, search and answers."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

import msgspec

Name = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
Title = Annotated[str, msgspec.Meta(min_length=1, max_length=300)]
TopK = Annotated[int, msgspec.Meta(ge=1, le=50)]
Question = Annotated[str, msgspec.Meta(min_length=1, max_length=4000)]
TextType = Literal["text/plain", "text/markdown", "text/html"]
Mode = Literal["generated", "extractive", "no_answer"]


class KnowledgeBaseCreate(msgspec.Struct, forbid_unknown_fields=True):
    name: Name


class KnowledgeBaseOut(msgspec.Struct):
    id: uuid.UUID
    name: str
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class KnowledgeBaseList(msgspec.Struct):
    items: list[KnowledgeBaseOut]
    total: int


class DocumentCreate(msgspec.Struct, forbid_unknown_fields=True):
    title: Title
    content: str
    content_type: TextType = "text/plain"


class DocumentOut(msgspec.Struct):
    id: uuid.UUID
    knowledge_base_id: uuid.UUID
    title: str
    content_type: str
    filename: str | None
    language: str | None
    size_bytes: int
    sha256: str
    version: int
    chunk_count: int
    created_at: datetime
    updated_at: datetime


class DocumentDetail(DocumentOut):
    """One document with its extracted text."""

    content: str


class DocumentList(msgspec.Struct):
    items: list[DocumentOut]
    total: int
    limit: int
    offset: int


class Scores(msgspec.Struct):
    """Each method's own score: BM25 (lexical), cosine similarity (dense, null when that arm did
    not run for this chunk) and their reciprocal-rank fusion, which orders the results."""

    bm25: float
    dense: float | None
    fused: float


class SearchHit(msgspec.Struct):
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    heading: str
    snippet: str
    score: float
    scores: Scores


class SearchResults(msgspec.Struct):
    items: list[SearchHit]
    terms: list[str]
    dense: bool


class QueryRequest(msgspec.Struct, forbid_unknown_fields=True):
    question: Question
    knowledge_base_id: uuid.UUID | None = None
    conversation_id: uuid.UUID | None = None
    top_k: TopK = 5


class Source(msgspec.Struct):
    document_id: uuid.UUID
    chunk_id: uuid.UUID
    title: str
    snippet: str
    score: float


class QueryAnswer(msgspec.Struct):
    answer: str
    mode: Mode
    sources: list[Source]
    confidence: float
    degraded: bool
