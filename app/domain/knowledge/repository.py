"""Data access for knowledge bases, documents, chunks and retrieval.

Every query is scoped by organization (`OrgScopedRepository`), the retrieval queries included, so
no organization can reach another's chunks even with a guessed knowledge base id.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from sqlalchemy import Select, Text, TextClause, any_, bindparam, delete, exists, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert

from app.db.models import Conversation
from app.db.models.knowledge import Document, DocumentChunk, KnowledgeBase, KnowledgeBaseTerm
from app.db.repository import OrgScopedRepository
from app.domain.knowledge import ranking

# tsvector positions stop at 16383 and keep at most 256 entries per lexeme.
_MAX_POSITION = 16383
_MAX_POSITIONS = 256


def tsvector_literal(terms: Sequence[str]) -> str:
    """The tsvector of already-analysed terms, with positions, so that PostgreSQL applies no
    parser or dictionary of its own and the number of positions is each term's frequency."""
    positions: dict[str, list[str]] = {}
    for index, term in enumerate(terms, start=1):
        positions.setdefault(term, []).append(str(min(index, _MAX_POSITION)))
    return " ".join(
        f"{_quoted(term)}:{','.join(places[:_MAX_POSITIONS])}" for term, places in positions.items()
    )


def scoped(kb_id: uuid.UUID, terms: Sequence[str]) -> list[str]:
    """Terms as the full-text index stores them: behind the first 8 hex digits of their
    knowledge base's id (see `KNOWLEDGE_BASE_LEXEMES`), so one knowledge base's search never
    walks another's postings. A shared prefix only costs speed: rows are filtered by id too."""
    prefix = str(kb_id)[:8]
    return [f"{prefix}:{term}" for term in terms]


def tsquery_literal(terms: Sequence[str], operator: str = " | ") -> str:
    return operator.join(_quoted(term) for term in terms)


def _quoted(term: str) -> str:
    return "'" + term.replace("\\", "\\\\").replace("'", "''") + "'"


@dataclass(frozen=True, slots=True)
class LexicalHit:
    chunk_id: uuid.UUID
    bm25: float
    matched: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: uuid.UUID
    document_id: uuid.UUID
    title: str
    heading: str
    content: str


@dataclass(frozen=True, slots=True)
class NewChunk:
    heading: str
    content: str
    terms: list[str]
    embedding: list[float] | None


# Stage one scores every candidate quickly, counting each matched term once (a GIN index finds
# the candidates); stage two recomputes exact BM25, with term frequencies read from the tsvector
# positions, for the best `pool` of them. The quick score is one expression per term rather than
# a subquery per row, which is the difference between 3 and 30 ms on 5,000 candidates; its terms
# and weights are parameters typed by their CAST, so each tsquery is parsed once per search, when
# the parameters are bound, not once per candidate. Values are typed explicitly: an untyped
# parameter next to an integer would be taken for an integer (0.75 would arrive as 0).
# `matches` reads only the full-text index, whose keys already carry the knowledge base; the id
# and organization are checked on its rows. Written into the same WHERE, the knowledge base id
# led the planner (whenever its statistics under-counted a large knowledge base) to AND the
# full-text index with the btree on `knowledge_base_id`, reading every row id of the knowledge
# base first (5 ms at 100,000 chunks).
_LEXICAL_SEARCH = """
    WITH bm25 AS (
        SELECT CAST(:k1 AS float8) AS k1, CAST(:b AS float8) AS b, CAST(:avgdl AS float8) AS avgdl
    ), query AS (
        SELECT term, weight
        FROM unnest(CAST(:terms AS text[]), CAST(:weights AS float8[])) AS q(term, weight)
    ), matches AS (
        SELECT c.id, c.terms, c.token_count, c.knowledge_base_id, c.org_id
        FROM document_chunks AS c
        WHERE knowledge_base_lexemes(c.knowledge_base_id, c.terms)
              @@ CAST(:candidate_query AS tsquery)
        LIMIT :budget
    ), pool AS (
        SELECT c.id, c.terms, c.token_count,
               ({quick})
               / (CAST(:norm_base AS float8) + CAST(:norm_length AS float8) * c.token_count)
                   AS quick
        FROM matches AS c
        WHERE c.knowledge_base_id = :kb AND c.org_id = :org
        ORDER BY quick DESC, c.id
        LIMIT :pool
    )
    SELECT c.id,
           sum(q.weight * cardinality(f.positions) * (p.k1 + 1)
               / (cardinality(f.positions) + p.k1 * (1 - p.b + p.b * c.token_count / p.avgdl)))
               AS bm25,
           array_agg(q.term) AS matched
    FROM pool AS c
    CROSS JOIN LATERAL unnest(c.terms) AS f
    JOIN query AS q ON q.term = f.lexeme
    CROSS JOIN bm25 AS p
    GROUP BY c.id
    ORDER BY bm25 DESC, c.id
"""


