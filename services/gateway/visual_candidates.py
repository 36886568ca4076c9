"""The visual candidates of a query: the `pool` artworks most similar to its descriptor under the client's
aspect weights and filters (steps 1-2 of services/gateway/query.py).

For a visitor's photo, also what the encoder found in it: the whole photo is searched first, and unless that
finds a confident match, the painting located in the photo as well, then (unless that one's match is
confident) the whole photo against the artworks' regions too (it may show a detail); the searches are
merged per artwork. A grey-scale photo (or located painting) leaves the colour aspect out. Measured in
docs/evaluation.md ("Finding the artwork in a visitor's photo")."""

from __future__ import annotations

import heapq
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from functools import partial

import numpy as np

from artsearch.descriptor_layout import DescriptorLayout, query_weights, reweight_query
from artsearch.v1 import common_pb2, encoder_pb2, search_pb2
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.errors import ApiError
from services.gateway.query_vectors import QueryVector
from services.gateway.search_params import SearchOptions

log = logging.getLogger(__name__)


@dataclass
class VisualCandidates:
    """The artworks a query's search found, best first, each with its visual similarity (the weighted sum
    of its aspect cosines, `visual`), and where and how they were searched."""

    hits: list[search_pb2.ScoredArtwork]
    visual: list[float]
    collection: str  # the collection (or alias) searched
    weights: dict[str, float]  # the aspect weights of the search the best candidate came from
    # Merged from the whole photo's and the located painting's searches: the best came from the latter.
    best_from_located: bool = False


def aspect_weights(layout: DescriptorLayout, given: dict[str, float]) -> dict[str, float]:
    """The client's aspect weights over the encoder's defaults, normalised to sum 1; 422 when unusable."""
    unknown = sorted(set(given) - set(layout.names))
    if any(given[name] > 0 for name in unknown):
        raise ApiError(
            422, "invalid_parameter", f"the encoder has no aspect {unknown}; it has {list(layout.names)}"
        )
    wanted = {**layout.default_weights, **{n: w for n, w in given.items() if n in layout.names}}
    try:
        return query_weights(layout, wanted)
    except ValueError as error:
        raise ApiError(422, "invalid_parameter", f"aspect weights: {error}") from None


# --- a visitor's photo: the located painting, grey-scale ---------------------------------------------

COLOUR = "colour"
# The located crop's search is used only when the encoder is at least this sure of the painting it found.
LOCATE_MIN_CONFIDENCE = 0.5
# A whole photo's best match is confident (WHOLE_PHOTO_CONFIDENT_SCORE) only when it leads the next artwork by
# this much. Measured on the development seeds (1,080 photos, 6,066 artworks): 0.02 leaves no wrong match
# confident (two without it) and 610 of the 617 photos confident at 0.7 still so.
CONFIDENT_LEAD = 0.02
# The whole photo's first search (the artworks alone) also answers when its best match leads the next by
# CLEAR_LEAD while scoring up to CLEAR_LEAD_ALLOWANCE below the confident score: a photo matched that clearly
# is the painting's whole, however the light or a phone's bezel lowered its similarity. Measured on 3,564
# photos (development, report and seeds 7001-7003; 6,066 artworks): 164 more photos answered from the whole
# photo, none wrong; a lead of 0.065 let a tiny detail's wrong match through, a lead of 0.04 several
# (docs/evaluation.md, "Clear leads").
CLEAR_LEAD = 0.07
CLEAR_LEAD_ALLOWANCE = 0.05


def grey_applies(
    query: QueryVector, options: SearchOptions, layout: DescriptorLayout, *, whole_photo: bool = False
) -> bool:
    """A grey-scale photo leaves the colour aspect out (`grey=auto`), unless the client set its weight: a
    grey print's colour histogram matches grey artworks, not the painting it shows. The located painting
    (or a photo without one) by its own test, the whole photo by the photo's (`whole_photo`): a grey print
    on a coloured wall."""
    analysis = query.analysis
    return (
        options.grey == "auto"
        and analysis is not None
        and (analysis.photo_greyscale if whole_photo else analysis.greyscale)
        and COLOUR in layout.names
        and COLOUR not in options.aspect_weights
    )


