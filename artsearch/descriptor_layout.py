"""The layout of an artwork descriptor, and how a query re-weights its aspects.

A descriptor is one vector made of consecutive aspects (content, style, colour, ...). Each aspect's part is
L2-normalised and then scaled by the square root of the aspect's default weight w_a (the default weights sum
to 1), so a stored descriptor has unit length and the dot product of two descriptors is the weighted sum of
the per-aspect cosines, Σ w_a cos_a.

A query asks for other weights v by scaling its parts: part_a ← (v_a / sqrt(w_a)) · unit(part_a). Its dot
product with a stored descriptor is then Σ v_a cos_a, still one vector search. A cosine search engine
(Qdrant) divides by the query's length, which rescales every score of that query alike and so leaves the
ranking unchanged; multiply by `np.linalg.norm(query)` to recover Σ v_a cos_a.

The encoder publishes the layout in `ModelInfo.aspects`; the gateway reads it with
`DescriptorLayout.from_model_info`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from artsearch.v1 import encoder_pb2

# Default weights travel as float32 in ModelInfo; their sum is checked to this tolerance.
_WEIGHT_SUM_TOLERANCE = 1e-4
_TINY = float(np.finfo(np.float32).tiny)


@dataclass(frozen=True)
class Aspect:
    name: str
    offset: int
    length: int
    default_weight: float

    @property
    def span(self) -> slice:
        return slice(self.offset, self.offset + self.length)


@dataclass(frozen=True)
class DescriptorLayout:
    """Aspects in vector order; they tile [0, dimension) without gaps."""

    aspects: tuple[Aspect, ...]

    def __post_init__(self) -> None:
        if not self.aspects:
            raise ValueError("a descriptor layout needs at least one aspect")
        names = [aspect.name for aspect in self.aspects]
        if len(set(names)) != len(names) or not all(names):
            raise ValueError(f"aspect names must be unique and non-empty: {names}")
        offset = 0
        for aspect in self.aspects:
            if aspect.offset != offset or aspect.length <= 0:
                raise ValueError(
                    f"aspect {aspect.name!r} is at [{aspect.offset}, +{aspect.length}); expected offset "
                    f"{offset} and a positive length (aspects must be consecutive)"
                )
            if not (math.isfinite(aspect.default_weight) and aspect.default_weight >= 0):
                raise ValueError(f"aspect {aspect.name!r} has default weight {aspect.default_weight}")
            offset += aspect.length
        total = sum(aspect.default_weight for aspect in self.aspects)
        if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
            raise ValueError(f"default weights sum to {total:.6f}, not 1")

    @classmethod
    def build(cls, lengths: Sequence[tuple[str, int]], weights: Mapping[str, float]) -> DescriptorLayout:
        """Consecutive aspects of these (name, length), in this order, with these default weights."""
        missing = [name for name, _ in lengths if name not in weights]
        extra = sorted(set(weights) - {name for name, _ in lengths})
        if missing or extra:
            raise ValueError(f"weights must name exactly the aspects: missing {missing}, unknown {extra}")
        aspects = []
        offset = 0
        for name, length in lengths:
            aspects.append(Aspect(name, offset, int(length), float(weights[name])))
            offset += int(length)
        return cls(tuple(aspects))

    @classmethod
    def from_model_info(cls, info: encoder_pb2.ModelInfo) -> DescriptorLayout:
        """The layout an encoder publishes. An encoder that publishes none has one aspect, "content"."""
        if not info.aspects:
            if info.dimension <= 0:
                raise ValueError("model info has neither aspects nor a dimension")
            return cls((Aspect("content", 0, info.dimension, 1.0),))
        layout = cls(tuple(Aspect(a.name, a.offset, a.length, float(a.default_weight)) for a in info.aspects))
        if info.dimension and info.dimension != layout.dimension:
            raise ValueError(f"aspects cover {layout.dimension} values, model info says {info.dimension}")
        return layout

    def to_proto(self) -> list[encoder_pb2.DescriptorAspect]:
        from artsearch.v1 import encoder_pb2

        return [
            encoder_pb2.DescriptorAspect(
                name=a.name, offset=a.offset, length=a.length, default_weight=a.default_weight
            )
            for a in self.aspects
        ]

    @property
    def dimension(self) -> int:
        last = self.aspects[-1]
        return last.offset + last.length

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(aspect.name for aspect in self.aspects)

    @property
    def default_weights(self) -> dict[str, float]:
        return {aspect.name: aspect.default_weight for aspect in self.aspects}

    def aspect(self, name: str) -> Aspect:
        for aspect in self.aspects:
            if aspect.name == name:
                return aspect
        raise KeyError(f"no aspect {name!r}; the descriptor has {list(self.names)}")


def unit_rows(values: np.ndarray) -> np.ndarray:
    """Each row scaled to unit L2 length; an all-zero row stays zero instead of becoming NaN."""
    values = np.asarray(values, dtype=np.float32)
    norms = np.linalg.norm(values, axis=-1, keepdims=True)
    return values / np.maximum(norms, _TINY)


def assemble(parts: Mapping[str, np.ndarray], layout: DescriptorLayout) -> np.ndarray:
    """Stored descriptors [N, dimension] from each aspect's rows [N, length] (normalised here)."""
    missing = [name for name in layout.names if name not in parts]
    if missing:
        raise ValueError(f"no values for aspects {missing}")
    rows = {np.asarray(parts[name]).shape[0] for name in layout.names}
    if len(rows) != 1:
        raise ValueError(f"aspects have different numbers of rows: {sorted(rows)}")
    vectors = np.zeros((rows.pop(), layout.dimension), dtype=np.float32)
    for aspect in layout.aspects:
        values = np.asarray(parts[aspect.name], dtype=np.float32)
        if values.ndim != 2 or values.shape[1] != aspect.length:
            raise ValueError(
                f"aspect {aspect.name!r} has shape {values.shape}, expected [N, {aspect.length}]"
            )
        vectors[:, aspect.span] = unit_rows(values) * np.float32(math.sqrt(aspect.default_weight))
    return vectors


