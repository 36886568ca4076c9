"""The original system's influence re-rank, with its ordering bug fixed.

For candidates in descending visual similarity `s` and a source artist `a_s`:

    score_i = s_i * (1 + influence_weight * w_i)
      w_i = 1 / same_artist_base**k   if artist_i is a_s (k = same-artist items already placed, counted in
                                      descending similarity, so the most similar one gets the largest boost)
      w_i = 1 / d                     if a_s and artist_i are d >= 1 hops apart in the influence graph
      w_i = unrelated_weight          otherwise (unknown artist, not connected, or no source artist)

The original counted k in ascending similarity order, so the least similar same-artist work got the
largest boost. With influence_weight = 1 and the default constants this is exactly the original formula.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FusionParams:
    unrelated_weight: float = 1 / 100
    same_artist_base: float = 2.0
    # Scales every w_i; 0 turns the re-rank off (results keep their visual order).
    influence_weight: float = 1.0


@dataclass(frozen=True)
class Candidate:
    """A visual search hit: its id, its artist's normalised key and its cosine similarity to the query."""

    id: str
    artist_key: str
    similarity: float


@dataclass(frozen=True)
class RankedCandidate:
    candidate: Candidate
    score: float
    weight: float
    # Influence hops to the source artist: 0 same artist, None unknown / not connected / no source.
    hops: int | None
    # Same-artist works placed before this one (the k of the penalty); None when not the source artist.
    same_artist_rank: int | None


def influence_weight_for(hops: int | None, same_artist_rank: int | None, params: FusionParams) -> float:
    if same_artist_rank is not None:
        return 1.0 / params.same_artist_base**same_artist_rank
    if hops is not None and hops >= 1:
        return 1.0 / hops
    return params.unrelated_weight


def rank_with_influence(
    candidates: Sequence[Candidate],
    source_artist_key: str | None,
    hops_by_artist: Mapping[str, int],
    params: FusionParams = FusionParams(),
) -> list[RankedCandidate]:
    """Re-ranks visual candidates by influence; returns all of them, best first.

    `hops_by_artist` maps artist keys to hop distances from the source artist (missing = not connected).
    Ties keep the visual order (the sort is stable).
    """
    by_similarity = sorted(candidates, key=lambda c: c.similarity, reverse=True)
    ranked: list[RankedCandidate] = []
    same_artist_placed = 0
    for candidate in by_similarity:
        same_rank: int | None = None
        hops: int | None = None
        if source_artist_key and candidate.artist_key == source_artist_key:
            same_rank, hops = same_artist_placed, 0
            same_artist_placed += 1
        elif source_artist_key and candidate.artist_key:
            hops = hops_by_artist.get(candidate.artist_key)
            hops = hops if hops is not None and hops >= 1 else None
        weight = influence_weight_for(hops, same_rank, params)
        score = candidate.similarity * (1.0 + params.influence_weight * weight)
        ranked.append(RankedCandidate(candidate, score, weight, hops, same_rank))
    ranked.sort(key=lambda r: r.score, reverse=True)
    return ranked
