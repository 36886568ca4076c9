"""The JSON the search routes answer with: each result with its score breakdown, the source artist and how
it was chosen, the influence path of each result, and the style prediction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import quote

from artsearch.style_vote import StylePrediction
from artsearch.v1 import common_pb2, influence_pb2
from services.gateway.fusion import FusionParams, RankedCandidate

# How the source artist was chosen.
EXPLICIT = "explicit"  # the client named it
ARTWORK = "artwork"  # the artist of the catalogue artwork searched from
INFERRED = "inferred"  # chosen from the candidates (`method` says how)
NONE = "none"
# How an inferred source artist was chosen (the `source_inference` parameter).
VOTE = "vote"  # the similarity-weighted vote of the top candidates (fusion.vote_source_artist)
NEAREST = "nearest"  # the influence service's rule: the most similar candidate's artist in its graph


@dataclass(frozen=True)
class SourceArtist:
    name: str | None
    key: str | None
    how: str
    in_influence_graph: bool
    # VOTE or NEAREST when inferred, else None.
    method: str | None = None
    # How sure the choice is: the winner's share of the vote; 1 when named or chosen by the nearest rule.
    confidence: float = 1.0
    # The c the boost was scaled by: a vote's lead (`confidence` less the runner-up's share), 0 under the
    # request's source_min_confidence; `confidence` when named or chosen by the nearest rule.
    applied_confidence: float = 1.0
    # The vote's runner-up (name, share), when there was one.
    runner_up: tuple[str, float] | None = None
    # Candidates that voted.
    voters: int | None = None

    def to_json(self) -> dict[str, object]:
        runner_up = self.runner_up
        return {
            "name": self.name,
            "key": self.key,
            "how": self.how,
            "in_influence_graph": self.in_influence_graph,
            "method": self.method,
            "confidence": _round(self.confidence),
            "applied_confidence": _round(self.applied_confidence),
            "runner_up": None if runner_up is None else {"name": runner_up[0], "share": _round(runner_up[1])},
            "voters": self.voters,
        }


def artwork_json(artwork: common_pb2.Artwork) -> dict[str, object]:
    """Public metadata of one artwork, with the routes serving its image."""
    return {
        "id": artwork.id,
        "title": artwork.title,
        "artist": artwork.artist or None,
        "style": artwork.style or None,
        "genre": artwork.genre or None,
        "year": artwork.year or None,
        "catalogue": artwork.catalogue or None,
        "image_uri": artwork.image_uri or None,
        **artwork_links(artwork.id),
    }


def artwork_links(artwork_id: str) -> dict[str, str]:
    """`image_url` and `thumbnail_url` of one artwork; the id is quoted (ids may hold '/', '?', '#')."""
    quoted = quote(artwork_id, safe="")
    return {
        "image_url": f"/v1/artworks/{quoted}/image",
        "thumbnail_url": f"/v1/artworks/{quoted}/thumbnail",
    }


def result_json(
    ranked: RankedCandidate,
    artwork: common_pb2.Artwork,
    aspects: Mapping[str, float],
    fusion: FusionParams,
    path: list[str] | None,
) -> dict[str, object]:
    """One result: its metadata, every part of its score, and its influence path from the source."""
    penalty = ranked.weight if ranked.same_artist_rank is not None else None
    return {
        **{name: value for name, value in artwork_json(artwork).items() if name != "catalogue"},
        "score": _round(ranked.score),
        "scores": {
            "visual": _round(ranked.candidate.similarity),
            **{name: _round(value) for name, value in aspects.items()},
            "influence_hops": ranked.hops,
            # The boost actually applied: influence weight parameter x source confidence c x w_i, so
            # final = visual x (1 + this).
            "influence_weight": _round(fusion.boost * ranked.weight),
            "same_artist_rank": ranked.same_artist_rank,
            # w_i of a work by the source artist: 1 / same_artist_base ** same_artist_rank.
            "same_artist_penalty": None if penalty is None else _round(penalty),
            "final": _round(ranked.score),
        },
        "influence_path": path,
    }


def style_json(
    prediction: StylePrediction, voters: int | None = None, art_search: bool | None = None
) -> dict[str, object]:
    """The prediction; `voters`: the art-style neighbours that voted; `art_search`: whether they were found
    by a search of their own (too few art-style labels among the candidates)."""
    return {
        "label": prediction.label,
        "confidence": _round(prediction.confidence),
        "top": [{"label": label, "score": _round(score)} for label, score in prediction.top],
        "voters": voters,
        "art_search": art_search,
    }


def influence_paths(
    distances: influence_pb2.DistancesResponse | None, source: SourceArtist
) -> dict[str, list[str]]:
    """The chain of artist names from the source to each reached candidate's artist, by artist key, as the
    influence service answered them with the distances (one graph walk for the whole pool)."""
    if distances is None or not source.in_influence_graph:
        return {}
    return {d.key: list(d.path) for d in distances.distances if d.known and d.hops >= 0 and d.path}


def _round(value: float) -> float:
    return round(float(value), 6)
