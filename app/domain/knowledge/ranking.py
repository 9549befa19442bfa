"""Scoring: BM25 over per-knowledge-base statistics, rank fusion, and the answerability gate.

The SQL in `repository.py` evaluates these formulas; the constants live here, next to the
reasons for their values. Figures behind the calibrated numbers are in docs/benchmarks.md.
"""

from __future__ import annotations

import math
import re
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from app.domain.knowledge import analysis

# Okapi BM25 with the usual parameters; tuning them on the golden set moved nDCG@10 by less
# than 0.01, which is noise for 170 questions.
K1 = 1.2
B = 0.75

# Chunks a query may score in full. Candidates come from the query's rarest terms first (their
# matches are the ones that can rank high); once the next term would take the candidate set past
# this budget, the remaining, common terms still count in every candidate's score but no longer
# bring candidates of their own. Below the budget, retrieval is exhaustive; above it, it keeps
# search time flat (see the 100k-chunk figures in docs/benchmarks.md).
CANDIDATE_BUDGET = 5000
# Candidates ranked by a quick score (each matched term counted once, only the QUICK_TERMS
# rarest terms) before exact BM25 over every term.
RERANK_POOL = 100
QUICK_TERMS = 8
# More distinct terms than this in a question adds cost, not precision.
MAX_QUERY_TERMS = 32

# Ranking weighs a question's terms by their idf, with two adjustments (measured on both halves
# of the golden set, docs/benchmarks.md):
# - a product or error code (E1310, NP-410) is what the question is about: its idf counts
#   CODE_WEIGHT times, so a chunk naming the code is not outranked by one sharing a rare
#   everyday word ("mean", "battery") with the question;
# - a term the knowledge base has never seen may be a typo or a cognate of one it has
#   ("verifcation", "produto" for "product"): the most frequent known term one edit away (for
#   terms of TYPO_MIN_LENGTH letters or more) joins the query at TYPO_WEIGHT of its idf. The
#   answerability gate ignores these stand-ins: an unknown word still counts as unknown.
CODE_WEIGHT = 1.5
TYPO_WEIGHT = 0.3
TYPO_MIN_LENGTH = 5

# Reciprocal-rank fusion: score = sum of weight / (RRF_K + rank) over the methods.
RRF_K = 60
LEXICAL_WEIGHT = 1.0
# Below the lexical arm: dense retrieval is not measured in the benchmark (it needs Gemini).
DENSE_WEIGHT = 0.7

# The gate. Coverage is the share of the question's term weight (idf) found in the three best
# chunks; a word the knowledge base has never seen weighs OOV_WEIGHT times the highest idf, for
# it is the likeliest subject of a question the knowledge base cannot answer.
GATE_TOP_CHUNKS = 3
OOV_WEIGHT = 1.5
COVERAGE_THRESHOLD = 0.25

K = TypeVar("K", bound=Hashable)

_LETTERS = "abcdefghijklmnopqrstuvwxyz"

_WORD = re.compile(r"\w[\w-]*")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def idf(df: int, chunks: int) -> float:
    """BM25's idf in Lucene's form, never negative."""
    return math.log(1 + (chunks - df + 0.5) / (df + 0.5))


def near_misses(term: str) -> set[str]:
    """Terms one deletion, transposition, substitution or insertion away from `term` (a word
    of at least TYPO_MIN_LENGTH letters, else none), cut to the analyser's prefix length."""
    if len(term) < TYPO_MIN_LENGTH or not term.isalpha():
        return set()
    splits = [(term[:i], term[i:]) for i in range(len(term) + 1)]
    edits = {left + right[1:] for left, right in splits if right}
    edits |= {left + right[1] + right[0] + right[2:] for left, right in splits if len(right) > 1}
    edits |= {left + letter + right[1:] for left, right in splits if right for letter in _LETTERS}
    edits |= {left + letter + right for left, right in splits for letter in _LETTERS}
    return {edit[: analysis.PREFIX_LENGTH] for edit in edits} - {term}


