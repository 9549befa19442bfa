"""Retrieval quality, answerability gate and search latency on the golden set.

    .venv/bin/python -m bench.retrieval.run [--load-chunks 100000] [--queries 450]
        [--exhaustive-sample 50] [--admin-database-url URL]

1. A fresh database (dropped at the end) gets one organization and one knowledge base per golden
   file, every document ingested through `KnowledgeService.add_document`, the code path of
   `POST /knowledge-bases/{id}/documents`. Gemini is not configured: the lexical arm only.
2. Every answerable question is ranked at document level (a document scores its best chunk) by
   (a) PostgreSQL's text search as usually asked (the language's stock configuration on both
   sides, `plainto_tsquery` or `websearch_to_tsquery` OR-ed, `ts_rank` with normalization 0 or
   1), (a') `ts_rank` over the same OR query on Botlyne's own tsvectors, (b) a reference BM25
   (`rank_bm25.BM25Okapi`) over the same chunks and terms, (b') the same reference over whole
   words (no prefix truncation), and (c) Botlyne's `KnowledgeSearch.retrieve`. Reported:
   nDCG@10 (gain 2^grade - 1), recall@5 and MRR, where relevant means grade >= 2, over all
   questions and over two fixed halves (odd question numbers tune, even ones are held out), and a
   paired randomization test of Botlyne's nDCG@10 against each other ranker.
3. The gate decides every question (positive class: unanswerable): precision and recall, and the
   same with the coverage threshold chosen on two organizations and applied to the third, and
   chosen on the tuning half and applied to the held-out half.
4. A separate organization gets a knowledge base of `--load-chunks` synthetic chunks (golden
   sentences recombined at random) through the same ingestion path; the golden questions are
   searched against it with `KnowledgeSearch.search`, each in its own session, timed end to end
   (SQL included). The same questions against the small golden knowledge bases are timed while
   the large one shares the table, and a sample is compared with exhaustive BM25 on the large
   knowledge base to show what the candidate budget costs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import random
import statistics
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from unittest import mock

from rank_bm25 import BM25Okapi
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.migrations import upgrade
from app.db.models.knowledge import KnowledgeBase
from app.domain.knowledge import analysis, ranking
from app.domain.knowledge.chunking import sentences
from app.domain.knowledge.extraction import MEDIA_TYPES
from app.domain.knowledge.ingestion import Upload
from app.domain.knowledge.repository import ChunkRepository, tsquery_literal
from app.domain.knowledge.service import KnowledgeSearch, KnowledgeService
from app.domain.orgs.auth import Principal
from app.domain.orgs.service import create_organization
from app.gateways.gemini import GeminiGateway
from bench.harness import (
    DEFAULT_ADMIN_DATABASE_URL,
    fresh_database,
    machine_info,
    progress,
    wait_for_quiet,
    write_results,
)

GOLDEN = Path(__file__).resolve().parent / "golden"
ORGS = ("nimbuspay", "casaverde", "rutasur")
RELEVANT = 2
RANKED_CHUNKS = 50
SYNTHETIC_WORDS = 110
SYNTHETIC_PARAGRAPHS = 100

Ranking = list[str]


# --------------------------------------------------------------------------------------------
# Metrics


def ndcg_at(ranked: Ranking, grades: Mapping[str, int], k: int = 10) -> float:
    dcg = sum((2 ** grades.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(grades.values(), reverse=True)[:k]
    best = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / best if best else 0.0


def recall_at(ranked: Ranking, grades: Mapping[str, int], k: int = 5) -> float:
    relevant = {d for d, g in grades.items() if g >= RELEVANT}
    return len(relevant & set(ranked[:k])) / len(relevant)


def reciprocal_rank(ranked: Ranking, grades: Mapping[str, int]) -> float:
    return next((1 / (i + 1) for i, d in enumerate(ranked) if grades.get(d, 0) >= RELEVANT), 0.0)


def by_document(chunks: Sequence[tuple[str, float]]) -> Ranking:
    """Document ids in order of their best chunk (chunks arrive best first)."""
    return list(dict.fromkeys(document for document, _ in chunks))


def summary(rows: Sequence[tuple[float, float, float]]) -> dict[str, float]:
    columns = list(zip(*rows, strict=True)) or [(0.0,), (0.0,), (0.0,)]
    ndcg, recall, mrr = (statistics.fmean(column) for column in columns)
    return {"ndcg@10": round(ndcg, 3), "recall@5": round(recall, 3), "mrr": round(mrr, 3)}


def half(question: Mapping[str, Any]) -> str:
    """A fixed split of the golden questions: odd numbers tune, even numbers are held out.
    Every constant chosen on the golden set is reported on both halves."""
    number = int("".join(ch for ch in question["id"] if ch.isdigit()))
    return "tuning" if number % 2 else "held_out"


def paired_p_value(a: Sequence[float], b: Sequence[float], rounds: int = 20_000) -> float:
    """Two-sided paired randomization test of mean(a) - mean(b): how often swapping each
    question's pair at random gives a difference at least as large."""
    differences = [x - y for x, y in zip(a, b, strict=True)]
    observed = abs(sum(differences))
    rng = random.Random(4)
    extreme = sum(
        abs(sum(d if rng.random() < 0.5 else -d for d in differences)) >= observed - 1e-12
        for _ in range(rounds)
    )
    return round((extreme + 1) / (rounds + 1), 4)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def latency(values: Sequence[float]) -> dict[str, float]:
    return {
        "queries": len(values),
        **{f"p{p}_ms": round(percentile(values, p), 1) for p in (50, 95, 99)},
        "max_ms": round(max(values), 1),
    }


