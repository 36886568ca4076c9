"""Cosine similarity between a query and stored vectors over parts of the vector, one part at a time:
what a result's per-aspect explanation needs, computed beside the vectors instead of shipping them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from services.search.store import InvalidStoreRequest

MAX_PARTS = 64
_TINY = 1e-12


def checked_parts(parts: Sequence[tuple[int, int]], dimension: int) -> list[tuple[int, int]]:
    """The (offset, length) parts, each inside a vector of `dimension` values; InvalidStoreRequest if not."""
    if not parts:
        raise InvalidStoreRequest("no parts: give at least one (offset, length)")
    if len(parts) > MAX_PARTS:
        raise InvalidStoreRequest(f"too many parts: {len(parts)} > {MAX_PARTS}")
    for index, (offset, length) in enumerate(parts):
        if offset < 0 or length < 1 or offset + length > dimension:
            raise InvalidStoreRequest(
                f"parts[{index}] = [{offset}, {offset + length}) is not inside a vector of {dimension} values"
            )
    return list(parts)


def part_cosines(query: np.ndarray, stored: np.ndarray, parts: Sequence[tuple[int, int]]) -> np.ndarray:
    """[N, len(parts)]: the cosine of each stored row [N, D] with the query [D] over each part; 0 where
    either side's part is all zeros."""
    columns = []
    for offset, length in parts:
        query_part = query[offset : offset + length]
        stored_part = stored[:, offset : offset + length]
        norms = np.linalg.norm(stored_part, axis=1) * float(np.linalg.norm(query_part))
        columns.append((stored_part @ query_part) / np.maximum(norms, _TINY))
    return np.stack(columns, axis=1).astype(np.float32)
