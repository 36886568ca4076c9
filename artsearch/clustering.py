"""Clusters of artworks by their descriptors (spherical k-means, in numpy), for browsing a collection by look
and for measuring how well clusters follow labels (purity).

    result = cluster_vectors(vectors, clusters=12, seed=0)
    result.assignments            # cluster of each row
    result.representatives(vectors, per_cluster=4)   # the rows nearest each centre, for a browse view

Vectors are compared by cosine: rows are L2-normalised and centres kept at unit length (spherical k-means),
so a row's cluster is the centre with the largest dot product. Up to FULL_BATCH_ROWS rows (the gateway's
default catalogue limit) every iteration uses all rows; above, mini-batches bound the work per step. Rows
are compared with the centres BLOCK_ROWS at a time: besides one unit-length copy of the rows, memory is a
few numbers per row and cluster.
numpy only: scikit-learn and scipy would add some 200 MB to the gateway image for this one use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from artsearch.descriptor_layout import unit_rows

N_INIT = 3  # k-means++ restarts; the one with the least inertia is kept
MAX_ITERATIONS = 100  # full-batch Lloyd iterations per restart (separated groups settle in a handful)
MAX_EPOCHS = 10  # mini-batch passes over the rows per restart
FULL_BATCH_ROWS = 20_000  # up to this many rows an iteration uses them all: a few matrix products, exact
BLOCK_ROWS = 4096  # rows compared with the centres at once
SEED_ROWS = 4096  # rows k-means++ draws its seeds from (a random sample of larger sets)
SAME_POINT = 1e-6  # cosine distance under which a row is on its centre: nothing to split off by re-seeding
_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class Clustering:
    assignments: np.ndarray  # int [N]: the cluster of each row
    centres: np.ndarray  # float32 [clusters, dimension], unit rows

    @property
    def sizes(self) -> np.ndarray:
        return np.bincount(self.assignments, minlength=len(self.centres))

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.assignments == cluster)

    def representatives(self, vectors: np.ndarray, per_cluster: int = 4) -> dict[int, list[int]]:
        """For each non-empty cluster, its rows most similar to its centre, best first."""
        similarity = unit_rows(vectors) @ self.centres.T
        result = {}
        for cluster in range(len(self.centres)):
            rows = self.members(cluster)
            if rows.size:
                best = rows[np.argsort(-similarity[rows, cluster], kind="stable")[:per_cluster]]
                result[cluster] = best.tolist()
        return result


def cluster_vectors(vectors: np.ndarray, clusters: int, seed: int = 0, batch_size: int = 1024) -> Clustering:
    """Spherical k-means of the rows (k-means++ seeds, N_INIT restarts, the least inertia kept): full-batch
    Lloyd iterations up to FULL_BATCH_ROWS rows, mini-batches of `batch_size` rows above. At most one cluster
    per row; the same rows and seed give the same clustering."""
    values = np.asarray(vectors, dtype=np.float32)
    if values.size == 0:
        raise ValueError("nothing to cluster")
    if values.ndim != 2:
        raise ValueError(f"expected rows [N, dimension], got shape {values.shape}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if not np.isfinite(values).all():
        raise ValueError("vectors hold NaN or infinite values")
    rows = unit_rows(values)
    clusters = max(1, min(clusters, len(rows)))
    rng = np.random.default_rng(seed)
    runs = [_one_run(rows, clusters, rng, batch_size) for _ in range(N_INIT)]
    best = min(runs, key=lambda run: run.inertia)  # the first of equals: reproducible
    return Clustering(best.assignments, best.centres)


@dataclass(frozen=True)
class _Run:
    assignments: np.ndarray
    centres: np.ndarray
    inertia: float  # Σ cosine distance of each row to its centre (half the squared Euclidean distance)


def _one_run(rows: np.ndarray, clusters: int, rng: np.random.Generator, batch_size: int) -> _Run:
    seeds = _seed_centres(_seeding_rows(rows, clusters, rng), clusters, rng)
    if len(rows) <= FULL_BATCH_ROWS:
        assignments, similarity, centres = _lloyd(rows, seeds)
    else:
        centres = _mini_batch(rows, seeds, rng, batch_size)
        assignments, similarity = _nearest(rows, centres)
    return _Run(assignments, centres, float(np.sum(1.0 - similarity, dtype=np.float64)))


def _seeding_rows(rows: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """The rows k-means++ draws from: all of them up to SEED_ROWS (or three per cluster), else a random
    sample of that many. Seeding reads its candidates once per centre, more than the iterations after it do;
    a sample seeds as well (scikit-learn's mini-batch k-means samples too) in a fraction of the time."""
    size = max(SEED_ROWS, 3 * clusters)
    if len(rows) <= size:
        return rows
    return rows[np.sort(rng.choice(len(rows), size=size, replace=False))]


def _seed_centres(rows: np.ndarray, clusters: int, rng: np.random.Generator) -> np.ndarray:
    """Greedy k-means++: a random row, then for each next centre a few candidate rows drawn with probability
    proportional to their squared distance to the nearest centre so far (on unit rows, proportional to
    1 - cosine), keeping the candidate that most lowers the total distance. The seeds spread over the groups;
    the greedy pick matters in high dimension, where within- and between-group distances are close and one
    draw alone often lands a second seed in an already seeded group."""
    live = rows.any(axis=1)  # an all-zero row has no direction: it would make a zero centre
    candidates = np.flatnonzero(live) if live.any() else np.arange(len(rows))
    chosen = [int(rng.choice(candidates))]
    distance = 1.0 - rows @ rows[chosen[0]]
    trials = 2 + int(np.log(clusters))  # as scikit-learn's k-means++
    for _ in range(1, clusters):
        weights = np.where(live, np.maximum(distance, 0.0), 0.0).astype(np.float64)
        total = weights.sum()
        if total > 0:
            draws = np.searchsorted(np.cumsum(weights), rng.random(trials) * total, side="right")
            tried = np.minimum(draws, len(rows) - 1)  # rounding in the cumulative sum
        else:  # every row already sits on a centre (duplicates): the extra centres stay empty
            tried = rng.choice(candidates, size=1)
        # Each candidate's distances [trials, N], in one matrix product.
        after = np.minimum(distance, 1.0 - rows[tried] @ rows.T)
        best = int(np.argmin(after.sum(axis=1, dtype=np.float64)))
        chosen.append(int(tried[best]))
        distance = after[best]
    return rows[chosen].copy()


def _nearest(rows: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's most similar centre and that cosine; BLOCK_ROWS rows at a time so the temporary stays small
    whatever N."""
    assignments = np.empty(len(rows), dtype=np.int64)
    similarity = np.empty(len(rows), dtype=np.float32)
    for start in range(0, len(rows), BLOCK_ROWS):
        block = rows[start : start + BLOCK_ROWS] @ centres.T
        assignments[start : start + len(block)] = np.argmax(block, axis=1)
        similarity[start : start + len(block)] = np.max(block, axis=1)
    return assignments, similarity


def _member_sums(rows: np.ndarray, assignments: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray]:
    """Each cluster's sum of member rows [clusters, dimension] and member count [clusters]."""
    membership = np.zeros((clusters, len(rows)), dtype=np.float32)
    membership[assignments, np.arange(len(rows))] = 1.0
    # One matrix product instead of a Python loop over clusters or np.add.at (both much slower).
    return membership @ rows, np.bincount(assignments, minlength=clusters)


def _directions(sums: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """The unit direction of each sum; where a sum is zero (no members, or members cancelling out) there is
    none, and the previous centre stays."""
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > _TINY, sums / np.maximum(norms, _TINY), previous).astype(np.float32)


def _reseed_empty(
    rows: np.ndarray, assignments: np.ndarray, similarity: np.ndarray, centres: np.ndarray
) -> np.ndarray:
    """Moves each empty cluster's centre (in place) onto the row farthest from every centre so far, one
    cluster at a time so that two empty clusters do not land in the same far group; returns the clusters
    moved. A row on a centre splits nothing off: where every row is (duplicates, more clusters than distinct
    rows), the remaining clusters stay empty."""
    empty = np.flatnonzero(np.bincount(assignments, minlength=len(centres)) == 0)
    if not empty.size:
        return empty
    distance = np.where(rows.any(axis=1), 1.0 - similarity, 0.0)  # a zero row would make a zero centre
    moved = []
    for cluster in empty:
        farthest = int(np.argmax(distance))
        if distance[farthest] <= SAME_POINT:
            break
        centres[cluster] = rows[farthest]
        distance = np.minimum(distance, 1.0 - rows @ rows[farthest])
        moved.append(cluster)
    return np.array(moved, dtype=np.int64)


def _lloyd(rows: np.ndarray, centres: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-batch iterations: every row to its nearest centre, each centre to its members' mean direction;
    until no row changes cluster (or MAX_ITERATIONS). Returns the assignments, each row's cosine to its
    centre, and the centres, the assignments being those of these centres."""
    assignments, similarity = _nearest(rows, centres)
    for _ in range(MAX_ITERATIONS):
        sums, _ = _member_sums(rows, assignments, len(centres))
        centres = _directions(sums, centres)
        moved = _reseed_empty(rows, assignments, similarity, centres)
        following, similarity = _nearest(rows, centres)
        settled = not moved.size and np.array_equal(following, assignments)
        assignments = following
        if settled:
            break
    return assignments, similarity, centres


def _mini_batch(
    rows: np.ndarray, centres: np.ndarray, rng: np.random.Generator, batch_size: int
) -> np.ndarray:
    """Epochs of mini-batch updates, each row once per epoch in a random order: a centre moves toward its
    members in the batch by their share of the rows it has taken (a running mean, so it settles as it grows).
    Each epoch starts with the past weighing as the rows taken in the epoch before, not as every row since the
    start: a centre seeded badly, or re-seeded, still follows its members instead of freezing after the first
    epoch. Until an epoch leaves every row in the cluster of the epoch before (or MAX_EPOCHS)."""
    taken = np.zeros(len(centres), dtype=np.float64)
    previous: np.ndarray | None = None
    for _ in range(MAX_EPOCHS):
        assignments = np.empty(len(rows), dtype=np.int64)
        similarity = np.empty(len(rows), dtype=np.float32)
        order = rng.permutation(len(rows))
        for start in range(0, len(rows), batch_size):
            batch = np.sort(order[start : start + batch_size])  # in memory order: a faster gather
            members = rows[batch]
            assignments[batch], similarity[batch] = _nearest(members, centres)
            centres = _online_step(members, assignments[batch], centres, taken)
        moved = _reseed_empty(rows, assignments, similarity, centres)
        # A re-seeded centre took no rows: its running mean starts afresh.
        taken = np.bincount(assignments, minlength=len(centres)).astype(np.float64)
        if not moved.size and previous is not None and np.array_equal(assignments, previous):
            break
        previous = assignments
    return centres


def _online_step(
    batch: np.ndarray, assignments: np.ndarray, centres: np.ndarray, taken: np.ndarray
) -> np.ndarray:
    """One mini-batch's update: each centre with members here becomes the running mean of all the rows it
    has taken (`taken`, updated in place), renormalised to unit length for the next cosine comparison."""
    sums, counts = _member_sums(batch, assignments, len(centres))
    taken += counts
    share = np.divide(counts, taken, out=np.zeros_like(taken), where=taken > 0)[:, None]
    means = (1.0 - share) * centres + sums / np.maximum(taken, 1.0)[:, None]
    return _directions(means.astype(np.float32), centres)


def purity(assignments: Sequence[int], labels: Sequence[str]) -> float:
    """Σ over clusters of its most common label's count, over N: 1 when every cluster holds one label."""
    if len(assignments) != len(labels) or not len(labels):
        raise ValueError("one label per assigned row, at least one row")
    by_cluster: dict[int, Counter[str]] = {}
    for cluster, label in zip(assignments, labels, strict=True):
        by_cluster.setdefault(int(cluster), Counter())[label] += 1
    return sum(counts.most_common(1)[0][1] for counts in by_cluster.values()) / len(labels)
