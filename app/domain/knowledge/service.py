"""Knowledge bases and documents (`KnowledgeService`), retrieval and answers (`KnowledgeSearch`).

Writes need an admin key; reading, searching and asking work with any key of the organization.
`KnowledgeSearch` takes an organization id rather than a caller, so the bot worker answers
conversations with exactly what `POST /query` does.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
from litestar.exceptions import NotFoundException
from loguru import logger
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.logging import Throttled
from app.core.resilience import CircuitOpenError, ClientFault, TransientError
from app.db.models.knowledge import Document, KnowledgeBase
from app.domain.knowledge import analysis, answers, ranking
from app.domain.knowledge.ingestion import Prepared, Upload, prepare
from app.domain.knowledge.repository import (
    ChunkRepository,
    ConversationReferences,
    DocumentRepository,
    KnowledgeBaseRepository,
    LexicalHit,
    NewChunk,
    Passage,
)
from app.domain.knowledge.schemas import Mode
from app.domain.orgs.auth import Principal
from app.gateways.gemini import GeminiGateway, GeminiUnavailable

# Everything that means "Gemini cannot help right now"; the feature degrades, never fails.
GEMINI_ERRORS = (TransientError, CircuitOpenError, ClientFault, GeminiUnavailable)
# While Gemini is down every answer says so: one line per 10 s (the breaker's own CRITICAL line
# and the metrics tell the rest).
_without_gemini_log = Throttled()


async def knowledge_base_of(
    bases: KnowledgeBaseRepository, kb_id: uuid.UUID | None
) -> KnowledgeBase:
    """The named knowledge base, or without a name the organization's oldest one."""
    kb = await (bases.get(kb_id) if kb_id is not None else bases.first())
    if kb is None:
        detail = "Knowledge base not found" if kb_id else "The organization has no knowledge base"
        raise NotFoundException(detail)
    return kb


class KnowledgeService:
    def __init__(
        self,
        session: AsyncSession,
        principal: Principal,
        gemini: GeminiGateway,
        max_document_bytes: int,
    ) -> None:
        self.principal = principal
        self.gemini = gemini
        self.max_document_bytes = max_document_bytes
        self.bases = KnowledgeBaseRepository(session, principal.org_id)
        self.documents = DocumentRepository(session, principal.org_id)
        self.chunks = ChunkRepository(session, principal.org_id)

    async def create_base(self, name: str) -> KnowledgeBase:
        self.principal.require_admin()
        return await self.bases.add(KnowledgeBase(org_id=self.principal.org_id, name=name))

    async def list_bases(self) -> Sequence[KnowledgeBase]:
        return await self.bases.list()

    async def get_base(self, kb_id: uuid.UUID) -> KnowledgeBase:
        return await knowledge_base_of(self.bases, kb_id)

    async def writable_base(self, kb_id: uuid.UUID) -> KnowledgeBase:
        self.principal.require_admin()
        return await self.get_base(kb_id)

    async def add_document(self, kb: KnowledgeBase, upload: Upload) -> tuple[Document, bool]:
        """Store a document in `kb` (from `writable_base`), or replace the one with the same
        title; True when it is new.

        Its chunks are replaced in the same transaction, so searches see the old version or
        the new one, never a mix, and a failed upload leaves the old version in place."""
        prepared = await anyio.to_thread.run_sync(prepare, upload, self.max_document_bytes)
        embeddings = await self._embeddings(prepared)
        document = await self.documents.upsert(
            {
                "knowledge_base_id": kb.id,
                "title": prepared.title,
                "content_type": prepared.content_type,
                "filename": prepared.filename,
                "language": prepared.language,
                "size_bytes": prepared.size_bytes,
                "sha256": prepared.sha256,
                "chunk_count": len(prepared.chunks),
                "content": prepared.text,
            }
        )
        await self.chunks.replace(
            document,
            [
                NewChunk(chunk.heading, chunk.content, chunk.terms, vector)
                for chunk, vector in zip(prepared.chunks, embeddings, strict=True)
            ],
        )
        return document, document.version == 1

    async def _embeddings(self, prepared: Prepared) -> list[list[float] | None]:
        """Vectors for the dense arm, or none at all: a document is searchable without them."""
        nothing: list[list[float] | None] = [None] * len(prepared.chunks)
        if not self.gemini.configured:
            return nothing
        texts = [f"{prepared.title}\n{chunk.indexed_text}" for chunk in prepared.chunks]
        try:
            return list(await self.gemini.embed(texts, "RETRIEVAL_DOCUMENT"))
        except GEMINI_ERRORS as exc:
            logger.warning("document stored without embeddings: {}", type(exc).__name__)
            return nothing

    async def list_documents(
        self, kb_id: uuid.UUID, limit: int, offset: int
    ) -> tuple[Sequence[Document], int]:
        kb = await self.get_base(kb_id)
        return await self.documents.page(kb.id, limit, offset), await self.documents.count_in(kb.id)

    async def get_document(self, kb_id: uuid.UUID, document_id: uuid.UUID) -> Document:
        document = await self.documents.get_in(kb_id, document_id)
        if document is None:
            raise NotFoundException("Document not found")
        return document

    async def delete_document(self, kb_id: uuid.UUID, document_id: uuid.UUID) -> None:
        self.principal.require_admin()
        if not await self.documents.delete_in(kb_id, document_id):
            raise NotFoundException("Document not found")


