"""One search: a query descriptor (an encoded image, or a stored artwork's), visual candidates with the
client's aspect weights and filters, the influence re-rank, one page of explained results.

    1. re-weight the query's aspects (artsearch.descriptor_layout): the search engine's score times the
       query's length is then the weighted visual similarity Σ v_a cos_a;
    2. search `pool` candidates with the payload filters (and the artwork itself left out), in the collection
       of the query's model for an encoded picture (Downstream.model_collection: the model alias
       `<collection>__<version>` when it exists), in the configured collection for a stored descriptor;
    3. predict the style from the nearest candidates (before any re-rank) whose catalogue declared its
       labels art styles (artsearch.style_vote); when fewer than STYLE_MIN_ART_NEIGHBOURS of them are, a
       second search (beside step 4) finds the nearest art-style neighbours with a filter;
    4. ask the influence service for the hops from the source artist (named, the artwork's own, or inferred
       from the candidates: by default the similarity-weighted vote of the top ones with its confidence c,
       fusion.vote_source_artist; `source_inference=nearest` lets the influence service apply the seed rule)
       - or serve the visual order, marked degraded, when it is down;
    5. leave out the source artist's works if asked, re-rank (fusion.rank_with_influence, the boost scaled by
       c), cut the page;
    6. explain the page: per-aspect similarities, from the part projections the search service scored
       every candidate on (step 2), and the influence paths the distances came with.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

import grpc

from artsearch.artists import artist_key
from artsearch.descriptor_layout import DescriptorLayout
from artsearch.v1 import influence_pb2, search_pb2
from services.gateway.config import GatewayConfig
from services.gateway.downstream import INFLUENCE, Downstream, DownstreamError
from services.gateway.errors import ApiError
from services.gateway.explain import (
    ARTWORK,
    EXPLICIT,
    INFERRED,
    NEAREST,
    NONE,
    VOTE,
    SourceArtist,
    influence_paths,
    result_json,
    style_json,
)
from services.gateway.fusion import (
    Candidate,
    FusionParams,
    RankedCandidate,
    SourceVote,
    SourceVoteParams,
    effective_confidence,
    rank_with_influence,
    vote_source_artist,
)
from services.gateway.query_vectors import QueryVector
from services.gateway.search_params import SearchOptions
from services.gateway.step_timer import Timer
from services.gateway.style_prediction import style_of_candidates
from services.gateway.visual_candidates import (
    VisualCandidates,
    aspect_weights,
    clipped,
    discard_analysis,
    grey_applies,
    grey_weights,
    photo_candidates,
    photo_query_json,
)

log = logging.getLogger(__name__)


# --- the search ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankedAnswer:
    """A search's whole ranked pool, explained one page at a time (`page`): what the search cursors and the
    similar-answer cache keep (services/gateway/answer_cache.py), so a next page, or the same query again,
    costs no encode, search nor influence call."""

    ranked: list[RankedCandidate]
    hits: dict[str, search_pb2.ScoredArtwork]
    layout: DescriptorLayout
    fusion: FusionParams
    paths: dict[str, list[str]]
    # The answer's fields around the page: style_prediction, source_artist, pool, candidates, weights, ...
    head: dict[str, object]
    tail: dict[str, object]
    # Optional services that did not answer: such an answer is served, never cached.
    degraded: list[str]
    # The artwork searched from ("": a picture): a cursor pages the route that made it only.
    origin: str = ""

    def page(self, offset: int, k: int, timings_ms: dict[str, float]) -> dict[str, object]:
        """The answer for results offset .. offset + k of the ranking (without next_cursor)."""
        results = [
            _with_region_match(
                result_json(
                    item,
                    hit.artwork,
                    _aspect_cosines(hit, self.layout),
                    self.fusion,
                    self.paths.get(item.candidate.artist_key),
                ),
                hit,
            )
            for item in self.ranked[offset : offset + k]
            for hit in [self.hits[item.candidate.id]]
        ]
        return {
            "results": results,
            **self.head,
            "k": k,
            "offset": offset,
            **self.tail,
            "timings_ms": timings_ms,
        }


async def rank_search(
    downstream: Downstream,
    query: QueryVector,
    options: SearchOptions,
    config: GatewayConfig,
    timer: Timer,
    request_id: str = "",
) -> RankedAnswer:
    """The whole ranked pool of a search (steps 1-5 of the module docstring); pages are explained from it."""
    try:
        layout = _layout(query)
        with timer.step("search"):
            candidates, query = await photo_candidates(
                downstream, query, layout, options, config.whole_photo_confident_score, request_id
            )
    finally:
        discard_analysis(query)
    grey = grey_applies(query, options, layout)
    weights = aspect_weights(layout, grey_weights(options, grey))
    named = options.source_artist or query.artist
    vote = None if named or options.source_inference != VOTE else _source_vote(candidates, options)
    with timer.step("influence"):
        (distances, degraded), style = await asyncio.gather(
            _influence_or_degrade(
                downstream, candidates, named or (vote.name if vote else None), options, request_id
            ),
            style_of_candidates(
                downstream, query, layout, weights, options, config, candidates, timer, request_id
            ),
        )
    source = _source_artist(options, query, distances, vote)
    pool, hops = _candidate_pool(candidates, distances)
    if options.exclude_same_artist and source.key:
        pool = [c for c in pool if c.artist_key != source.key]
    boost = options.influence_weight if options.rerank and not degraded else 0.0
    fusion = FusionParams(influence_weight=boost, source_confidence=source.applied_confidence)
    influence, analysed = options.influence_weight, query.analysis is not None
    return RankedAnswer(
        ranked=rank_with_influence(pool, source.key, hops, fusion),
        hits={hit.artwork.id: hit for hit in candidates.hits},
        layout=layout,
        fusion=fusion,
        paths=influence_paths(distances, source),
        head={
            "style_prediction": style_json(style.prediction, style.voters, style.searched),
            "source_artist": source.to_json(),
        },
        tail={
            "pool": options.pool,
            "candidates": len(pool),
            "weights": {**{n: round(w, 6) for n, w in weights.items()}, "influence": influence},
            "degraded": degraded,
            "model": {"name": query.model.name, "version": query.model.version},
            "collection": candidates.collection,
            **({"query": photo_query_json(query, options, candidates, layout, grey)} if analysed else {}),
            **({"picture_id": query.picture_id} if query.by_model else {}),
        },
        degraded=degraded,
        origin=query.exclude_ids[0] if query.exclude_ids and not query.by_model else "",
    )


def _layout(query: QueryVector) -> DescriptorLayout:
    try:
        layout = DescriptorLayout.from_model_info(query.model)
    except ValueError as error:
        raise ApiError(502, "encoder_layout", f"the encoder publishes an unusable layout: {error}") from None
    if query.values.shape != (layout.dimension,):
        raise ApiError(
            409,
            "descriptor_mismatch",
            f"the query descriptor has {query.values.size} values, the encoder's layout {layout.dimension} "
            "(the catalogue was built with another model)",
        )
    return layout


def _with_region_match(result: dict[str, object], hit: search_pb2.ScoredArtwork) -> dict[str, object]:
    """With region matching, which part of the artwork gave its visual score: "whole" or "region" (a part
    of it: the photo shows a detail). The aspect scores are the whole picture's either way."""
    scores = result["scores"]
    if hit.HasField("whole_score") and isinstance(scores, dict):
        scores["matched"] = "region" if hit.region_matched else "whole"
    return result