def grey_weights(options: SearchOptions, grey: bool) -> dict[str, float]:
    return {**options.aspect_weights, COLOUR: 0.0} if grey else options.aspect_weights


def _search_weights(
    query: QueryVector, options: SearchOptions, layout: DescriptorLayout, *, whole_photo: bool = False
) -> dict[str, float]:
    """The aspect weights one search of the photo uses: colour left out where `grey_applies`."""
    grey = grey_applies(query, options, layout, whole_photo=whole_photo)
    return aspect_weights(layout, grey_weights(options, grey))


def located_values(query: QueryVector, options: SearchOptions) -> np.ndarray | None:
    """The located painting's descriptor, when `locate=auto` and the encoder found one with confidence."""
    analysis = query.analysis
    if options.locate != "auto" or analysis is None or not analysis.HasField("located_embedding"):
        return None
    if analysis.confidence < LOCATE_MIN_CONFIDENCE:
        return None
    return np.asarray(analysis.located_embedding.values, dtype=np.float32)


async def photo_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    options: SearchOptions,
    confident_score: float,
    request_id: str,
) -> tuple[VisualCandidates, QueryVector]:
    """The visual candidates of the photo, and the query with what of the encoder's analysis was used.

    The whole photo is searched by the artworks alone as soon as its descriptor is there (its analysis may
    still be under way: `QueryVector.rest`). A match scoring at least `confident_score` (and leading the
    next) is the answer: the painting located in the photo is neither waited for nor searched
    (`_whole_photo_only`; a clean photo of a painting, a book page the painting fills). Otherwise the
    analysis is waited for and the located painting's crop searched; its confident match is the answer,
    merged with the whole photo's (`_merged`). Only then is the whole photo matched against the artworks'
    regions too (a detail of a painting matches one of its regions, not the whole: the costlier search,
    which a located painting seldom needs), a confident match again the answer from the whole photo alone,
    else merged with the crop's. Measured in docs/gateway.md ("Staged answers")."""
    whole_weights = _search_weights(query, options, layout, whole_photo=True)
    search_whole = partial(_visual_candidates, downstream, query, layout, whole_weights, options, request_id)
    found = await search_whole(regions=False)
    if _confident(found, confident_score) or _clearly_leading(found, confident_score):
        return found, _whole_photo_only(query)
    query = await _completed(query)
    crop = await _located_candidates(downstream, query, layout, options, request_id)
    if crop is not None and _confident(crop, confident_score):
        # The painting located in the photo matched with confidence: the whole photo's region matching (for
        # a photo of a detail) is spared; run beside the analysis it slowed both (docs/evaluation.md).
        return _merged(found, crop, options.pool), query
    if _matches_regions(query, options):
        found = await search_whole()
        if _confident(found, confident_score):
            return found, _whole_photo_only(query)
    return (found if crop is None else _merged(found, crop, options.pool)), query


async def _located_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    options: SearchOptions,
    request_id: str,
) -> VisualCandidates | None:
    """The candidates of the painting located in the photo (its complete analysis); None when none was
    located with confidence or its search failed (the whole photo's answers stand)."""
    located = located_values(query, options)
    if located is None or located.shape != query.values.shape:
        return None
    located_weights = _search_weights(query, options, layout)
    try:
        return await _visual_candidates(
            downstream, query, layout, located_weights, options, request_id, values=located
        )
    except Exception as error:
        # The located painting's search is an improvement, not a requirement: the whole photo's answers.
        log.warning("search with the located painting failed; whole photo only", extra={"error": str(error)})
        return None


def _matches_regions(query: QueryVector, options: SearchOptions) -> bool:
    """Whether the photo's own search also matches the artworks' regions: a photo (not a stored artwork's
    descriptor) may show a detail; `regions=off` turns it off."""
    return query.by_model and options.regions == "auto"