@dataclass(frozen=True, slots=True)
class Result:
    passage: Passage
    bm25: float
    dense: float | None
    score: float


@dataclass(frozen=True, slots=True)
class QueryTerms:
    terms: list[str]
    # df of the terms the knowledge base knows.
    dfs: dict[str, int]
    # What ranking scores with (`ranking.scoring_weights`), typo stand-ins included, and their df.
    scoring: dict[str, float]
    scored_dfs: dict[str, int]


@dataclass(frozen=True, slots=True)
class Retrieved:
    results: list[Result]
    # The question's terms with their weights (idf; unknown terms weigh more, see ranking).
    weights: dict[str, float]
    dfs: dict[str, int]
    # Every lexical candidate in final order, for the gate.
    ranked: list[LexicalHit]
    dense: bool


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    mode: Mode
    sources: list[tuple[Passage, float]]
    weights: dict[str, float]
    confidence: float
    degraded: bool


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    dot = math.fsum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(math.fsum(x * x for x in a)) * math.sqrt(math.fsum(y * y for y in b))
    return dot / norm if norm else 0.0


class KnowledgeSearch:
    """Retrieval and answering for one organization; Gemini is used when it can be."""

    def __init__(self, session: AsyncSession, org_id: uuid.UUID, gemini: GeminiGateway) -> None:
        self.gemini = gemini
        self.bases = KnowledgeBaseRepository(session, org_id)
        self.chunks = ChunkRepository(session, org_id)
        self.conversations = ConversationReferences(session, org_id)
        # Once a call failed, the rest of this request does without Gemini: the next call would
        # most likely fail too, after the same timeouts and retries.
        self.gemini_failed = False

    @property
    def gemini_usable(self) -> bool:
        return self.gemini.configured and not self.gemini_failed

    def _gemini_lost(self, exc: Exception) -> None:
        self.gemini_failed = True
        _without_gemini_log.warning("answering without Gemini: {}", type(exc).__name__)

    async def search(self, kb_id: uuid.UUID, question: str, top_k: int) -> Retrieved:
        return await self.retrieve(await knowledge_base_of(self.bases, kb_id), question, top_k)

    async def query_terms(self, kb: KnowledgeBase, question: str) -> QueryTerms:
        """The question's terms, and the terms ranking scores it by with their weights."""
        terms = analysis.unique(analysis.terms(question))[: ranking.MAX_QUERY_TERMS]
        dfs = await self.bases.document_frequencies(kb.id, terms) if terms else {}
        unknown = [term for term in terms if term not in dfs]
        misses = {miss for term in unknown for miss in ranking.near_misses(term)} - set(terms)
        all_dfs = dict(dfs)
        if misses:
            all_dfs |= await self.bases.document_frequencies(kb.id, sorted(misses))
        scoring = ranking.scoring_weights(
            dfs, ranking.corrections(unknown, all_dfs), all_dfs, kb.chunk_count
        )
        return QueryTerms(terms, dfs, scoring, {term: all_dfs[term] for term in scoring})

    async def retrieve(self, kb: KnowledgeBase, question: str, top_k: int) -> Retrieved:
        query = await self.query_terms(kb, question)
        weights = ranking.question_weights(query.terms, query.dfs, kb.chunk_count)
        hits: list[LexicalHit] = []
        if query.scoring:
            hits = await self.chunks.lexical(
                kb.id,
                query.scoring,
                ranking.candidate_terms(query.scored_dfs),
                kb.token_count / kb.chunk_count,
            )
        dense = await self._dense_scores(question, hits)
        rankings = [(ranking.LEXICAL_WEIGHT, [hit.chunk_id for hit in hits])]
        if dense:
            rankings.append((ranking.DENSE_WEIGHT, sorted(dense, key=dense.__getitem__)[::-1]))
        fused = ranking.fuse(rankings)
        ranked = sorted(hits, key=lambda hit: fused[hit.chunk_id], reverse=True)
        passages = await self.chunks.passages([hit.chunk_id for hit in ranked[:top_k]])
        results = [
            Result(passages[hit.chunk_id], hit.bm25, dense.get(hit.chunk_id), fused[hit.chunk_id])
            for hit in ranked[:top_k]
        ]
        return Retrieved(results, weights, query.dfs, ranked, bool(dense))

    async def _dense_scores(
        self, question: str, hits: Sequence[LexicalHit]
    ) -> dict[uuid.UUID, float]:
        """Cosine similarity of the question to the candidates that have embeddings.

        The dense arm re-scores the lexical candidate pool: without pgvector there is no index
        to find nearest neighbours in the whole knowledge base, and the pool holds every chunk
        sharing a word with the question."""
        if not hits or not self.gemini_usable:
            return {}
        stored = await self.chunks.embeddings([hit.chunk_id for hit in hits])
        if not stored:
            return {}
        try:
            (vector,) = await self.gemini.embed([question], "RETRIEVAL_QUERY")
        except GEMINI_ERRORS as exc:
            self._gemini_lost(exc)
            return {}
        return {
            chunk_id: cosine(vector, stored_vector)
            for chunk_id, stored_vector in stored.items()
            if len(stored_vector) == len(vector)
        }

    async def answer(
        self,
        question: str,
        kb_id: uuid.UUID | None = None,
        top_k: int = 5,
        conversation_id: uuid.UUID | None = None,
        history: Sequence[tuple[str, str]] = (),
    ) -> Answer:
        if conversation_id is not None and not await self.conversations.exists(conversation_id):
            raise NotFoundException("Conversation not found")
        kb = await knowledge_base_of(self.bases, kb_id)
        retrieved = await self.retrieve(kb, question, top_k)
        evidence = await self.evidence(kb, question, retrieved)
        confidence = round(evidence.coverage, 3)
        if not retrieved.results or not evidence.answerable():
            return self._no_answer(question, retrieved, confidence)
        passages = [result.passage for result in retrieved.results]
        scores = [result.score for result in retrieved.results]
        if self.gemini_usable:
            prompt = answers.build_prompt(question, passages, history)
            try:
                text = await self.gemini.generate(answers.SYSTEM_INSTRUCTION, prompt)
            except GEMINI_ERRORS as exc:
                self._gemini_lost(exc)
            else:
                return self._generated(question, text, retrieved, confidence)
        cited = answers.extractive(passages, retrieved.weights)
        return Answer(
            cited.text,
            "extractive",
            [(passages[i], scores[i]) for i in cited.cited],
            retrieved.weights,
            confidence,
            degraded=True,
        )

    async def evidence(
        self, kb: KnowledgeBase, question: str, retrieved: Retrieved
    ) -> ranking.Evidence:
        """What the answerability gate decides on."""
        language = analysis.language(question)
        languages = await self.bases.languages(kb.id) if language else frozenset()
        return ranking.Evidence(
            coverage=ranking.coverage(retrieved.weights, [h.matched for h in retrieved.ranked]),
            missing=tuple(ranking.missing_names(question, retrieved.dfs)),
            foreign=bool(languages) and language not in languages,
        )

    def _no_answer(self, question: str, retrieved: Retrieved, confidence: float) -> Answer:
        return Answer(
            answers.no_answer_text(question),
            "no_answer",
            [],
            retrieved.weights,
            confidence,
            degraded=not self.gemini_usable,
        )

    def _generated(
        self, question: str, text: str, retrieved: Retrieved, confidence: float
    ) -> Answer:
        if not text.strip() or text.strip().startswith(answers.NO_ANSWER):
            return self._no_answer(question, retrieved, confidence)
        cited = answers.check_citations(text, len(retrieved.results))
        if cited.invented:
            logger.warning("dropped {} citation(s) of sources that were not given", cited.invented)
        indexes = cited.cited or list(range(min(answers.FALLBACK_SOURCES, len(retrieved.results))))
        sources = [(retrieved.results[i].passage, retrieved.results[i].score) for i in indexes]
        return Answer(cited.text, "generated", sources, retrieved.weights, confidence, False)
