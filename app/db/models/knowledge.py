"""Knowledge bases, their documents, the documents' chunks and the term statistics for BM25.

A chunk's `terms` is a tsvector of the terms Botlyne's own analyser produced (already folded and
stemmed, see `app.domain.knowledge.analysis`), each with its positions, so the number of positions
is the term frequency. The `maintain_knowledge_base_statistics` trigger keeps each knowledge
base's chunk count, token count and per-term document frequency in step with its chunks, in the
same transaction that writes them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import (
    REAL,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, TSVECTOR, UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.db.base import Base, IdMixin, TimestampMixin


class KnowledgeBase(IdMixin, TimestampMixin, Base):
    __tablename__ = "knowledge_bases"
    __table_args__ = (
        UniqueConstraint("org_id", "name"),
        # The target of integrations' (knowledge_base_id, org_id) foreign key.
        UniqueConstraint("id", "org_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    # Kept by the statistics trigger: N and the total length behind BM25's average length.
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    token_count: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class Document(IdMixin, TimestampMixin, Base):
    __tablename__ = "documents"
    # A title names one document of a knowledge base; uploading it again replaces it.
    __table_args__ = (UniqueConstraint("knowledge_base_id", "title"),)

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(300), nullable=False)
    content_type: Mapped[str] = mapped_column(String(32), nullable=False)
    filename: Mapped[str | None] = mapped_column(String(255))
    # "en", "pt" or "es" when its function words tell; the answerability gate compares it with
    # the question's.
    language: Mapped[str | None] = mapped_column(String(8))
    size_bytes: Mapped[int] = mapped_column(Integer, nullable=False)
    sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    chunk_count: Mapped[int] = mapped_column(Integer, nullable=False)
    # The extracted text, so the document can be re-chunked without the original upload.
    content: Mapped[str] = mapped_column(Text, nullable=False)


class DocumentChunk(IdMixin, Base):
    __tablename__ = "document_chunks"
    __table_args__ = (
        UniqueConstraint("document_id", "ordinal"),
        # Full-text index, one posting list per knowledge base and term (see entities.py).
        Index(
            "ix_document_chunks_terms",
            text("knowledge_base_lexemes(knowledge_base_id, terms)"),
            postgresql_using="gin",
        ),
        Index("ix_document_chunks_knowledge_base_id", "knowledge_base_id"),
    )

    org_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
    )
    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("knowledge_bases.id", ondelete="CASCADE"), nullable=False
    )
    document_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("documents.id", ondelete="CASCADE"), nullable=False
    )
    ordinal: Mapped[int] = mapped_column(Integer, nullable=False)
    heading: Mapped[str] = mapped_column(Text, nullable=False)
    content: Mapped[str] = mapped_column(Text, nullable=False)
    # Number of terms, BM25's document length.
    token_count: Mapped[int] = mapped_column(Integer, nullable=False)
    terms: Mapped[str] = mapped_column(TSVECTOR, nullable=False)
    # Gemini embedding for the optional dense arm; float4[] needs no extension.
    embedding: Mapped[list[float] | None] = mapped_column(ARRAY(REAL))


class KnowledgeBaseTerm(Base):
    """How many chunks of a knowledge base contain a term; written only by the trigger."""

    __tablename__ = "knowledge_base_terms"

    knowledge_base_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True),
        ForeignKey("knowledge_bases.id", ondelete="CASCADE"),
        primary_key=True,
    )
    term: Mapped[str] = mapped_column(Text, primary_key=True)
    df: Mapped[int] = mapped_column(Integer, nullable=False)