@cache
def lexical_search(terms: int) -> TextClause:
    """The search statement for a question of `terms` distinct known terms."""
    quick = " + ".join(
        f"CAST(c.terms @@ CAST(:q{i} AS tsquery) AS int) * CAST(:w{i} AS float8)"
        for i in range(terms)
    )
    return text(_LEXICAL_SEARCH.format(quick=quick))


class KnowledgeBaseRepository(OrgScopedRepository[KnowledgeBase]):
    model = KnowledgeBase

    async def list(self) -> Sequence[KnowledgeBase]:
        return await self.all(self.select().order_by(KnowledgeBase.created_at, KnowledgeBase.id))

    async def first(self) -> KnowledgeBase | None:
        """The organization's oldest knowledge base: the default for questions that name none."""
        statement = self.select().order_by(KnowledgeBase.created_at, KnowledgeBase.id).limit(1)
        return await self.one_or_none(statement)

    async def document_frequencies(self, kb_id: uuid.UUID, terms: Sequence[str]) -> dict[str, int]:
        """df of each of `terms` that occurs in the knowledge base (the caller owns `kb_id`)."""
        # One array parameter: a typo's near misses are hundreds of terms.
        wanted = bindparam("terms", list(terms), type_=ARRAY(Text))
        rows = await self.session.execute(
            select(KnowledgeBaseTerm.term, KnowledgeBaseTerm.df).where(
                KnowledgeBaseTerm.knowledge_base_id == kb_id,
                KnowledgeBaseTerm.term == any_(wanted),
            )
        )
        return {term: df for term, df in rows}

    async def languages(self, kb_id: uuid.UUID) -> frozenset[str]:
        rows = await self.session.scalars(
            select(Document.language)
            .where(
                Document.knowledge_base_id == kb_id,
                Document.org_id == self.org_id,
                Document.language.is_not(None),
            )
            .distinct()
        )
        return frozenset(language for language in rows if language)