def corrections(unknown: Sequence[str], dfs: Mapping[str, int]) -> dict[str, str]:
    """Each unknown term's most frequent near miss among the known terms `dfs` (term → df)."""
    found = {}
    for term in unknown:
        known = [miss for miss in near_misses(term) if dfs.get(miss, 0) > 0]
        if known:
            found[term] = max(sorted(known), key=dfs.__getitem__)
    return found


def scoring_weights(
    dfs: Mapping[str, int], corrected: Mapping[str, str], all_dfs: Mapping[str, int], chunks: int
) -> dict[str, float]:
    """What ranking weighs each term by: the question's known terms (`dfs`) at their idf, codes
    at CODE_WEIGHT times it, and the stand-ins of unknown terms (`corrected`, their df in
    `all_dfs`) at TYPO_WEIGHT times theirs."""
    weights = {
        term: idf(df, chunks) * (CODE_WEIGHT if analysis.is_code(term) else 1.0)
        for term, df in dfs.items()
    }
    for stand_in in corrected.values():
        weights.setdefault(stand_in, TYPO_WEIGHT * idf(all_dfs[stand_in], chunks))
    return weights


def candidate_terms(dfs: Mapping[str, int], budget: int | None = None) -> list[str]:
    """The rarest known terms whose matches together stay within `budget` (at least one)."""
    budget = budget or CANDIDATE_BUDGET
    chosen: list[str] = []
    total = 0
    for term in sorted(dfs, key=lambda t: (dfs[t], t)):
        if chosen and total + dfs[term] > budget:
            break
        chosen.append(term)
        total += dfs[term]
    return chosen


def fuse(rankings: Sequence[tuple[float, Sequence[K]]]) -> dict[K, float]:
    """Weighted reciprocal-rank fusion of (weight, ids best first), normalised so that an item
    ranked first by every method scores 1."""
    best = sum(weight for weight, _ in rankings) / (RRF_K + 1)
    fused: dict[K, float] = {}
    for weight, ids in rankings:
        for rank, item in enumerate(ids, start=1):
            fused[item] = fused.get(item, 0.0) + weight / (RRF_K + rank)
    return {item: score / best for item, score in fused.items()}


def missing_names(question: str, dfs: Mapping[str, int]) -> list[str]:
    """Codes and names in the question that the knowledge base never mentions.

    A code (E1043, NP-300) or a name (PayPal, Lima, SLA) is the subject of a question: when the
    knowledge base has no trace of it, it cannot answer, however well the other words match.
    Names are capitalised words past the start of a sentence, acronyms and mixed-case words.
    """
    missing: list[str] = []
    for sentence in _SENTENCE.split(question):
        for position, word in enumerate(_WORD.findall(sentence)):
            folded = analysis.fold(word)
            if analysis.is_code(folded):
                if dfs.get(folded, 0) == 0:
                    missing.append(word)
                continue
            named = (position > 0 and word[0].isupper()) or any(c.isupper() for c in word[1:])
            terms = analysis.terms(word) if named else []
            if terms and all(dfs.get(term, 0) == 0 for term in terms):
                missing.append(word)
    return missing


@dataclass(frozen=True, slots=True)
class Evidence:
    """What retrieval found for a question, as the gate sees it."""

    coverage: float
    missing: tuple[str, ...]
    foreign: bool

    def answerable(self, threshold: float = COVERAGE_THRESHOLD) -> bool:
        if self.missing:
            return False
        # In another language than the knowledge base, few words can match even when the answer
        # is there; low coverage proves nothing, so only a missing name or code decides.
        return self.foreign or self.coverage >= threshold


def coverage(weights: Mapping[str, float], top_matches: Sequence[Sequence[str]]) -> float:
    """Share of the question's term weight (see `question_weights`) matched by the best chunks."""
    matched = {term for terms in top_matches[:GATE_TOP_CHUNKS] for term in terms}
    total = sum(weights.values())
    found = sum(weight for term, weight in weights.items() if term in matched)
    return found / total if total else 0.0


def question_weights(terms: Sequence[str], dfs: Mapping[str, int], chunks: int) -> dict[str, float]:
    """idf per question term; unknown terms get `OOV_WEIGHT` times the largest possible idf."""
    unknown = OOV_WEIGHT * idf(0, chunks)
    return {term: idf(dfs[term], chunks) if term in dfs else unknown for term in terms}