# --------------------------------------------------------------------------------------------
# Loading


class Golden:
    def __init__(self, org: str) -> None:
        data = json.loads((GOLDEN / f"{org}.json").read_text(encoding="utf-8"))
        self.org = org
        self.documents: list[dict[str, Any]] = data["documents"]
        self.questions: list[dict[str, Any]] = data["questions"]
        self.kb: KnowledgeBase
        self.principal: Principal
        self.doc_ids: dict[uuid.UUID, str] = {}


async def _tenant(
    sessions: async_sessionmaker[AsyncSession], name: str
) -> tuple[Principal, KnowledgeBase]:
    async with sessions.begin() as session:
        org, _ = await create_organization(session, name)
        principal = Principal(key_id=uuid.uuid4(), org_id=org.id, role="admin", agent_id=None)
        kb = await service(session, principal).create_base(name)
    return principal, kb


def service(session: AsyncSession, principal: Principal) -> KnowledgeService:
    return KnowledgeService(session, principal, GeminiGateway(Settings()), 64 * 1024 * 1024)


async def ingest(
    sessions: async_sessionmaker[AsyncSession],
    principal: Principal,
    kb: KnowledgeBase,
    upload: Upload,
) -> uuid.UUID:
    async with sessions.begin() as session:
        document, _ = await service(session, principal).add_document(kb, upload)
        return document.id


async def load_golden(sessions: async_sessionmaker[AsyncSession]) -> list[Golden]:
    goldens = []
    for org in ORGS:
        golden = Golden(org)
        golden.principal, golden.kb = await _tenant(sessions, org)
        for doc in golden.documents:
            upload = Upload(doc["title"], doc["content"], MEDIA_TYPES[doc["content_type"]])
            golden.doc_ids[await ingest(sessions, golden.principal, golden.kb, upload)] = doc["id"]
        async with sessions() as session:
            golden.kb = await session.get_one(KnowledgeBase, golden.kb.id)
        goldens.append(golden)
        progress(f"{org}: {len(golden.documents)} documents ingested")
    return goldens