def _aspect_cosines(hit: search_pb2.ScoredArtwork, layout: DescriptorLayout) -> dict[str, float]:
    """Each aspect's cosine from the hit's part projections: a stored descriptor's aspect part has length
    sqrt(default weight) (artsearch.descriptor_layout), so projection / sqrt(w_a) = cos_a. 0 for an aspect
    stored empty (weight 0), or when the engine sent no projections (the artwork was deleted meanwhile)."""
    projections = list(hit.part_projections) or [0.0] * len(layout.aspects)
    return {
        aspect.name: clipped(p / math.sqrt(aspect.default_weight)) if aspect.default_weight > 0 else 0.0
        for aspect, p in zip(layout.aspects, projections, strict=True)
    }


async def _influence_or_degrade(
    downstream: Downstream,
    candidates: VisualCandidates,
    explicit: str | None,
    options: SearchOptions,
    request_id: str,
) -> tuple[influence_pb2.DistancesResponse | None, list[str]]:
    """Influence distances, or None with "influence" marked degraded when that service fails: visual
    results are still worth serving without the re-rank."""
    if not candidates.hits or not (options.rerank or options.exclude_same_artist):
        return None, []
    artists = [hit.artwork.artist for hit in candidates.hits]  # most similar first: inference relies on it
    try:
        return await downstream.distances(explicit or "", artists, request_id, with_paths=True), []
    except DownstreamError as error:
        if error.status == grpc.StatusCode.INVALID_ARGUMENT:
            raise
        log.warning("influence unavailable, serving visual order", extra={"error": str(error)})
        return None, [INFLUENCE]


