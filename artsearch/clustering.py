"""Clusters of artworks by their descriptors (MiniBatch k-means), for browsing a collection by look and for
measuring how well clusters follow labels (purity).

    result = cluster_vectors(vectors, clusters=12, seed=0)
    result.assignments            # cluster of each row
    result.representatives(vectors, per_cluster=4)   # the rows nearest each centre, for a browse view

Vectors are compared by cosine: rows are L2-normalised before clustering, so k-means on them is spherical
k-means up to the centre's length.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from artsearch.descriptor import unit_rows


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
    """MiniBatch k-means (scikit-learn) on the unit rows; at most one cluster per row."""
    from sklearn.cluster import MiniBatchKMeans

    rows = unit_rows(np.asarray(vectors, dtype=np.float32))
    if len(rows) == 0:
        raise ValueError("nothing to cluster")
    clusters = max(1, min(clusters, len(rows)))
    model = MiniBatchKMeans(n_clusters=clusters, random_state=seed, batch_size=batch_size, n_init=3)
    assignments = model.fit_predict(rows)
    return Clustering(assignments.astype(np.int64), unit_rows(model.cluster_centers_.astype(np.float32)))


def purity(assignments: Sequence[int], labels: Sequence[str]) -> float:
    """Σ over clusters of its most common label's count, over N: 1 when every cluster holds one label."""
    if len(assignments) != len(labels) or not len(labels):
        raise ValueError("one label per assigned row, at least one row")
    by_cluster: dict[int, Counter[str]] = {}
    for cluster, label in zip(assignments, labels, strict=True):
        by_cluster.setdefault(int(cluster), Counter())[label] += 1
    return sum(counts.most_common(1)[0][1] for counts in by_cluster.values()) / len(labels)