async def load_synthetic(
    sessions: async_sessionmaker[AsyncSession], goldens: Sequence[Golden], chunks: int
) -> KnowledgeBase:
    """Documents of `SYNTHETIC_PARAGRAPHS` paragraphs of at least `SYNTHETIC_WORDS` words of
    random golden sentences, until the knowledge base holds `chunks` chunks."""
    pool = [s for g in goldens for d in g.documents for s in sentences(d["content"])]
    pool = [s for s in pool if len(s.split()) >= 4 and not s.startswith(("#", "|", "<"))]
    rng = random.Random(20261128)
    principal, kb = await _tenant(sessions, "synthetic")
    started, number, stored = time.perf_counter(), 0, 0
    while stored < chunks:
        paragraphs = []
        for _ in range(min(SYNTHETIC_PARAGRAPHS, chunks - stored)):
            words: list[str] = []
            while len(words) < SYNTHETIC_WORDS:
                words.extend(rng.choice(pool).split())
            paragraphs.append(" ".join(words))
        number += 1
        upload = Upload(f"synthetic {number}", "\n\n".join(paragraphs), "text/plain")
        await ingest(sessions, principal, kb, upload)
        async with sessions() as session:
            kb = await session.get_one(KnowledgeBase, kb.id, populate_existing=True)
        stored = kb.chunk_count
        if number % 100 == 0:
            progress(f"synthetic: {stored} chunks in {time.perf_counter() - started:.0f} s")
    # Committed: statistics gathered in a transaction that rolls back are lost with it.
    async with sessions.begin() as session:
        await session.execute(text("ANALYZE"))
    async with sessions() as session:
        return await session.get_one(KnowledgeBase, kb.id, populate_existing=True)


# --------------------------------------------------------------------------------------------
# Rankers