def _confident(candidates: VisualCandidates, score: float) -> bool:
    """Whether the best match scores at least `score` and leads the next artwork by CONFIDENT_LEAD: two
    paintings of one hand that the photo matches about as well (a detail of a Bruegel at 0.708 and 0.703)
    are left to the costlier searches."""
    best, second = _best_two(candidates)
    return best >= score and best - second >= CONFIDENT_LEAD


def _clearly_leading(candidates: VisualCandidates, score: float) -> bool:
    """Whether the best match scores at least `score` - CLEAR_LEAD_ALLOWANCE and leads the next artwork by
    CLEAR_LEAD: for the whole photo's first search alone (a crop or a region, a part of a picture, was not
    measured so)."""
    best, second = _best_two(candidates)
    return best >= score - CLEAR_LEAD_ALLOWANCE and best - second >= CLEAR_LEAD


def _best_two(candidates: VisualCandidates) -> tuple[float, float]:
    """The two best visual similarities (-1 for a missing one)."""
    best, second = [*heapq.nlargest(2, candidates.visual), -1.0, -1.0][:2]
    return best, second


def _whole_photo_only(query: QueryVector) -> QueryVector:
    """The query answered from the whole photo alone: its analysis as far as the whole photo goes (the same
    whether the painting's was known yet or not, so that the same photo is explained the same way)."""
    analysis = query.analysis
    if analysis is not None:
        analysis = encoder_pb2.ImageAnalysis(
            greyscale=analysis.photo_greyscale,
            chroma_spread=analysis.photo_chroma_spread,
            photo_greyscale=analysis.photo_greyscale,
            photo_chroma_spread=analysis.photo_chroma_spread,
        )
    # The analysis under way is not needed: dropped, unless another search of the photo waits for it.
    discard_analysis(query)
    return replace(query, analysis=analysis, rest=None, whole_photo_confident=True)


def discard_analysis(query: QueryVector) -> None:
    """A search answered (or failed) without its photo's analysis stops waiting for it; the encoder's
    analysis is cancelled when no other search of the photo waits for it (query_cache.PendingAnalysis)."""
    if query.rest is not None:
        query.rest.cancel()


async def _completed(query: QueryVector) -> QueryVector:
    """The query with the photo's complete analysis; without it (the encoder failed after sending the whole
    photo's descriptor: its deadline, a crash), the whole photo alone, as with `locate=off`."""
    if query.rest is None:
        return query
    try:
        return await query.rest
    except DownstreamError as error:
        log.warning("the photo's analysis failed; whole photo only", extra={"error": str(error)})
        return replace(query, rest=None)


def _merged(whole: VisualCandidates, located: VisualCandidates, pool: int) -> VisualCandidates:
    """Per artwork the better visual similarity of the two searches, with that search's hit (its aspect
    similarities are explained from the query that matched), best first, `pool` at most. Both descriptors
    live in the same space under the same weights: a wall photo's crop matches its painting far better than
    the whole photo does, a clean photo's crop about as well, and a wrong crop rarely beats the whole
    photo's best match, so the maximum keeps what the right query found (docs/gateway.md)."""
    best: dict[str, tuple[float, search_pb2.ScoredArtwork, bool]] = {}
    for from_crop, candidates in ((False, whole), (True, located)):
        for hit, score in zip(candidates.hits, candidates.visual, strict=True):
            kept = best.get(hit.artwork.id)
            if kept is None or score > kept[0]:
                best[hit.artwork.id] = (score, hit, from_crop)
    ranked = sorted(best.values(), key=lambda entry: entry[0], reverse=True)[:pool]
    best_from_located = bool(ranked) and ranked[0][2]
    return VisualCandidates(
        [hit for _, hit, _ in ranked],
        [score for score, _, _ in ranked],
        whole.collection,
        (located if best_from_located else whole).weights,
        best_from_located=best_from_located,
    )


