"""The style vote (artsearch.style_vote) of a query's nearest artworks whose catalogue declared its labels art
styles: among a search's candidates (step 3 of services/gateway/query.py), with a second search for art-style
neighbours when too few of them are; and the style route's own search (POST /v1/predict-style)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import grpc
import numpy as np

from artsearch.descriptor_layout import DescriptorLayout, reweight_query
from artsearch.style_vote import NOT_ART, StylePrediction, labels_are_art, predict_style
from artsearch.v1 import common_pb2, search_pb2
from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.explain import (
    artwork_json,
    style_json,
)
from services.gateway.query_vectors import QueryVector
from services.gateway.search_params import SearchOptions
from services.gateway.step_timer import Timer
from services.gateway.visual_candidates import (
    VisualCandidates,
    clipped,
    located_values,
    payload_filter,
)

log = logging.getLogger(__name__)


async def run_style_prediction(
    downstream: Downstream, query: QueryVector, config: GatewayConfig, timer: Timer, request_id: str = ""
) -> dict[str, object]:
    """The style vote of the nearest catalogue artworks whose labels are art styles (default aspect weights;
    the only filter leaves out catalogues whose labels are categories)."""
    embedding = common_pb2.Embedding(values=query.values.tolist())
    art_only = search_pb2.Filter(exclude_style_labels=NOT_ART)
    with timer.step("search"):
        collection, found = await downstream.in_model_collection(
            query.routing_version,
            lambda name: downstream.search(
                embedding, config.style_neighbours, art_only, request_id=request_id, collection=name
            ),
            request_id,
        )
    neighbours = [
        (hit.artwork.style, float(hit.score)) for hit in found.hits if labels_are_art(hit.artwork.extra)
    ]
    return {
        "style": style_json(predict_style(neighbours), _labelled(neighbours), True),
        "neighbours": [
            {**artwork_json(hit.artwork), "score": round(float(hit.score), 6)} for hit in found.hits
        ],
        "timings_ms": timer.timings_ms,
        "model": {"name": query.model.name, "version": query.model.version},
        "collection": collection,
    }


@dataclass(frozen=True)
class CandidateStyle:
    prediction: StylePrediction
    voters: int  # art-style neighbours that voted
    searched: bool  # found by a second search (too few art-style labels among the candidates)


async def style_of_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    weights: dict[str, float],
    options: SearchOptions,
    config: GatewayConfig,
    candidates: VisualCandidates,
    timer: Timer,
    request_id: str,
) -> CandidateStyle:
    """The style vote of the nearest candidates whose labels are art styles; when fewer than
    `style_min_art_neighbours` of the nearest `style_neighbours` are, of the nearest art-style artworks
    found by a second search (the same query and filters, category catalogues left out). That search
    failing (its deadline, say) leaves the vote to the art-style candidates there are."""
    nearest = list(zip(candidates.hits, candidates.visual, strict=True))[: config.style_neighbours]
    art = [(hit.artwork.style, score) for hit, score in nearest if labels_are_art(hit.artwork.extra)]
    if len(art) >= config.style_min_art_neighbours or not candidates.hits:
        return CandidateStyle(predict_style(art), _labelled(art), False)
    # The descriptor that found the best candidate (the located painting's when its search did), weighted
    # as in that search.
    located = located_values(query, options) if candidates.best_from_located else None
    vector = reweight_query(query.values if located is None else located, layout, candidates.weights)
    length = float(np.linalg.norm(vector))
    art_filter = payload_filter(options, query)
    art_filter.exclude_style_labels.extend(NOT_ART)
    try:
        with timer.step("style_search"):
            found = await downstream.search(
                common_pb2.Embedding(values=vector.tolist()),
                config.style_neighbours,
                art_filter,
                request_id,
                collection=candidates.collection,
            )
    except DownstreamError as error:
        if error.status == grpc.StatusCode.INVALID_ARGUMENT:
            raise
        log.warning(
            "art-style neighbour search failed, voting with the candidates", extra={"error": str(error)}
        )
        return CandidateStyle(predict_style(art), _labelled(art), False)
    hits = [hit for hit in found.hits if labels_are_art(hit.artwork.extra)]
    if options.year_min is not None or options.year_max is not None:
        hits = [hit for hit in hits if hit.artwork.year != 0]  # as the candidates (year 0: unknown)
    art = [(hit.artwork.style, clipped(float(hit.score) * length)) for hit in hits]
    return CandidateStyle(predict_style(art), _labelled(art), True)


def _labelled(neighbours: list[tuple[str, float]]) -> int:
    return sum(1 for label, _ in neighbours if label.strip())