async def chunk_table(
    sessions: async_sessionmaker[AsyncSession], kb: KnowledgeBase
) -> list[tuple[uuid.UUID, uuid.UUID, str]]:
    """(chunk id, document id, the text its terms were made from), as ingestion indexed it."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT c.id, c.document_id, d.title || E'\\n' || c.heading || E'\\n' || c.content"
                " FROM document_chunks AS c JOIN documents AS d ON d.id = c.document_id"
                " WHERE c.knowledge_base_id = :kb ORDER BY c.id"
            ),
            {"kb": kb.id},
        )
        return [(row[0], row[1], row[2]) for row in rows]


@contextmanager
def whole_words() -> Iterator[None]:
    with mock.patch.object(analysis, "PREFIX_LENGTH", 10**6):
        yield


def reference_ranker(
    table: Sequence[tuple[uuid.UUID, uuid.UUID, str]], doc_ids: Mapping[uuid.UUID, str]
) -> Callable[[str], Ranking]:
    corpus = [analysis.terms(indexed) for _, _, indexed in table]
    bm25 = BM25Okapi(corpus)

    def rank(question: str) -> Ranking:
        scores = bm25.get_scores(analysis.unique(analysis.terms(question)))
        order = sorted(range(len(table)), key=lambda i: -scores[i])
        chunks = [(doc_ids[table[i][1]], float(scores[i])) for i in order if scores[i] > 0]
        return by_document(chunks)

    return rank


async def ts_rank(
    sessions: async_sessionmaker[AsyncSession], golden: Golden, question: str
) -> Ranking:
    terms = analysis.unique(analysis.terms(question))
    if not terms:
        return []
    async with sessions() as session:
        rows = await session.execute(
            text(
                "SELECT document_id, ts_rank(terms, CAST(:q AS tsquery)) AS rank"
                " FROM document_chunks WHERE knowledge_base_id = :kb"
                " AND terms @@ CAST(:q AS tsquery) ORDER BY rank DESC, id"
            ),
            {"q": tsquery_literal(terms), "kb": golden.kb.id},
        )
        return by_document([(golden.doc_ids[row[0]], row[1]) for row in rows])


STOCK_CONFIG = {"nimbuspay": "english", "casaverde": "portuguese", "rutasur": "spanish"}
# How PostgreSQL's text search is usually asked: (websearch_to_tsquery rather than
# plainto_tsquery, ts_rank normalization).
STOCK_VARIANTS = {
    "ts_rank_stock_config": (False, 0),
    "ts_rank_stock_config_normalized": (False, 1),
    "ts_rank_stock_config_websearch": (True, 0),
}


async def ts_rank_stock(
    sessions: async_sessionmaker[AsyncSession],
    golden: Golden,
    question: str,
    websearch: bool = False,
    normalization: int = 0,
) -> Ranking:
    """PostgreSQL's own text search as shipped: the language's configuration (stemming, no
    accent folding) for documents and question alike, the question's words OR-ed (an AND of
    every word of a natural question matches almost nothing), `ts_rank` with the given
    normalization (1: divided by 1 + log of the length)."""
    async with sessions() as session:
        rows = await session.execute(
            text(
                """
                WITH parsed AS (
                    SELECT CASE WHEN :websearch
                                THEN websearch_to_tsquery(CAST(:cfg AS regconfig), :question)
                                ELSE plainto_tsquery(CAST(:cfg AS regconfig), :question)
                           END AS query
                ), q AS (
                    SELECT CAST(replace(CAST(query AS text), '&', '|') AS tsquery) AS query
                    FROM parsed
                )
                SELECT c.document_id,
                       ts_rank(to_tsvector(CAST(:cfg AS regconfig),
                                           d.title || ' ' || c.heading || ' ' || c.content),
                               q.query, CAST(:normalization AS int)) AS rank
                FROM document_chunks AS c JOIN documents AS d ON d.id = c.document_id, q
                WHERE c.knowledge_base_id = :kb AND numnode(q.query) > 0
                  AND to_tsvector(CAST(:cfg AS regconfig),
                                  d.title || ' ' || c.heading || ' ' || c.content) @@ q.query
                ORDER BY rank DESC, c.id
                """
            ),
            {
                "cfg": STOCK_CONFIG[golden.org],
                "question": question,
                "kb": golden.kb.id,
                "websearch": websearch,
                "normalization": normalization,
            },
        )
        return by_document([(golden.doc_ids[row[0]], row[1]) for row in rows])


async def botlyne(
    sessions: async_sessionmaker[AsyncSession], golden: Golden, question: str
) -> Ranking:
    async with sessions() as session:
        search = KnowledgeSearch(session, golden.principal.org_id, GeminiGateway(Settings()))
        retrieved = await search.retrieve(golden.kb, question, RANKED_CHUNKS)
    return by_document(
        [(golden.doc_ids[r.passage.document_id], r.score) for r in retrieved.results]
    )


# --------------------------------------------------------------------------------------------
# Measurements


async def quality(
    sessions: async_sessionmaker[AsyncSession], goldens: Sequence[Golden]
) -> dict[str, Any]:
    rows: dict[str, list[tuple[float, float, float]]] = defaultdict(list)
    tags: dict[str, dict[str, list[tuple[float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    halves: dict[str, dict[str, list[tuple[float, float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for golden in goldens:
        table = await chunk_table(sessions, golden.kb)
        doc_ids = {row[1]: golden.doc_ids[row[1]] for row in table}
        reference = reference_ranker(table, doc_ids)
        with whole_words():
            reference_whole = reference_ranker(table, doc_ids)
            whole_rankings = {q["id"]: reference_whole(q["question"]) for q in golden.questions}
        for q in golden.questions:
            if not q["answerable"]:
                continue
            rankings = {
                name: await ts_rank_stock(sessions, golden, q["question"], *variant)
                for name, variant in STOCK_VARIANTS.items()
            }
            rankings |= {
                "ts_rank": await ts_rank(sessions, golden, q["question"]),
                "bm25_reference": reference(q["question"]),
                "bm25_reference_whole_words": whole_rankings[q["id"]],
                "botlyne": await botlyne(sessions, golden, q["question"]),
            }
            for name, ranked in rankings.items():
                row = (
                    ndcg_at(ranked, q["relevant"]),
                    recall_at(ranked, q["relevant"]),
                    reciprocal_rank(ranked, q["relevant"]),
                )
                rows[name].append(row)
                halves[half(q)][name].append(row)
                for tag in q["tags"]:
                    tags[tag][name].append(row)
    ndcg = {name: [row[0] for row in values] for name, values in rows.items()}
    return {
        "questions": len(rows["botlyne"]),
        "overall": {name: summary(values) for name, values in rows.items()},
        "by_half": {
            part: {"questions": len(by_name["botlyne"])}
            | {name: summary(values) for name, values in by_name.items()}
            for part, by_name in sorted(halves.items())
        },
        "botlyne_vs_ndcg@10_p_value": {
            name: paired_p_value(ndcg["botlyne"], values)
            for name, values in ndcg.items()
            if name != "botlyne"
        },
        "ndcg@10_by_tag": {
            tag: {name: summary(values)["ndcg@10"] for name, values in by_name.items()}
            for tag, by_name in sorted(tags.items())
        },
    }


Decision = tuple[str, str, bool, ranking.Evidence]  # organization, half, unanswerable, evidence
GATE_GRID = [t / 100 for t in range(10, 61, 5)]


def gate_counts(items: Sequence[Decision], threshold: float) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives); positive = refused as unanswerable."""
    flagged = [(u, not e.answerable(threshold)) for _, _, u, e in items]
    tp = sum(1 for u, f in flagged if u and f)
    fp = sum(1 for u, f in flagged if f and not u)
    fn = sum(1 for u, f in flagged if u and not f)
    return tp, fp, fn