def query_weights(layout: DescriptorLayout, weights: Mapping[str, float]) -> dict[str, float]:
    """Every aspect's wanted weight, summing to 1: aspects `weights` does not name get 0. Raises ValueError
    for unknown names, negative or non-finite weights, all zeros, or a weight on an aspect whose stored
    part is empty (default weight 0: nothing to compare)."""
    unknown = sorted(set(weights) - set(layout.names))
    if unknown:
        raise ValueError(f"unknown aspects {unknown}; the descriptor has {list(layout.names)}")
    wanted = {name: float(weights.get(name, 0.0)) for name in layout.names}
    bad = {name: value for name, value in wanted.items() if not (math.isfinite(value) and value >= 0)}
    if bad:
        raise ValueError(f"aspect weights must be finite and >= 0: {bad}")
    total = sum(wanted.values())
    if total <= 0:
        raise ValueError("at least one aspect weight must be positive")
    unstored = [a.name for a in layout.aspects if a.default_weight == 0 and wanted[a.name] > 0]
    if unstored:
        raise ValueError(
            f"aspects {unstored} have default weight 0: stored descriptors carry nothing for them"
        )
    return {name: value / total for name, value in wanted.items()}


def reweight_query(vector: np.ndarray, aspects: DescriptorLayout, weights: Mapping[str, float]) -> np.ndarray:
    """The query vector whose dot product with a stored descriptor is Σ v_a cos_a, for the wanted weights
    `weights` (normalised to sum 1; aspects not named get 0). `vector` is a descriptor as the encoder returns
    it ([dimension], or [N, dimension] for several queries)."""
    values = np.asarray(vector, dtype=np.float32)
    if values.shape[-1] != aspects.dimension:
        raise ValueError(f"vector has {values.shape[-1]} values, the layout {aspects.dimension}")
    wanted = query_weights(aspects, weights)
    result = np.zeros_like(values)
    for aspect in aspects.aspects:
        if wanted[aspect.name] == 0:
            continue
        scale = wanted[aspect.name] / math.sqrt(aspect.default_weight)
        result[..., aspect.span] = unit_rows(values[..., aspect.span]) * np.float32(scale)
    return result


def aspect_similarities(
    query: np.ndarray, stored: np.ndarray, aspects: DescriptorLayout
) -> dict[str, float | np.ndarray]:
    """Cosine similarity of each aspect between `query` [dimension] and `stored` ([dimension]: a float per
    aspect; [N, dimension]: an array of N per aspect). Works on stored descriptors and on re-weighted
    queries alike (the parts are renormalised); an aspect that is all zeros on either side scores 0."""
    query_values = np.asarray(query, dtype=np.float32)
    stored_values = np.asarray(stored, dtype=np.float32)
    if query_values.shape != (aspects.dimension,) or stored_values.shape[-1] != aspects.dimension:
        raise ValueError(
            f"expected a query of [{aspects.dimension}] and stored [..., {aspects.dimension}], "
            f"got {query_values.shape} and {stored_values.shape}"
        )
    result: dict[str, float | np.ndarray] = {}
    for aspect in aspects.aspects:
        cosines = unit_rows(stored_values[..., aspect.span]) @ unit_rows(query_values[aspect.span])
        result[aspect.name] = float(cosines) if cosines.ndim == 0 else cosines
    return result
