"""Knowledge: knowledge bases, documents, chunks with their full-text terms, BM25 statistics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 21:38:00.911556
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.db.entities import (
    KNOWLEDGE_BASE_LEXEMES,
    KNOWLEDGE_TRIGGERS,
    MAINTAIN_KNOWLEDGE_BASE_STATISTICS,
)

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamps() -> list[sa.Column[object]]:
    return [
        sa.Column(name, sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False)
        for name in ("created_at", "updated_at")
    ]


def _id() -> sa.Column[object]:
    return sa.Column("id", sa.UUID(), server_default=sa.text("gen_random_uuid()"), nullable=False)


def _org_id(table: str) -> tuple[sa.Column[object], sa.ForeignKeyConstraint]:
    return sa.Column("org_id", sa.UUID(), nullable=False), sa.ForeignKeyConstraint(
        ["org_id"],
        ["organizations.id"],
        name=op.f(f"fk_{table}_org_id_organizations"),
        ondelete="CASCADE",
    )


def _knowledge_base_id(table: str) -> tuple[sa.Column[object], sa.ForeignKeyConstraint]:
    return sa.Column("knowledge_base_id", sa.UUID(), nullable=False), sa.ForeignKeyConstraint(
        ["knowledge_base_id"],
        ["knowledge_bases.id"],
        name=op.f(f"fk_{table}_knowledge_base_id_knowledge_bases"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "knowledge_bases",
        *_org_id("knowledge_bases"),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("chunk_count", sa.Integer(), server_default="0", nullable=False),
        sa.Column("token_count", sa.BigInteger(), server_default="0", nullable=False),
        _id(),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_knowledge_bases")),
        sa.UniqueConstraint("org_id", "name", name=op.f("uq_knowledge_bases_org_id")),
    )
    op.create_table(
        "documents",
        *_org_id("documents"),
        *_knowledge_base_id("documents"),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=True),
        sa.Column("language", sa.String(length=8), nullable=True),
        sa.Column("size_bytes", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("chunk_count", sa.Integer(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        _id(),
        *_timestamps(),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_documents")),
        sa.UniqueConstraint(
            "knowledge_base_id", "title", name=op.f("uq_documents_knowledge_base_id")
        ),
    )
    op.create_table(
        "knowledge_base_terms",
        *_knowledge_base_id("knowledge_base_terms"),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("df", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("knowledge_base_id", "term", name=op.f("pk_knowledge_base_terms")),
    )
    op.create_table(
        "document_chunks",
        *_org_id("document_chunks"),
        *_knowledge_base_id("document_chunks"),
        sa.Column("document_id", sa.UUID(), nullable=False),
        sa.Column("ordinal", sa.Integer(), nullable=False),
        sa.Column("heading", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("token_count", sa.Integer(), nullable=False),
        sa.Column("terms", postgresql.TSVECTOR(), nullable=False),
        sa.Column("embedding", postgresql.ARRAY(sa.REAL()), nullable=True),
        _id(),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_document_chunks_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_document_chunks")),
        sa.UniqueConstraint("document_id", "ordinal", name=op.f("uq_document_chunks_document_id")),
    )
    op.create_index(
        "ix_document_chunks_knowledge_base_id", "document_chunks", ["knowledge_base_id"]
    )
    op.create_entity(KNOWLEDGE_BASE_LEXEMES)
    op.create_index(
        "ix_document_chunks_terms",
        "document_chunks",
        [sa.text("knowledge_base_lexemes(knowledge_base_id, terms)")],
        postgresql_using="gin",
    )
    op.create_entity(MAINTAIN_KNOWLEDGE_BASE_STATISTICS)
    for trigger in KNOWLEDGE_TRIGGERS:
        op.create_entity(trigger)


def downgrade() -> None:
    for trigger in KNOWLEDGE_TRIGGERS:
        op.drop_entity(trigger)
    op.drop_entity(MAINTAIN_KNOWLEDGE_BASE_STATISTICS)
    op.drop_table("document_chunks")
    op.drop_entity(KNOWLEDGE_BASE_LEXEMES)
    op.drop_table("knowledge_base_terms")
    op.drop_table("documents")
    op.drop_table("knowledge_bases")
