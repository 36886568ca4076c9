"""The leave-one-out, precision-recall, ANN-recall and clustering measures on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from artsearch.clustering import cluster_vectors, purity
from artsearch_tools.evaluation.metrics import (
    chance_retrieval,
    leave_one_out_retrieval,
    precision_recall_curve,
    ranked_relevance,
    recall_against_exact,
    retrieval_metrics,
)

# Four items, labels a a b a. Similarities chosen so that item 0 ranks 2 (a), 1 (b... see below).
LABELS = ["a", "a", "b", "a"]
SIMILARITY = np.array(
    [
        [1.0, 0.2, 0.9, 0.5],  # 0 ranks 2(b) 3(a) 1(a): relevance F T T
        [0.2, 1.0, 0.1, 0.8],  # 1 ranks 3(a) 0(a) 2(b): T T F
        [0.9, 0.1, 1.0, 0.3],  # 2 (b) has nothing to find: not a query
        [0.5, 0.8, 0.3, 1.0],  # 3 ranks 1(a) 0(a) 2(b): T T F
    ]
)


def test_ranked_relevance_leaves_the_query_out_and_skips_lonely_labels() -> None:
    ranked = ranked_relevance(SIMILARITY, LABELS)
    assert ranked.rows.tolist() == [0, 1, 3]
    assert ranked.relevant.tolist() == [[False, True, True], [True, True, False], [True, True, False]]
    assert ranked.totals.tolist() == [2, 2, 2]


def test_retrieval_metrics_by_hand() -> None:
    metrics = retrieval_metrics(ranked_relevance(SIMILARITY, LABELS), ks=(1, 2), recall_k=1)
    # AP: query 0 (1/2 + 2/3)/2 = 7/12; queries 1 and 3: 1.
    assert metrics["map"] == pytest.approx((7 / 12 + 1 + 1) / 3)
    assert metrics["p@1"] == pytest.approx(2 / 3)
    assert metrics["p@2"] == pytest.approx((1 / 2 + 1 + 1) / 3)
    assert metrics["r@1"] == pytest.approx((0 + 1 / 2 + 1 / 2) / 3)
    assert metrics["queries"] == 3
    # The same mAP as the existing leave-one-out measure.
    assert metrics["map"] == pytest.approx(
        leave_one_out_retrieval(SIMILARITY, LABELS, k=2).mean_average_precision
    )


def test_query_rows_restrict_the_queries() -> None:
    ranked = ranked_relevance(SIMILARITY, LABELS, query_rows=[0, 2])
    assert ranked.rows.tolist() == [0]  # 2 has nothing to find
    assert retrieval_metrics(ranked, ks=(1,))["map"] == pytest.approx(7 / 12)


def test_precision_recall_curve_by_hand() -> None:
    """Query 0: precision 0, 1/2, 2/3 at recall 0, 1/2, 1 → interpolated 2/3 everywhere. Queries 1 and 3:
    precision 1 up to recall 1. Mean: (2/3 + 1 + 1) / 3 at every level."""
    curve = precision_recall_curve(ranked_relevance(SIMILARITY, LABELS), levels=(0.0, 0.5, 1.0))
    assert curve == [(level, pytest.approx(8 / 9)) for level in (0.0, 0.5, 1.0)]


def test_precision_recall_curve_interpolates_from_the_right() -> None:
    """One query, relevance T F F T over 4 ranks, 2 relevant: precision 1, 1/2, 1/3, 1/2; recall 1/2 at
    rank 1, 1 at rank 4. Interpolated: 1 for recall <= 1/2, 1/2 above."""
    similarity = np.array(
        [
            [1.0, 0.9, 0.8, 0.7, 0.6],
            [0.9, 1, 0, 0, 0],
            [0.8, 0, 1, 0, 0],
            [0.7, 0, 0, 1, 0],
            [0.6, 0, 0, 0, 1],
        ]
    )
    labels = ["a", "a", "b", "c", "a"]
    ranked = ranked_relevance(similarity, labels, query_rows=[0])
    assert precision_recall_curve(ranked, levels=(0.0, 0.5, 0.6, 1.0)) == [
        (0.0, 1.0),
        (0.5, 1.0),
        (0.6, 0.5),
        (1.0, 0.5),
    ]


def test_chance_retrieval_by_hand() -> None:
    chance = chance_retrieval(LABELS, ks=(1,), recall_k=1)
    assert chance["p@1"] == pytest.approx(2 / 3)  # 2 relevant among 3 candidates for each a
    assert chance["r@1"] == pytest.approx(1 / 3)
    # E[AP] for 2 relevant among 3: (R-1)/(N-1) + H_3/3 (N-R)/(N-1) = 1/2 + (11/6)/3 * 1/2
    assert chance["map"] == pytest.approx(0.5 + 11 / 36)


def test_chance_is_what_random_rankings_score() -> None:
    labels = ["a"] * 3 + ["b"] * 4 + ["c"] * 5
    rng = np.random.default_rng(0)
    maps = [retrieval_metrics(ranked_relevance(rng.random((12, 12)), labels))["map"] for _ in range(2000)]
    assert np.mean(maps) == pytest.approx(chance_retrieval(labels)["map"], abs=0.01)


def test_recall_against_exact() -> None:
    assert recall_against_exact([[1, 2, 3], [4, 5, 9]], [[3, 2, 1], [4, 5, 6]]) == pytest.approx(
        (1 + 2 / 3) / 2
    )
    with pytest.raises(ValueError):
        recall_against_exact([[1]], [])


def test_purity_by_hand() -> None:
    # Cluster 0: a a b (2 of its label); cluster 1: b c (1); cluster 2: c (1) → (2 + 1 + 1) / 6.
    assert purity([0, 0, 0, 1, 1, 2], ["a", "a", "b", "b", "c", "c"]) == pytest.approx(4 / 6)
    assert purity([0, 1, 2], ["a", "a", "a"]) == 1.0
    with pytest.raises(ValueError):
        purity([0], ["a", "b"])


def test_clusters_of_separated_groups_are_pure_and_representatives_are_central() -> None:
    rng = np.random.default_rng(0)
    centres = np.eye(3, 16) * 5
    labels = np.repeat(["x", "y", "z"], 20)
    vectors = centres[np.repeat(np.arange(3), 20)] + rng.normal(scale=0.3, size=(60, 16))
    clustering = cluster_vectors(vectors, clusters=3, seed=0)
    assert purity(clustering.assignments, labels.tolist()) == 1.0
    assert sorted(clustering.sizes.tolist()) == [20, 20, 20]
    representatives = clustering.representatives(vectors, per_cluster=2)
    for cluster, rows in representatives.items():
        assert len(rows) == 2 and all(clustering.assignments[row] == cluster for row in rows)
