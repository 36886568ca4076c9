"""Retrieval metrics on similarity matrices (higher = more similar), and what chance scores on them.

Two protocols:

* query → gallery (`top_k_accuracy`): each query has a label, the gallery holds the items it should find
  ("find the painting from a detail"); a query counts as a hit at k when a gallery item with its label is
  among its k most similar.
* leave-one-out (`leave_one_out_retrieval`): every item of a labelled set queries all the others; the
  items sharing its label are the relevant ones. Mean average precision and precision@k.

Ties are broken by index (stable sort), which is what a search engine returning a fixed order does.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RetrievalScores:
    mean_average_precision: float
    precision_at_k: float
    k: int
    queries: int  # queries that have at least one relevant item


def _rank_order(similarity: np.ndarray) -> np.ndarray:
    """Per row, the column indices from most to least similar (stable: equal scores keep index order)."""
    return np.argsort(-similarity, axis=1, kind="stable")


def first_match_ranks(
    similarity: np.ndarray, query_labels: Sequence[str], gallery_labels: Sequence[str]
) -> np.ndarray:
    """1-based rank of the first gallery item that has the query's label; 0 when the gallery has none."""
    similarity = np.asarray(similarity)
    if similarity.shape != (len(query_labels), len(gallery_labels)):
        raise ValueError(
            f"similarity is {similarity.shape}, labels are {len(query_labels)} x {len(gallery_labels)}"
        )
    gallery = np.asarray(gallery_labels, dtype=object)
    order = _rank_order(similarity)
    ranks = np.zeros(len(query_labels), dtype=np.int64)
    for row, label in enumerate(query_labels):
        hits = np.flatnonzero(gallery[order[row]] == label)
        if hits.size:
            ranks[row] = hits[0] + 1
    return ranks


def top_k_accuracy(
    similarity: np.ndarray,
    query_labels: Sequence[str],
    gallery_labels: Sequence[str],
    ks: Sequence[int] = (1, 5),
) -> dict[int, float]:
    """Fraction of queries whose label appears among their k most similar gallery items, for each k."""
    ranks = first_match_ranks(similarity, query_labels, gallery_labels)
    if ranks.size == 0:
        raise ValueError("no queries")
    found = ranks > 0
    return {k: float(np.mean(found & (ranks <= k))) for k in ks}


def average_precision(relevant_in_rank_order: np.ndarray) -> float:
    """AP of one ranked list given as booleans (True = relevant), over all relevant items in it."""
    relevant = np.asarray(relevant_in_rank_order, dtype=bool)
    total = int(relevant.sum())
    if total == 0:
        raise ValueError("average precision is undefined without a relevant item")
    hits = np.cumsum(relevant)
    positions = np.flatnonzero(relevant) + 1
    return float(np.sum(hits[relevant] / positions) / total)


def leave_one_out_retrieval(similarity: np.ndarray, labels: Sequence[str], k: int = 10) -> RetrievalScores:
    """Every item queries the others. Items alone in their label are not queries (nothing to find), but
    stay in the collection as distractors."""
    count = len(labels)
    similarity = np.asarray(similarity)
    if similarity.shape != (count, count):
        raise ValueError(f"similarity is {similarity.shape} for {count} labels")
    _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    scores = -similarity.astype(np.float32 if similarity.dtype != np.float64 else np.float64, copy=True)
    np.fill_diagonal(scores, np.inf)  # the item itself sorts last; dropped below
    order = np.argsort(scores, axis=1, kind="stable")[:, : count - 1]
    relevant = codes[order] == codes[:, None]
    totals = relevant.sum(axis=1)
    queries = totals > 0
    if not queries.any():
        raise ValueError("no label has two items: nothing to retrieve")
    rows, columns = np.nonzero(relevant)
    hits_so_far = np.cumsum(relevant, axis=1, dtype=np.int32)[rows, columns]
    precision_sums = np.bincount(rows, weights=hits_so_far / (columns + 1.0), minlength=count)
    average_precisions = precision_sums[queries] / totals[queries]
    return RetrievalScores(
        mean_average_precision=float(average_precisions.mean()),
        precision_at_k=float(relevant[queries, :k].sum(axis=1).mean() / k),
        k=k,
        queries=int(queries.sum()),
    )


def chance_top_k(gallery_size: int, k: int, matches_per_query: int = 1) -> float:
    """Expected top-k accuracy of a random ranking: P(at least one of the m matches in the first k)."""
    if not 0 < matches_per_query <= gallery_size:
        raise ValueError(f"{matches_per_query} matches in a gallery of {gallery_size}")
    misses = gallery_size - matches_per_query
    # P(no match in the first k) = C(misses, k) / C(gallery_size, k), as a running product.
    p_none = 1.0
    for i in range(min(k, gallery_size)):
        p_none *= max(misses - i, 0) / (gallery_size - i)
    return 1.0 - p_none


def chance_average_precision(candidates: int, relevant: int) -> float:
    """Expected AP of a uniformly random ranking of `candidates` items of which `relevant` are relevant:
    E[AP] = (R-1)/(N-1) + H_N/N · (N-R)/(N-1) (from E[rel_i · rel_j] = R(R-1)/(N(N-1)) for i != j)."""
    n, r = candidates, relevant
    if not 0 < r <= n:
        raise ValueError(f"{r} relevant among {n} candidates")
    if n == 1:
        return 1.0
    harmonic = float(np.sum(1.0 / np.arange(1, n + 1)))
    return (r - 1) / (n - 1) + harmonic / n * (n - r) / (n - 1)


