"""Per-part scores of search hits: what a result's per-aspect explanation needs, computed by the engine
itself instead of shipping stored vectors out (2,664 floats per hit, slow to hand over from Rust).

For each part (offset, length) of a query q, the engine scores the hits with the "masked" query m_p: the
unit direction of q over the part, zeros elsewhere. A cosine engine stores every vector v at unit length,
so its score is the projection dot(v / |v|, m_p). Divided by the stored part's length that is the part's
cosine; the caller knows that length when the descriptors follow a layout (artsearch.descriptor_layout).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np

from services.search.store import InvalidStoreRequest

MAX_PARTS = 64
_TINY = 1e-12


def checked_parts(parts: Sequence[tuple[int, int]], dimension: int) -> list[tuple[int, int]]:
    """The (offset, length) parts, each inside a vector of `dimension` values; InvalidStoreRequest if not."""
    if len(parts) > MAX_PARTS:
        raise InvalidStoreRequest(f"too many parts: {len(parts)} > {MAX_PARTS}")
    for index, (offset, length) in enumerate(parts):
        if offset < 0 or length < 1 or offset + length > dimension:
            raise InvalidStoreRequest(
                f"parts[{index}] = [{offset}, {offset + length}) is not inside a vector of {dimension} values"
            )
    return list(parts)


def masked_part_queries(
    query: np.ndarray, parts: Sequence[tuple[int, int]], dimension: int
) -> list[np.ndarray | None]:
    """Per part: the query's unit direction over that part and zeros elsewhere; None where the query's part
    is all zeros (its projections are 0 by definition, and an engine would refuse a zero query).
    InvalidStoreRequest for parts outside the vector, or a query that is not `dimension` finite values."""
    if not parts:
        return []
    checked_parts(parts, dimension)
    query = np.asarray(query, dtype=np.float32)
    if query.shape != (dimension,) or not np.isfinite(query).all():
        raise InvalidStoreRequest(f"the part query must be {dimension} finite values, like the query")
    masked: list[np.ndarray | None] = []
    for offset, length in parts:
        part = query[offset : offset + length]
        norm = float(np.linalg.norm(part))
        if norm <= _TINY:
            masked.append(None)
            continue
        vector = np.zeros(dimension, dtype=np.float32)
        vector[offset : offset + length] = part / norm
        masked.append(vector)
    return masked


def projections_by_id(
    ids: Sequence[Hashable], masked: Sequence[np.ndarray | None], scores: Sequence[Mapping[Hashable, float]]
) -> dict[Hashable, tuple[float, ...]]:
    """{id: one projection per part} from the engine's scores of each non-None masked query, in order, of
    the points `ids` (the hits); a hit the engine did not score again (deleted meanwhile) is left out."""
    per_query = iter(scores)
    columns = [next(per_query) if vector is not None else None for vector in masked]
    return {
        i: tuple(float(column[i]) if column is not None else 0.0 for column in columns)
        for i in ids
        if all(column is None or i in column for column in columns)
    }