class DocumentRepository(OrgScopedRepository[Document]):
    model = Document

    def in_base(self, kb_id: uuid.UUID) -> Select[Document]:
        return self.select().where(Document.knowledge_base_id == kb_id)

    async def page(self, kb_id: uuid.UUID, limit: int, offset: int) -> Sequence[Document]:
        return await self.all(
            self.in_base(kb_id)
            .order_by(Document.created_at, Document.id)
            .limit(limit)
            .offset(offset)
        )

    async def count_in(self, kb_id: uuid.UUID) -> int:
        statement = select(func.count()).where(
            Document.knowledge_base_id == kb_id, Document.org_id == self.org_id
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def get_in(self, kb_id: uuid.UUID, document_id: uuid.UUID) -> Document | None:
        return await self.one_or_none(self.in_base(kb_id).where(Document.id == document_id))

    async def delete_in(self, kb_id: uuid.UUID, document_id: uuid.UUID) -> bool:
        """Delete a document; its chunks go with it (foreign key cascade)."""
        result = await self.session.execute(
            delete(Document).where(
                Document.id == document_id,
                Document.knowledge_base_id == kb_id,
                Document.org_id == self.org_id,
            )
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def upsert(self, values: Mapping[str, Any]) -> Document:
        """Insert the document, or replace the one with the same title in the same knowledge
        base (its version goes up). The row stays locked until the transaction ends, so two
        uploads of one title are applied one after the other."""
        changing = {key: value for key, value in values.items() if key != "knowledge_base_id"}
        statement = (
            insert(Document)
            .values(org_id=self.org_id, **values)
            .on_conflict_do_update(
                index_elements=[Document.knowledge_base_id, Document.title],
                set_={**changing, "version": Document.version + 1, "updated_at": func.now()},
            )
            .returning(Document)
            .execution_options(populate_existing=True)
        )
        return (await self.session.scalars(statement)).one()


class ChunkRepository(OrgScopedRepository[DocumentChunk]):
    model = DocumentChunk

    async def replace(self, document: Document, chunks: Sequence[NewChunk]) -> None:
        """The document's chunks become `chunks`, within the caller's transaction: readers see
        the old set or the new one, never a mix."""
        await self.session.execute(
            delete(DocumentChunk).where(DocumentChunk.document_id == document.id)
        )
        if not chunks:
            return
        await self.session.execute(
            text(
                """
                INSERT INTO document_chunks (org_id, knowledge_base_id, document_id, ordinal,
                                             heading, content, token_count, terms, embedding)
                SELECT :org, :kb, :document, c.ordinal, c.heading, c.content, c.token_count,
                       CAST(c.terms AS tsvector), e.embedding
                FROM unnest(CAST(:ordinals AS int[]), CAST(:headings AS text[]),
                            CAST(:contents AS text[]), CAST(:token_counts AS int[]),
                            CAST(:terms AS text[]))
                    AS c(ordinal, heading, content, token_count, terms)
                LEFT JOIN (
                    SELECT ordinal, CAST(embedding AS real[]) AS embedding
                    FROM jsonb_to_recordset(CAST(:embeddings AS jsonb))
                        AS e(ordinal int, embedding real[])
                ) AS e USING (ordinal)
                """
            ),
            {
                "org": self.org_id,
                "kb": document.knowledge_base_id,
                "document": document.id,
                "ordinals": list(range(len(chunks))),
                "headings": [chunk.heading for chunk in chunks],
                "contents": [chunk.content for chunk in chunks],
                "token_counts": [len(chunk.terms) for chunk in chunks],
                "terms": [tsvector_literal(chunk.terms) for chunk in chunks],
                # JSON because a PostgreSQL array must be rectangular, and some may be missing.
                "embeddings": json.dumps(
                    [
                        {"ordinal": ordinal, "embedding": chunk.embedding}
                        for ordinal, chunk in enumerate(chunks)
                        if chunk.embedding is not None
                    ]
                ),
            },
        )

    async def lexical(
        self,
        kb_id: uuid.UUID,
        weights: Mapping[str, float],
        candidates: Sequence[str],
        average_length: float,
        pool: int = ranking.RERANK_POOL,
        budget: int | None = None,
    ) -> list[LexicalHit]:
        """Chunks matching any of `candidates`, best BM25 first, scored over every term of
        `weights` (term → its weight, see `ranking.scoring_weights`)."""
        terms = list(weights)
        # The quick score only chooses the pool; the rarest terms decide it, and each term it
        # checks costs a test per candidate.
        quick = sorted(terms, key=weights.__getitem__, reverse=True)[: ranking.QUICK_TERMS]
        rows = await self.session.execute(
            lexical_search(len(quick)),
            {
                "kb": kb_id,
                "org": self.org_id,
                "terms": terms,
                "weights": [weights[term] for term in terms],
                **{f"q{i}": _quoted(term) for i, term in enumerate(quick)},
                **{f"w{i}": weights[term] for i, term in enumerate(quick)},
                "candidate_query": tsquery_literal(scoped(kb_id, candidates)),
                "budget": budget or ranking.CANDIDATE_BUDGET,
                "pool": pool,
                "k1": ranking.K1,
                "b": ranking.B,
                "avgdl": average_length,
                # BM25's length normalisation 1 + k1 (1 - b + b len / avgdl) as base + factor len.
                "norm_base": 1 + ranking.K1 * (1 - ranking.B),
                "norm_length": ranking.K1 * ranking.B / average_length,
            },
        )
        return [LexicalHit(row.id, float(row.bm25), tuple(row.matched)) for row in rows]

    async def embeddings(self, chunk_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[float]]:
        rows = await self.session.execute(
            select(DocumentChunk.id, DocumentChunk.embedding).where(
                DocumentChunk.id.in_(chunk_ids),
                DocumentChunk.org_id == self.org_id,
                DocumentChunk.embedding.is_not(None),
            )
        )
        return {chunk_id: list(vector) for chunk_id, vector in rows if vector}

    async def passages(self, chunk_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Passage]:
        rows = await self.session.execute(
            select(
                DocumentChunk.id,
                DocumentChunk.document_id,
                Document.title,
                DocumentChunk.heading,
                DocumentChunk.content,
            )
            .join(Document, Document.id == DocumentChunk.document_id)
            .where(DocumentChunk.id.in_(chunk_ids), DocumentChunk.org_id == self.org_id)
        )
        return {row.id: Passage(*row) for row in rows}


class ConversationReferences(OrgScopedRepository[Conversation]):
    """Only whether a conversation belongs to the caller; the conversations feature owns them."""

    model = Conversation

    async def exists(self, conversation_id: uuid.UUID) -> bool:
        statement = select(
            exists().where(Conversation.id == conversation_id, Conversation.org_id == self.org_id)
        )
        return bool((await self.session.execute(statement)).scalar_one())