def chance_leave_one_out(labels: Sequence[str], k: int = 10) -> RetrievalScores:
    """What a random ranking scores, in expectation, under `leave_one_out_retrieval`."""
    sizes = Counter(labels)
    candidates = len(labels) - 1
    average_precisions = []
    precisions = []
    for label in labels:
        relevant = sizes[label] - 1
        if relevant == 0:
            continue
        average_precisions.append(chance_average_precision(candidates, relevant))
        precisions.append(relevant / candidates)  # E[hits in any k slots] / k
    if not average_precisions:
        raise ValueError("no label has two items: nothing to retrieve")
    return RetrievalScores(
        mean_average_precision=float(np.mean(average_precisions)),
        precision_at_k=float(np.mean(precisions)),
        k=k,
        queries=len(average_precisions),
    )


# --------------------------------------------------------------------------------------------------
# Leave-one-out with every cut-off, recall and precision-recall curves (`artsearch eval retrieval`)
# --------------------------------------------------------------------------------------------------

PR_RECALL_LEVELS = tuple(round(0.1 * i, 1) for i in range(11))


@dataclass(frozen=True)
class RankedRelevance:
    """Per query (rows of the set that have something to find), its ranking of all the other items as
    booleans (True = same label), best first, and how many relevant items it has."""

    relevant: np.ndarray  # bool [Q, N-1]
    totals: np.ndarray  # int [Q]
    rows: np.ndarray  # int [Q]: which items of the set are the queries


def ranked_relevance(
    similarity: np.ndarray, labels: Sequence[str], query_rows: Sequence[int] | None = None
) -> RankedRelevance:
    """Leave-one-out rankings: every query row ranks all the other items (ties by index). Only rows whose
    label has another item are queries; `query_rows` restricts them further (e.g. held-out artworks)."""
    count = len(labels)
    similarity = np.asarray(similarity)
    if similarity.shape != (count, count):
        raise ValueError(f"similarity is {similarity.shape} for {count} labels")
    _, codes = np.unique(np.asarray(labels, dtype=str), return_inverse=True)
    rows = np.arange(count) if query_rows is None else np.asarray(query_rows, dtype=np.int64)
    scores = -similarity[rows].astype(np.float64)
    scores[np.arange(len(rows)), rows] = np.inf  # the query itself sorts last, then is dropped
    order = np.argsort(scores, axis=1, kind="stable")[:, : count - 1]
    relevant = codes[order] == codes[rows][:, None]
    totals = relevant.sum(axis=1)
    keep = totals > 0
    if not keep.any():
        raise ValueError("no query has another item of its label: nothing to retrieve")
    return RankedRelevance(relevant[keep], totals[keep], rows[keep])


def retrieval_metrics(
    ranked: RankedRelevance, ks: Sequence[int] = (1, 5, 10), recall_k: int = 10
) -> dict[str, float]:
    """mAP, precision@k for each k, and recall@recall_k (the share of a query's relevant items found in
    its first recall_k), averaged over the queries."""
    hits = np.cumsum(ranked.relevant, axis=1)
    positions = np.arange(1, ranked.relevant.shape[1] + 1)
    average_precision = (np.where(ranked.relevant, hits / positions, 0.0).sum(axis=1)) / ranked.totals
    result = {"queries": float(len(ranked.totals)), "map": float(average_precision.mean())}
    for k in ks:
        result[f"p@{k}"] = float(ranked.relevant[:, :k].sum(axis=1).mean() / k)
    result[f"r@{recall_k}"] = float((ranked.relevant[:, :recall_k].sum(axis=1) / ranked.totals).mean())
    return result


def chance_retrieval(
    labels: Sequence[str], ks: Sequence[int] = (1, 5, 10), recall_k: int = 10
) -> dict[str, float]:
    """What a random ranking scores in expectation under `retrieval_metrics`: precision@k R/(N-1),
    recall@k k/(N-1), AP by `chance_average_precision`."""
    sizes = Counter(labels)
    candidates = len(labels) - 1
    relevant = np.array([sizes[label] - 1 for label in labels if sizes[label] > 1], dtype=np.float64)
    if relevant.size == 0:
        raise ValueError("no label has two items: nothing to retrieve")
    result = {
        "queries": float(relevant.size),
        "map": float(np.mean([chance_average_precision(candidates, int(r)) for r in relevant])),
    }
    for k in ks:
        result[f"p@{k}"] = float(np.mean(relevant / candidates))
    result[f"r@{recall_k}"] = min(1.0, recall_k / candidates)
    return result


def precision_recall_curve(
    ranked: RankedRelevance, levels: Sequence[float] = PR_RECALL_LEVELS
) -> list[tuple[float, float]]:
    """The interpolated precision-recall curve averaged over queries: at recall level r, each query's
    best precision at any rank where its recall is at least r (the classic 11-point curve)."""
    hits = np.cumsum(ranked.relevant, axis=1)
    positions = np.arange(1, ranked.relevant.shape[1] + 1)
    precision = hits / positions
    recall = hits / ranked.totals[:, None]
    # Best precision from each rank onwards: a running maximum taken from the end.
    interpolated = np.maximum.accumulate(precision[:, ::-1], axis=1)[:, ::-1]
    curve = []
    for level in levels:
        reached = recall >= level - 1e-12
        first = np.argmax(reached, axis=1)  # every query reaches recall 1 at its last relevant item
        curve.append((float(level), float(interpolated[np.arange(len(first)), first].mean())))
    return curve


def recall_against_exact(approximate: Sequence[Sequence[int]], exact: Sequence[Sequence[int]]) -> float:
    """Mean share of each query's exact top-k that the approximate search also returned."""
    if len(approximate) != len(exact) or not exact:
        raise ValueError("one approximate and one exact list per query, at least one query")
    shares = [len(set(a) & set(e)) / len(e) for a, e in zip(approximate, exact, strict=True) if len(e)]
    return float(np.mean(shares))
