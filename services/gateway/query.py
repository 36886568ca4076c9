"""One search: encode the image, find visual candidates, re-rank them by influence, explain each result."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

import grpc

from artsearch.artists import artist_key
from artsearch.v1 import influence_pb2, search_pb2
from services.gateway.downstream import INFLUENCE, Downstream, DownstreamError
from services.gateway.fusion import Candidate, FusionParams, RankedCandidate, rank_with_influence

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchParams:
    k: int
    pool: int
    # Explicit source artist; None lets the influence service infer it from the candidates.
    source_artist: str | None = None
    rerank: bool = True
    fusion: FusionParams = field(default_factory=FusionParams)


@dataclass
class SearchOutcome:
    results: list[dict[str, object]]
    source_artist: dict[str, object]
    degraded: list[str]
    timings_ms: dict[str, float]
    model: dict[str, object]


async def search_by_image(
    downstream: Downstream, image: bytes, params: SearchParams, request_id: str = ""
) -> SearchOutcome:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    encoded = await downstream.encode(image, request_id)
    timings["encode"] = _ms_since(started)

    started = time.perf_counter()
    found = await downstream.search(encoded.embeddings[0], params.pool, request_id=request_id)
    timings["search"] = _ms_since(started)

    started = time.perf_counter()
    distances, degraded = await _influence_or_degrade(downstream, found.hits, params, request_id)
    timings["influence"] = _ms_since(started)

    candidates, hops = _candidates_and_hops(found.hits, distances)
    source_key = _source_key(params, distances)
    fusion = params.fusion if params.rerank and not degraded else FusionParams(influence_weight=0.0)
    ranked = rank_with_influence(candidates, source_key, hops, fusion)[: params.k]
    hits_by_id = {hit.artwork.id: hit for hit in found.hits}
    return SearchOutcome(
        results=[_explain(r, hits_by_id[r.candidate.id]) for r in ranked],
        source_artist=_describe_source(params, distances),
        degraded=degraded,
        timings_ms=timings,
        model={"name": encoded.model.name, "version": encoded.model.version},
    )


async def _influence_or_degrade(
    downstream: Downstream,
    hits: list[search_pb2.ScoredArtwork],
    params: SearchParams,
    request_id: str,
) -> tuple[influence_pb2.DistancesResponse | None, list[str]]:
    """Influence distances, or None with "influence" marked degraded when that service fails:
    visual results are still worth serving without the re-rank."""
    if not hits or not params.rerank:
        return None, []
    artists = [hit.artwork.artist for hit in hits]  # most similar first: the inference rule relies on it
    try:
        return await downstream.distances(params.source_artist or "", artists, request_id), []
    except DownstreamError as error:
        if error.status == grpc.StatusCode.INVALID_ARGUMENT:
            raise
        log.warning("influence unavailable, serving visual order", extra={"error": str(error)})
        return None, [INFLUENCE]


def _candidates_and_hops(
    hits: list[search_pb2.ScoredArtwork], distances: influence_pb2.DistancesResponse | None
) -> tuple[list[Candidate], dict[str, int]]:
    per_hit = list(distances.distances) if distances is not None else []
    candidates, hops = [], {}
    for index, hit in enumerate(hits):
        distance = per_hit[index] if index < len(per_hit) else None
        key = distance.key if distance is not None and distance.known else artist_key(hit.artwork.artist)
        if distance is not None and distance.known and distance.hops >= 0:
            hops[key] = distance.hops
        candidates.append(Candidate(hit.artwork.id, key, hit.score))
    return candidates, hops


def _source_key(params: SearchParams, distances: influence_pb2.DistancesResponse | None) -> str | None:
    if distances is not None and distances.source_known:
        return distances.source.key
    if params.source_artist:
        return artist_key(params.source_artist)
    return None


def _describe_source(
    params: SearchParams, distances: influence_pb2.DistancesResponse | None
) -> dict[str, object]:
    known = distances is not None and distances.source_known
    if params.source_artist:
        how = "explicit"
    elif known and distances.source_inferred:
        how = "inferred from the most similar candidate in the influence graph"
    else:
        how = "none"
    return {
        "name": distances.source.name if known else (params.source_artist or None),
        "key": _source_key(params, distances),
        "how": how,
        "in_influence_graph": known,
    }


def _explain(ranked: RankedCandidate, hit: search_pb2.ScoredArtwork) -> dict[str, object]:
    artwork = hit.artwork
    return {
        "id": artwork.id,
        "title": artwork.title,
        "artist": artwork.artist,
        "style": artwork.style or None,
        "genre": artwork.genre or None,
        "year": artwork.year or None,
        "image_uri": artwork.image_uri or None,
        "score": round(ranked.score, 6),
        "scores": {
            "visual": round(ranked.candidate.similarity, 6),
            "influence_hops": ranked.hops,
            "influence_weight": round(ranked.weight, 6),
            "same_artist_rank": ranked.same_artist_rank,
            "final": round(ranked.score, 6),
        },
    }


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
