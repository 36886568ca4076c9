"""The original system's influence re-rank, with its ordering bug fixed, and the inference of the source
artist from the candidates by a similarity-weighted vote.

For candidates in descending visual similarity `s` and a source artist `a_s` chosen with confidence `c`:

    score_i = s_i * (1 + influence_weight * c * w_i)
      w_i = 1 / same_artist_base**k   if artist_i is a_s (k = same-artist items already placed, counted in
                                      descending similarity, so the most similar one gets the largest boost)
      w_i = 1 / d                     if a_s and artist_i are d >= 1 hops apart in the influence graph
      w_i = unrelated_weight          otherwise (unknown artist, not connected, or no source artist)

The original counted k in ascending similarity order, so the least similar same-artist work got the
largest boost. With influence_weight = 1, c = 1 (an explicit source artist, or the original inference) and
the default constants this is exactly the original formula.

The source artist, when nobody names it, is inferred by `vote_source_artist`: each of the `top` most
similar candidates with an artist votes for that artist with weight exp((s_i - s_1) / temperature) (a
softmax over the similarities; temperature 0 gives all the weight to the most similar candidate: the
original rule); c is the winner's share of the votes. `source_confidence` turns a share under the
threshold into c = 0: no boost at all when the vote is unsure.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class FusionParams:
    unrelated_weight: float = 1 / 100
    same_artist_base: float = 2.0
    # Scales every w_i; 0 turns the re-rank off (results keep their visual order).
    influence_weight: float = 1.0
    # c: how sure the source artist is (1 when named; the winner's share of the vote when inferred).
    source_confidence: float = 1.0

    @property
    def boost(self) -> float:
        """What multiplies w_i in the score: influence_weight * c."""
        return self.influence_weight * self.source_confidence


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
        score = candidate.similarity * (1.0 + params.boost * weight)
        ranked.append(RankedCandidate(candidate, score, weight, hops, same_rank))
    ranked.sort(key=lambda r: r.score, reverse=True)
    return ranked


@dataclass(frozen=True)
class SourceVote:
    """The outcome of the source-artist vote: artist keys with their share of the votes, best first."""

    shares: tuple[tuple[str, float], ...]
    # Candidates that voted (the top ones with an artist).
    voters: int

    @property
    def winner(self) -> str | None:
        return self.shares[0][0] if self.shares else None

    @property
    def confidence(self) -> float:
        """The winner's share of the votes, in [0, 1]; 0 when nobody voted."""
        return self.shares[0][1] if self.shares else 0.0

    @property
    def runner_up(self) -> tuple[str, float] | None:
        return self.shares[1] if len(self.shares) > 1 else None


@dataclass(frozen=True)
class SourceVoteParams:
    # How many of the most similar candidates vote (only those with an artist count).
    top: int = 10
    # Softmax temperature over the similarities; 0: the most similar candidate alone decides. 0.03 and
    # top 10 were the best of a grid on the demo catalogue (bench/source_inference.py).
    temperature: float = 0.03
    # A winner with a smaller share of the votes gets c = 0 (no influence boost): with 0.3 the painting
    # itself ranked first after the re-rank for 0.931 of the demo photos (0.926 without, 0.929 visual).
    min_confidence: float = 0.3


def vote_source_artist(
    candidates: Sequence[Candidate], params: SourceVoteParams = SourceVoteParams()
) -> SourceVote:
    """The similarity-weighted vote of the `top` most similar candidates that have an artist; equal votes
    go to the artist seen first (the more similar)."""
    voting = [c for c in sorted(candidates, key=lambda c: c.similarity, reverse=True) if c.artist_key]
    voting = voting[: max(0, params.top)]
    if not voting:
        return SourceVote((), 0)
    best = voting[0].similarity
    votes: dict[str, float] = {}
    for candidate in voting:
        votes[candidate.artist_key] = votes.get(candidate.artist_key, 0.0) + _vote_weight(
            candidate.similarity - best, params.temperature
        )
    total = sum(votes.values())
    ranked = sorted(votes.items(), key=lambda item: item[1], reverse=True)  # stable: first seen wins ties
    return SourceVote(tuple((key, count / total) for key, count in ranked), len(voting))


def _vote_weight(below_best: float, temperature: float) -> float:
    """exp(-(s_1 - s_i) / T), relative to the most similar candidate (so no overflow); with T = 0, 1 for
    candidates as similar as the best and 0 for the others."""
    if temperature <= 0:
        return 1.0 if below_best >= 0 else 0.0
    return math.exp(below_best / temperature)


def effective_confidence(share: float, min_confidence: float, runner_up_share: float = 0.0) -> float:
    """c in the score: the winner's lead over the runner-up (its share less the second artist's), or 0 when
    its share is under the threshold. A vote split between two painters is unsure which one the photo is
    by: boosting the winner's circle then ranks the works of the painter it may well not be by above the
    best visual match (a turned photo of a Bazille, voted 0.41 Van Gogh / 0.38 Bazille, lost its painting
    from the top 5 with c = 0.41), while a clear vote keeps nearly all of its share."""
    return max(0.0, share - runner_up_share) if share >= min_confidence else 0.0
