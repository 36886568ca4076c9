"""Spherical k-means (artsearch.clustering) on generated groups: recovery, determinism, empty clusters."""

from __future__ import annotations

import numpy as np
import pytest

from artsearch import clustering
from artsearch.clustering import cluster_vectors, purity
from artsearch.descriptor_layout import unit_rows


def groups(
    count: int, per_group: int, dimension: int, noise: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """`count` groups of `per_group` rows around random directions, shuffled; and each row's group."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(count, dimension))
    labels = rng.permutation(np.repeat(np.arange(count), per_group))
    vectors = centres[labels] + rng.normal(scale=noise, size=(len(labels), dimension))
    return vectors.astype(np.float32), labels


def assert_recovered(assignments: np.ndarray, labels: np.ndarray) -> None:
    """One cluster per group and one group per cluster: purity 1 both ways."""
    assert purity(assignments, labels.astype(str).tolist()) == 1.0
    assert purity(labels, assignments.astype(str).tolist()) == 1.0


def assert_consistent(result: clustering.Clustering, vectors: np.ndarray) -> None:
    """Unit centres, and every row in the cluster of its most similar centre."""
    assert np.all(np.isfinite(result.centres))
    np.testing.assert_allclose(np.linalg.norm(result.centres, axis=1), 1.0, rtol=1e-5)
    similarity = unit_rows(vectors) @ result.centres.T
    chosen = similarity[np.arange(len(vectors)), result.assignments]
    np.testing.assert_allclose(chosen, similarity.max(axis=1), rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_separated_groups_are_recovered_exactly(seed: int) -> None:
    vectors, labels = groups(count=6, per_group=40, dimension=32, noise=0.3, seed=seed)
    result = cluster_vectors(vectors, clusters=6, seed=seed)
    assert result.centres.shape == (6, 32) and result.centres.dtype == np.float32
    assert result.assignments.dtype == np.int64
    assert_recovered(result.assignments, labels)
    assert sorted(result.sizes.tolist()) == [40] * 6
    assert_consistent(result, vectors)


def test_high_dimensional_groups_are_recovered_exactly() -> None:
    # In 2664 dimensions with this noise, distances within a group are nearly those between groups: plain
    # k-means++ draws often seed a group twice and Lloyd then merges two groups; the greedy seeding does not.
    vectors, labels = groups(count=12, per_group=50, dimension=2664, noise=2.0, seed=1)
    result = cluster_vectors(vectors, clusters=12, seed=0)
    assert_recovered(result.assignments, labels)


def test_mini_batches_recover_separated_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    # The mini-batch path, on a small set: every clustering above 100 rows takes it here.
    monkeypatch.setattr(clustering, "FULL_BATCH_ROWS", 100)
    vectors, labels = groups(count=5, per_group=120, dimension=24, noise=0.3, seed=3)
    result = cluster_vectors(vectors, clusters=5, seed=0, batch_size=64)
    assert_recovered(result.assignments, labels)
    assert_consistent(result, vectors)
    again = cluster_vectors(vectors, clusters=5, seed=0, batch_size=64)
    np.testing.assert_array_equal(again.assignments, result.assignments)
    np.testing.assert_array_equal(again.centres, result.centres)


def test_seeds_drawn_from_a_sample_recover_separated_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    # Above SEED_ROWS rows k-means++ draws from a random sample: 60 of the 300 rows here.
    monkeypatch.setattr(clustering, "SEED_ROWS", 60)
    vectors, labels = groups(count=5, per_group=60, dimension=24, noise=0.3, seed=4)
    result = cluster_vectors(vectors, clusters=5, seed=0)
    assert_recovered(result.assignments, labels)
    assert_consistent(result, vectors)


def test_the_same_seed_gives_the_same_clustering() -> None:
    # Structureless rows: the result depends on the seeding, so a hidden source of randomness would show.
    vectors = np.random.default_rng(7).normal(size=(300, 16)).astype(np.float32)
    first = cluster_vectors(vectors, clusters=8, seed=11)
    second = cluster_vectors(vectors.copy(), clusters=8, seed=11)
    np.testing.assert_array_equal(first.assignments, second.assignments)
    np.testing.assert_array_equal(first.centres, second.centres)
    others = [cluster_vectors(vectors, clusters=8, seed=seed).assignments for seed in range(4)]
    assert any(not np.array_equal(others[0], other) for other in others[1:]), "the seed is used"


def test_more_clusters_than_distinct_rows_leaves_the_extra_ones_empty() -> None:
    distinct = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32)
    vectors = np.repeat(distinct, [5, 3, 4], axis=0)  # 12 rows, 3 distinct points
    result = cluster_vectors(vectors, clusters=6, seed=0)
    assert len(result.centres) == 6
    assert sorted(result.sizes.tolist()) == [0, 0, 0, 3, 4, 5]
    assert_recovered(result.assignments, np.repeat(np.arange(3), [5, 3, 4]))
    assert_consistent(result, vectors)
    representatives = result.representatives(vectors, per_cluster=2)
    assert len(representatives) == 3, "empty clusters have no representatives"


def test_identical_rows_make_one_cluster() -> None:
    vectors = np.tile(np.array([[3.0, 4.0]], dtype=np.float32), (10, 1))
    result = cluster_vectors(vectors, clusters=4, seed=0)
    assert sorted(result.sizes.tolist()) == [0, 0, 0, 10]
    assert_consistent(result, vectors)


def test_an_empty_cluster_is_reseeded_from_the_farthest_rows() -> None:
    # Lloyd started from three copies of one centre: all rows go to the first, the other two are empty and
    # must move onto the rows farthest from it, or the three groups would never separate.
    vectors, labels = groups(count=3, per_group=30, dimension=16, noise=0.2, seed=5)
    rows = unit_rows(vectors)
    start = np.repeat(rows[:1], 3, axis=0)
    assignments, similarity, centres = clustering._lloyd(rows, start)
    assert_recovered(assignments, labels)
    assert sorted(np.bincount(assignments, minlength=3).tolist()) == [30, 30, 30]
    np.testing.assert_allclose(similarity, (rows @ centres.T).max(axis=1), atol=1e-6)


def test_an_empty_cluster_is_reseeded_in_mini_batches() -> None:
    # Groups along three axes; the third starting centre points away from every row, so no row takes it in
    # the first epoch: it must be moved onto a far row, or two groups would stay in one cluster.
    rng = np.random.default_rng(6)
    labels = rng.permutation(np.repeat(np.arange(3), 100))
    vectors = np.eye(3, 16)[labels] * 5 + rng.normal(scale=0.3, size=(300, 16))
    rows = unit_rows(vectors)
    away = -unit_rows(np.eye(3, 16).sum(axis=0, keepdims=True))[0]
    assert np.all(rows @ away < 0), "no row is near the third centre"
    start = np.stack([rows[labels == 0][0], rows[labels == 1][0], away])
    centres = clustering._mini_batch(rows, start, np.random.default_rng(0), batch_size=32)
    assignments, _ = clustering._nearest(rows, centres)
    assert_recovered(assignments, labels)
    assert sorted(np.bincount(assignments, minlength=3).tolist()) == [100, 100, 100]


def test_the_number_of_clusters_is_clamped_to_the_rows() -> None:
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]], dtype=np.float32)
    result = cluster_vectors(vectors, clusters=10, seed=0)
    assert result.centres.shape == (4, 2)
    assert sorted(result.assignments.tolist()) == [0, 1, 2, 3], "four distinct rows, four clusters"
    np.testing.assert_allclose(result.centres[result.assignments], vectors, atol=1e-6)
    single = cluster_vectors(vectors, clusters=0, seed=0)
    assert single.centres.shape == (1, 2) and single.assignments.tolist() == [0, 0, 0, 0]
    one_row = cluster_vectors(vectors[:1], clusters=3, seed=0)
    assert one_row.assignments.tolist() == [0] and one_row.centres.shape == (1, 2)


def test_a_zero_row_gives_no_zero_centre() -> None:
    vectors, _ = groups(count=2, per_group=20, dimension=8, noise=0.1, seed=2)
    vectors[0] = 0.0  # a missing descriptor: no direction
    result = cluster_vectors(vectors, clusters=3, seed=0)
    assert len(result.assignments) == 40
    assert np.all(np.isfinite(result.centres))
    np.testing.assert_allclose(np.linalg.norm(result.centres, axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    "vectors",
    [np.zeros((0, 8), dtype=np.float32), np.zeros((0,)), [], np.zeros((3, 0))],
    ids=["no rows", "empty 1-d", "empty list", "no columns"],
)
def test_nothing_to_cluster_is_a_value_error(vectors: object) -> None:
    with pytest.raises(ValueError, match="nothing to cluster"):
        cluster_vectors(vectors, clusters=3)  # type: ignore[arg-type]


def test_bad_input_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="rows"):
        cluster_vectors(np.ones(5), clusters=2)
    with pytest.raises(ValueError, match="batch_size"):
        cluster_vectors(np.eye(4), clusters=2, batch_size=0)
    with pytest.raises(ValueError, match="NaN"):
        cluster_vectors(np.array([[1.0, np.nan], [0.0, 1.0]]), clusters=2)
