"""The JSON the search routes answer with: each result with its score breakdown, the source artist and how
it was chosen, the influence path of each result, and the style prediction."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from artsearch.style_vote import StylePrediction
from artsearch.v1 import common_pb2
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.fusion import FusionParams, RankedCandidate
from services.gateway.links import artwork_links

log = logging.getLogger(__name__)

# How the source artist was chosen.
EXPLICIT = "explicit"  # the client named it
ARTWORK = "artwork"  # the artist of the catalogue artwork searched from
INFERRED = "inferred"  # the influence service chose the most similar candidate's artist in its graph
NONE = "none"


@dataclass(frozen=True)
class SourceArtist:
    name: str | None
    key: str | None
    how: str
    in_influence_graph: bool

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "key": self.key,
            "how": self.how,
            "in_influence_graph": self.in_influence_graph,
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
            # The boost actually applied: influence weight parameter x w_i, so final = visual x (1 + this).
            "influence_weight": _round(fusion.influence_weight * ranked.weight),
            "same_artist_rank": ranked.same_artist_rank,
            # w_i of a work by the source artist: 1 / same_artist_base ** same_artist_rank.
            "same_artist_penalty": None if penalty is None else _round(penalty),
            "final": _round(ranked.score),
        },
        "influence_path": path,
    }


def style_json(prediction: StylePrediction) -> dict[str, object]:
    return {
        "label": prediction.label,
        "confidence": _round(prediction.confidence),
        "top": [{"label": label, "score": _round(score)} for label, score in prediction.top],
    }


async def influence_paths(
    downstream: Downstream,
    source: SourceArtist,
    ranked: Sequence[RankedCandidate],
    deadline_s: float,
    request_id: str = "",
) -> tuple[dict[str, list[str] | None], bool]:
    """The chain of artist names from the source to each connected result's artist, by artist key, one
    Path call per distinct artist, all at once under one deadline. Returns (paths, complete): a path that
    could not be fetched is None and `complete` is False."""
    if source.key is None or not source.in_influence_graph:
        return {}, True
    paths: dict[str, list[str] | None] = {}
    wanted: list[str] = []
    for item in ranked:
        key = item.candidate.artist_key
        if item.hops == 0:
            paths[key] = [source.name or key]
        elif item.hops is not None and key not in paths and key not in wanted:
            wanted.append(key)
    if not wanted:
        return paths, True
    try:
        async with asyncio.timeout(deadline_s):
            replies = await asyncio.gather(
                *(downstream.path(source.key, key, request_id) for key in wanted), return_exceptions=True
            )
    except TimeoutError:
        replies = [TimeoutError()] * len(wanted)
    complete = True
    for key, reply in zip(wanted, replies, strict=True):
        if isinstance(reply, DownstreamError | TimeoutError):
            complete = False
            paths[key] = None
        elif isinstance(reply, BaseException):
            raise reply
        else:
            paths[key] = [artist.name or artist.key for artist in reply.artists] if reply.found else None
    if not complete:
        log.warning("some influence paths are unavailable", extra={"artists": len(wanted)})
    return paths, complete


def _round(value: float) -> float:
    return round(float(value), 6)