def precision_recall(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {
        "precision": round(tp / (tp + fp), 3) if tp + fp else 0.0,
        "recall": round(tp / (tp + fn), 3) if tp + fn else 0.0,
        "flagged_unanswerable": tp,
        "flagged_answerable": fp,
    }


def choose_threshold(items: Sequence[Decision]) -> float:
    """The grid threshold that best meets precision >= 0.8 and recall >= 0.7 on `items`."""

    def objective(threshold: float) -> tuple[float, float]:
        tp, fp, fn = gate_counts(items, threshold)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        return min(precision / 0.8, recall / 0.7), precision + recall

    return max(GATE_GRID, key=objective)


async def gate(
    sessions: async_sessionmaker[AsyncSession], goldens: Sequence[Golden]
) -> dict[str, Any]:
    decided: list[Decision] = []
    wrong: dict[str, list[str]] = {"answered_unanswerable": [], "refused_answerable": []}
    for golden in goldens:
        for q in golden.questions:
            async with sessions() as session:
                search = KnowledgeSearch(
                    session, golden.principal.org_id, GeminiGateway(Settings())
                )
                retrieved = await search.retrieve(golden.kb, q["question"], 5)
                evidence = await search.evidence(golden.kb, q["question"], retrieved)
            decided.append((golden.org, half(q), not q["answerable"], evidence))
            if evidence.answerable() != q["answerable"]:
                kind = "refused_answerable" if q["answerable"] else "answered_unanswerable"
                wrong[kind].append(f"{q['id']} {q['question']}")

    cross = [0, 0, 0]
    chosen = {}
    for org in ORGS:
        chosen[org] = choose_threshold([item for item in decided if item[0] != org])
        test = [item for item in decided if item[0] == org]
        cross = [a + b for a, b in zip(cross, gate_counts(test, chosen[org]), strict=True)]
    tuning = [item for item in decided if item[1] == "tuning"]
    held_out = [item for item in decided if item[1] == "held_out"]
    split_threshold = choose_threshold(tuning)
    return {
        "questions": len(decided),
        "unanswerable": sum(1 for _, _, u, _ in decided if u),
        "threshold": ranking.COVERAGE_THRESHOLD,
        "in_sample": precision_recall(*gate_counts(decided, ranking.COVERAGE_THRESHOLD)),
        "leave_one_organization_out": {**precision_recall(*cross), "thresholds": chosen},
        "shipped_threshold_by_half": {
            "tuning": precision_recall(*gate_counts(tuning, ranking.COVERAGE_THRESHOLD)),
            "held_out": precision_recall(*gate_counts(held_out, ranking.COVERAGE_THRESHOLD)),
        },
        "chosen_on_tuning_half_applied_to_held_out": {
            **precision_recall(*gate_counts(held_out, split_threshold)),
            "threshold": split_threshold,
        },
        "by_missing_name_or_code": sum(1 for _, _, u, e in decided if u and e.missing),
        "mistakes": wrong,
    }


async def timed_searches(
    sessions: async_sessionmaker[AsyncSession],
    org_id: uuid.UUID,
    kb_id: uuid.UUID,
    questions: Sequence[str],
) -> list[float]:
    elapsed = []
    for question in questions:
        started = time.perf_counter()
        async with sessions() as session:
            await KnowledgeSearch(session, org_id, GeminiGateway(Settings())).search(
                kb_id, question, 10
            )
        elapsed.append((time.perf_counter() - started) * 1000)
    return elapsed


async def budget_agreement(
    sessions: async_sessionmaker[AsyncSession],
    kb: KnowledgeBase,
    questions: Sequence[str],
) -> dict[str, float]:
    """Top-10 overlap between the budgeted search and exhaustive BM25 on the large base."""
    overlaps = []
    for question in questions:
        async with sessions() as session:
            search = KnowledgeSearch(session, kb.org_id, GeminiGateway(Settings()))
            retrieved = await search.retrieve(kb, question, 10)
            budgeted = [result.passage.chunk_id for result in retrieved.results]
            query = await search.query_terms(kb, question)
            if not query.scoring:
                continue
            exhaustive = await ChunkRepository(session, kb.org_id).lexical(
                kb.id,
                query.scoring,
                list(query.scored_dfs),
                kb.token_count / kb.chunk_count,
                pool=kb.chunk_count,
                budget=kb.chunk_count,
            )
        best = [hit.chunk_id for hit in exhaustive[:10]]
        overlaps.append(len(set(best) & set(budgeted)) / max(1, len(best)))
    return {
        "queries": len(overlaps),
        "mean_top10_overlap": round(statistics.fmean(overlaps), 3),
        "identical_top10": round(sum(1 for o in overlaps if o == 1) / len(overlaps), 3),
    }


async def run(url: str, args: argparse.Namespace) -> dict[str, Any]:
    await asyncio.to_thread(upgrade, url)
    engine = create_engine(Settings(database_pool_size=2), url)
    sessions = create_sessionmaker(engine)
    try:
        goldens = await load_golden(sessions)
        result: dict[str, Any] = {"retrieval": await quality(sessions, goldens)}
        progress("retrieval quality measured")
        result["gate"] = await gate(sessions, goldens)
        progress("gate measured")
        if args.load_chunks:
            kb = await load_synthetic(sessions, goldens, args.load_chunks)
            questions = [q["question"] for g in goldens for q in g.questions]
            sample = (questions * math.ceil(args.queries / len(questions)))[: args.queries]
            await timed_searches(sessions, kb.org_id, kb.id, questions[:20])  # warm-up
            # Other people's work on a shared machine shows up as latency: wait for a lull and
            # record how busy the machine still was.
            busy = await asyncio.to_thread(wait_for_quiet, 0.3, 1.0, args.quiet_timeout)
            result["latency_large_kb"] = {
                "chunks": kb.chunk_count,
                "busy_cores_before": busy,
                **latency(await timed_searches(sessions, kb.org_id, kb.id, sample)),
            }
            small: list[float] = []
            for golden in goldens:
                small += await timed_searches(
                    sessions,
                    golden.principal.org_id,
                    golden.kb.id,
                    [q["question"] for q in golden.questions],
                )
            result["latency_golden_kbs_next_to_it"] = latency(small)
            result["candidate_budget_vs_exhaustive"] = await budget_agreement(
                sessions, kb, questions[:: max(1, len(questions) // args.exhaustive_sample)]
            )
            progress("latency measured")
        return result
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.retrieval.run")
    parser.add_argument("--load-chunks", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=450)
    parser.add_argument("--exhaustive-sample", type=int, default=50)
    parser.add_argument(
        "--candidate-budget",
        type=int,
        default=ranking.CANDIDATE_BUDGET,
        help="override ranking.CANDIDATE_BUDGET for this run, to compare settings",
    )
    parser.add_argument("--quiet-timeout", type=float, default=300.0)
    parser.add_argument("--admin-database-url", default=DEFAULT_ADMIN_DATABASE_URL)
    args = parser.parse_args()
    ranking.CANDIDATE_BUDGET = args.candidate_budget
    with fresh_database(args.admin_database_url, prefix="bench_retrieval") as url:
        asyncpg_url = url.replace("postgresql://", "postgresql+asyncpg://", 1)
        result = asyncio.run(run(asyncpg_url, args))
    write_results(
        "retrieval",
        {
            "machine": machine_info(),
            "settings": {
                "load_chunks": args.load_chunks,
                "queries": args.queries,
                "candidate_budget": args.candidate_budget,
            },
            **result,
        },
    )


if __name__ == "__main__":
    main()