def _candidate_pool(
    candidates: VisualCandidates, distances: influence_pb2.DistancesResponse | None
) -> tuple[list[Candidate], dict[str, int]]:
    per_hit = list(distances.distances) if distances is not None else []
    pool, hops = [], {}
    for index, (hit, visual) in enumerate(zip(candidates.hits, candidates.visual, strict=True)):
        distance = per_hit[index] if index < len(per_hit) else None
        key = distance.key if distance is not None and distance.known else artist_key(hit.artwork.artist)
        if distance is not None and distance.known and distance.hops >= 0:
            hops[key] = distance.hops
        pool.append(Candidate(hit.artwork.id, key, visual))
    return pool, hops


@dataclass(frozen=True)
class _NamedVote:
    """The source-artist vote with the winner's and runner-up's names as the catalogue writes them."""

    vote: SourceVote
    name: str | None
    runner_up: tuple[str, float] | None


def _source_vote(candidates: VisualCandidates, options: SearchOptions) -> _NamedVote:
    """The similarity-weighted vote of the top candidates, by artist key (artsearch.artists.artist_key)."""
    names: dict[str, str] = {}
    pool = []
    for hit, visual in zip(candidates.hits, candidates.visual, strict=True):
        key = artist_key(hit.artwork.artist) if hit.artwork.artist else ""
        names.setdefault(key, hit.artwork.artist)
        pool.append(Candidate(hit.artwork.id, key, visual))
    params = SourceVoteParams(options.source_top, options.source_temperature, options.source_min_confidence)
    vote = vote_source_artist(pool, params)
    second = vote.runner_up
    return _NamedVote(
        vote,
        names[vote.winner] if vote.winner else None,
        (names[second[0]], second[1]) if second else None,
    )


def _source_artist(
    options: SearchOptions,
    query: QueryVector,
    distances: influence_pb2.DistancesResponse | None,
    vote: _NamedVote | None,
) -> SourceArtist:
    """Who the source artist is, how it was chosen and how sure that is (c = 1 unless voted)."""
    known = distances is not None and distances.source_known
    voted = vote if vote is not None and vote.name else None
    named = options.source_artist or query.artist or (voted.name if voted else None)
    if options.source_artist:
        how, method = EXPLICIT, None
    elif query.artist:
        how, method = ARTWORK, None
    elif voted is not None:
        how, method = INFERRED, VOTE
    elif known and distances.source_inferred:
        how, method = INFERRED, NEAREST
    else:
        how, method = NONE, None
    confidence = voted.vote.confidence if method == VOTE and voted else (0.0 if how == NONE else 1.0)
    name, key = (
        (distances.source.name, distances.source.key)
        if known
        else (named, artist_key(named) if named else None)
    )
    return SourceArtist(
        name,
        key,
        how,
        known,
        method=method,
        confidence=confidence,
        applied_confidence=_applied_confidence(confidence, voted, options) if method == VOTE else confidence,
        runner_up=voted.runner_up if method == VOTE and voted else None,
        voters=voted.vote.voters if method == VOTE and voted else None,
    )


def _applied_confidence(confidence: float, vote: _NamedVote | None, options: SearchOptions) -> float:
    """The c the boost is scaled by: the voted winner's lead over the runner-up (`effective_confidence`)."""
    second = vote.vote.runner_up if vote is not None else None
    return effective_confidence(confidence, options.source_min_confidence, second[1] if second else 0.0)