def photo_query_json(
    query: QueryVector,
    options: SearchOptions,
    candidates: VisualCandidates,
    layout: DescriptorLayout,
    grey: bool,
) -> dict[str, object]:
    """What was done with the photo: the painting located (corners as fractions of the upright photo,
    top-left first, clockwise; confidence; its share of the photo), whether the best match came from it,
    whether the photo is grey-scale and its colour aspect was left out."""
    analysis = query.analysis
    assert analysis is not None
    located = None
    if analysis.located:
        corners = list(analysis.corners)
        located = {
            "corners": [[round(corners[i], 4), round(corners[i + 1], 4)] for i in range(0, len(corners), 2)],
            "confidence": round(analysis.confidence, 4),
            "area_fraction": round(analysis.area_fraction, 4),
        }
    return {
        "locate": options.locate,
        "located": located,
        "searched_located": located_values(query, options) is not None,
        "whole_photo_confident": query.whole_photo_confident,
        "best_from_located": candidates.best_from_located,
        "grey": options.grey,
        "greyscale": analysis.greyscale,
        "photo_greyscale": analysis.photo_greyscale,
        "chroma_spread": round(analysis.chroma_spread, 3),
        "colour_dropped": grey,
        "photo_colour_dropped": grey_applies(query, options, layout, whole_photo=True),
    }


async def _visual_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    weights: dict[str, float],
    options: SearchOptions,
    request_id: str,
    values: np.ndarray | None = None,
    *,
    regions: bool = True,
) -> VisualCandidates:
    """The `pool` artworks most similar to the query's descriptor (or to `values`, another descriptor of
    the same picture: the located painting's). Only the photo as taken is matched against the artworks'
    regions too (unless `regions` is off: `photo_candidates` tries without first): it may show a detail,
    while a located painting is a whole picture, and region matching is the costlier search
    (docs/search.md, "Regions")."""
    match_regions = regions and values is None and _matches_regions(query, options)
    values = query.values if values is None else values
    vector = reweight_query(values, layout, weights)
    # The engine scores by cosine (it divides by the query's length); its length brings back Σ v_a cos_a.
    length = float(np.linalg.norm(vector))
    embedding = common_pb2.Embedding(values=vector.tolist())
    search_filter = payload_filter(options, query)
    parts = [(aspect.offset, aspect.length) for aspect in layout.aspects]
    part_query = _part_query(values, weights)

    def search_in(collection: str) -> Awaitable[search_pb2.SearchResponse]:
        return downstream.search(
            embedding,
            options.pool,
            search_filter,
            request_id,
            parts=parts,
            part_query=part_query,
            collection=collection,
            # A photo (not a stored artwork's descriptor) may show a detail: match the regions too.
            match_regions=match_regions,
        )

    collection, found = await downstream.in_model_collection(query.routing_version, search_in, request_id)
    hits = list(found.hits)
    if options.year_min is not None or options.year_max is not None:
        # Year 0 means unknown: the engine's range would let it through an upper bound.
        hits = [hit for hit in hits if hit.artwork.year != 0]
    visual = [clipped(float(hit.score) * length) for hit in hits]
    return VisualCandidates(hits, visual, collection, weights)


def _part_query(values: np.ndarray, weights: dict[str, float]) -> common_pb2.Embedding | None:
    """What the aspects are explained against: the re-weighted query keeps every aspect's direction unless
    its weight is 0; then the unweighted descriptor travels too, so that aspect is still explained."""
    if all(weight > 0 for weight in weights.values()):
        return None
    return common_pb2.Embedding(values=values.tolist())


def clipped(similarity: float) -> float:
    # Stored vectors are kept at reduced precision, so an exact match can come out at 1.00003.
    return min(1.0, max(-1.0, similarity))


def payload_filter(options: SearchOptions, query: QueryVector) -> search_pb2.Filter:
    search_filter = search_pb2.Filter(
        artists=options.filter_artist,
        styles=options.filter_style,
        genres=options.filter_genre,
        exclude_ids=query.exclude_ids,
    )
    if options.year_min is not None:
        search_filter.year_min = options.year_min
    if options.year_max is not None:
        search_filter.year_max = options.year_max
    return search_filter
