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
import heapq
import logging
import math
import time
from collections.abc import Awaitable
from dataclasses import dataclass, replace
from functools import partial

import grpc
import numpy as np

from artsearch.artists import artist_key
from artsearch.descriptor_layout import DescriptorLayout, query_weights, reweight_query
from artsearch.style_vote import NOT_ART, StylePrediction, labels_are_art, predict_style
from artsearch.v1 import common_pb2, encoder_pb2, influence_pb2, search_pb2
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
    artwork_json,
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
from services.gateway.query_cache import EncodedPictureCache, KeptPicture, picture_id_of
from services.gateway.search_params import SearchOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueryVector:
    """What a search starts from: a descriptor as the encoder makes them, and the model that made it."""

    values: np.ndarray
    model: encoder_pb2.ModelInfo
    # Artworks never to return (the artwork searched from).
    exclude_ids: tuple[str, ...] = ()
    # The artist of the artwork searched from: the source artist when the client names none.
    artist: str | None = None
    # Made by the encoder for this request: searched in its model's collection (the model alias) when the
    # search service has one. A stored descriptor is searched in the collection it came from.
    by_model: bool = False
    # What the encoder found in the photo (the located painting's descriptor, grey-scale), when asked.
    analysis: encoder_pb2.ImageAnalysis | None = None
    # A picture's id in the gateway's picture cache (query_cache.py), while its encoder answer is kept
    # there: later searches may send it instead of the picture. None when the cache keeps nothing.
    picture_id: str | None = None
    # The encoder's analysis still under way (EncodeInStages: `analysis` is then the whole photo's grey-scale
    # test alone): the same query with the complete analysis, once it comes. The whole photo is searched
    # meanwhile (`_photo_candidates`).
    rest: asyncio.Future[QueryVector] | None = None
    # Answered from the whole photo alone: its best match scored at least WHOLE_PHOTO_CONFIDENT_SCORE.
    whole_photo_confident: bool = False

    @property
    def routing_version(self) -> str:
        """The model version that picks the collection ("": the configured collection)."""
        return self.model.version if self.by_model else ""


@dataclass
class _Candidates:
    hits: list[search_pb2.ScoredArtwork]
    visual: list[float]
    collection: str  # the collection (or alias) searched
    weights: dict[str, float]  # the aspect weights of the search the best candidate came from
    # Merged from the whole photo's and the located painting's searches: the best came from the latter.
    best_from_located: bool = False


class Timer:
    """Milliseconds per step of one request."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    def step(self, name: str) -> _Step:
        return _Step(self.timings_ms, name)


class _Step:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self._timings, self._name = timings, name

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self._timings[self._name] = round((time.perf_counter() - self._started) * 1000, 2)


# --- where a query comes from ----------------------------------------------------------------------------


async def encode_image(
    downstream: Downstream,
    image: bytes,
    timer: Timer,
    cache: EncodedPictureCache,
    request_id: str = "",
    *,
    analyse: bool = False,
) -> QueryVector:
    """The picture's descriptor; with `analyse`, the encoder also locates the painting in it and says
    whether it is grey-scale (searched with in `run_search`, per the request's `locate` and `grey`). A
    picture sent a moment ago is not encoded again (`cache`: services/gateway/query_cache.py)."""
    key = await cache.key_of(image, analyse)
    kept = cache.get(key, downstream.known_model_version())
    if kept is not None:
        return _kept_vector(kept, picture_id_of(key), analyse)
    if analyse:
        return await _encode_in_stages(downstream, image, timer, cache, key, request_id)
    with timer.step("encode"):
        encoded = await downstream.encode(image, request_id)
    return _picture_vector(encoded, picture_id_of(key) if cache.put(key, encoded) else None, analyse)


async def _encode_in_stages(
    downstream: Downstream,
    image: bytes,
    timer: Timer,
    cache: EncodedPictureCache,
    key: bytes,
    request_id: str,
) -> QueryVector:
    """The photo's query as soon as the encoder has described the whole photo, its analysis to follow
    (`QueryVector.rest`; kept in `cache` once complete). An encoder without EncodeInStages (a release
    before it, during a rolling upgrade) answers one analysed Encode instead."""
    try:
        with timer.step("encode"):
            whole, complete = await downstream.encode_in_stages(image, request_id)
    except DownstreamError as error:
        if error.status != grpc.StatusCode.UNIMPLEMENTED:
            raise
        with timer.step("encode"):
            encoded = await downstream.encode(image, request_id, analyse=True)
        return _picture_vector(encoded, picture_id_of(key) if cache.put(key, encoded) else None, True)

    analysis = asyncio.ensure_future(_analysed_answer(whole, complete, timer))
    analysis.add_done_callback(_taken)
    kept = cache.put_pending(key, whole, analysis)
    return _kept_vector(KeptPicture(whole, analysis), picture_id_of(key) if kept else None, True)


async def _analysed_answer(
    whole: encoder_pb2.EncodeResponse, complete: Awaitable[encoder_pb2.EncodeResponse], timer: Timer
) -> encoder_pb2.EncodeResponse:
    """The photo's encoder answer as one analysed Encode gives it, from its two stages."""
    with timer.step("analyse"):
        analyses = (await complete).analyses
    return encoder_pb2.EncodeResponse(embeddings=whole.embeddings, model=whole.model, analyses=analyses)


def _taken(done: asyncio.Future[object]) -> None:
    """Takes an ended task's error: one nobody waited for (a whole photo matched with confidence) is not
    reported by asyncio as never retrieved; whoever waits for it handles it."""
    if not done.cancelled():
        done.exception()


def kept_picture(
    downstream: Downstream, picture_id: str, cache: EncodedPictureCache, *, analyse: bool = False
) -> QueryVector:
    """The descriptor of a picture sent a moment ago, by the `picture_id` its search answered: no upload,
    decode nor encode. 400 ApiError for a malformed id, 410 `picture_expired` when no longer kept (the
    client sends the picture again)."""
    kept = cache.by_picture_id(picture_id, analyse, downstream.known_model_version())
    return _kept_vector(kept, picture_id, analyse)


def _kept_vector(kept: KeptPicture, picture_id: str | None, analyse: bool) -> QueryVector:
    """The query of a kept (or just made) encoder answer; with its analysis under way, that analysis to come
    (`QueryVector.rest`: waited for by this search without being cancelled by it, since other searches of
    the same picture and the cache wait for it too)."""
    vector = _picture_vector(kept.answer, picture_id, analyse)
    if kept.analysis is None or not analyse:
        return vector

    async def completed() -> QueryVector:
        return _picture_vector(await asyncio.shield(kept.analysis), picture_id, True)

    rest = asyncio.ensure_future(completed())
    rest.add_done_callback(_taken)
    return replace(vector, rest=rest)


def _picture_vector(
    encoded: encoder_pb2.EncodeResponse, picture_id: str | None, analyse: bool
) -> QueryVector:
    """The query of an encoded picture; an analysis is used only when the search asked for one (an
    analysed answer kept in the cache also serves a search with locate and grey off, as if not analysed)."""
    values = np.asarray(encoded.embeddings[0].values, dtype=np.float32)
    analysis = encoded.analyses[0] if encoded.analyses and analyse else None
    return QueryVector(values, encoded.model, by_model=True, analysis=analysis, picture_id=picture_id)


async def stored_artwork(downstream: Downstream, artwork_id: str, request_id: str = "") -> common_pb2.Artwork:
    reply = await downstream.get_artworks([artwork_id], request_id=request_id)
    return _only_item(reply, artwork_id).artwork


def _only_item(reply: search_pb2.GetResponse, artwork_id: str) -> search_pb2.IndexedArtwork:
    """The one artwork a Get asked for; 404 ApiError when the catalogue has no such id."""
    if not reply.items:
        raise ApiError(404, "not_found", f"no artwork with id {artwork_id!r}")
    return reply.items[0]


async def stored_vector(
    downstream: Downstream, artwork_id: str, timer: Timer, request_id: str = ""
) -> QueryVector:
    """The stored descriptor of a catalogue artwork (no re-encoding); 404 ApiError when unknown."""
    with timer.step("lookup"):
        reply, model = await asyncio.gather(
            downstream.get_artworks([artwork_id], with_embeddings=True, request_id=request_id),
            downstream.model_info(request_id),
        )
    item = _only_item(reply, artwork_id)
    values = np.asarray(item.embedding.values, dtype=np.float32)
    return QueryVector(values, model, exclude_ids=(artwork_id,), artist=item.artwork.artist or None)


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


async def run_search(
    downstream: Downstream,
    query: QueryVector,
    options: SearchOptions,
    config: GatewayConfig,
    timer: Timer,
    request_id: str = "",
) -> dict[str, object]:
    """One page of the search's answer (`rank_search`, then `RankedAnswer.page`)."""
    ranked = await rank_search(downstream, query, options, config, timer, request_id)
    return ranked.page(options.offset, options.k, timer.timings_ms)


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
            candidates, query = await _photo_candidates(
                downstream, query, layout, options, config.whole_photo_confident_score, request_id
            )
    finally:
        _discard_analysis(query)
    grey = _grey_applies(query, options, layout)
    weights = _aspect_weights(layout, _grey_weights(options, grey))
    named = options.source_artist or query.artist
    vote = None if named or options.source_inference != VOTE else _source_vote(candidates, options)
    with timer.step("influence"):
        (distances, degraded), style = await asyncio.gather(
            _influence_or_degrade(
                downstream, candidates, named or (vote.name if vote else None), options, request_id
            ),
            _style_of_candidates(
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
            **({"query": _query_json(query, options, candidates, layout, grey)} if analysed else {}),
            **({"picture_id": query.picture_id} if query.by_model else {}),
        },
        degraded=degraded,
        origin=query.exclude_ids[0] if query.exclude_ids and not query.by_model else "",
    )


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
class _Style:
    prediction: StylePrediction
    voters: int  # art-style neighbours that voted
    searched: bool  # found by a second search (too few art-style labels among the candidates)


async def _style_of_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    weights: dict[str, float],
    options: SearchOptions,
    config: GatewayConfig,
    candidates: _Candidates,
    timer: Timer,
    request_id: str,
) -> _Style:
    """The style vote of the nearest candidates whose labels are art styles; when fewer than
    `style_min_art_neighbours` of the nearest `style_neighbours` are, of the nearest art-style artworks
    found by a second search (the same query and filters, category catalogues left out). That search
    failing (its deadline, say) leaves the vote to the art-style candidates there are."""
    nearest = list(zip(candidates.hits, candidates.visual, strict=True))[: config.style_neighbours]
    art = [(hit.artwork.style, score) for hit, score in nearest if labels_are_art(hit.artwork.extra)]
    if len(art) >= config.style_min_art_neighbours or not candidates.hits:
        return _Style(predict_style(art), _labelled(art), False)
    # The descriptor that found the best candidate (the located painting's when its search did), weighted
    # as in that search.
    located = _located_values(query, options) if candidates.best_from_located else None
    vector = reweight_query(query.values if located is None else located, layout, candidates.weights)
    length = float(np.linalg.norm(vector))
    art_filter = _filter(options, query)
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
        return _Style(predict_style(art), _labelled(art), False)
    hits = [hit for hit in found.hits if labels_are_art(hit.artwork.extra)]
    if options.year_min is not None or options.year_max is not None:
        hits = [hit for hit in hits if hit.artwork.year != 0]  # as the candidates (year 0: unknown)
    art = [(hit.artwork.style, _clipped(float(hit.score) * length)) for hit in hits]
    return _Style(predict_style(art), _labelled(art), True)


def _labelled(neighbours: list[tuple[str, float]]) -> int:
    return sum(1 for label, _ in neighbours if label.strip())


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


def _aspect_weights(layout: DescriptorLayout, given: dict[str, float]) -> dict[str, float]:
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


def _grey_applies(
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


def _grey_weights(options: SearchOptions, grey: bool) -> dict[str, float]:
    return {**options.aspect_weights, COLOUR: 0.0} if grey else options.aspect_weights


def _search_weights(
    query: QueryVector, options: SearchOptions, layout: DescriptorLayout, *, whole_photo: bool = False
) -> dict[str, float]:
    """The aspect weights one search of the photo uses: colour left out where `_grey_applies`."""
    grey = _grey_applies(query, options, layout, whole_photo=whole_photo)
    return _aspect_weights(layout, _grey_weights(options, grey))


def _located_values(query: QueryVector, options: SearchOptions) -> np.ndarray | None:
    """The located painting's descriptor, when `locate=auto` and the encoder found one with confidence."""
    analysis = query.analysis
    if options.locate != "auto" or analysis is None or not analysis.HasField("located_embedding"):
        return None
    if analysis.confidence < LOCATE_MIN_CONFIDENCE:
        return None
    return np.asarray(analysis.located_embedding.values, dtype=np.float32)


async def _photo_candidates(
    downstream: Downstream,
    query: QueryVector,
    layout: DescriptorLayout,
    options: SearchOptions,
    confident_score: float,
    request_id: str,
) -> tuple[_Candidates, QueryVector]:
    """The visual candidates of the photo, and the query with what of the encoder's analysis was used.

    The whole photo is searched as soon as its descriptor is there (its analysis may still be under way:
    `QueryVector.rest`), first by the artworks alone, then, unless that found a match scoring at least
    `confident_score`, by their regions too (a detail of a painting matches one of its regions, not the
    whole). A confident match is the answer: the painting located in the photo is neither waited for nor
    searched (`_whole_photo_only`; a clean photo of a painting, a book page the painting fills), and the
    costlier region matching is spared. Otherwise the located painting's crop is searched too and the
    two merged per artwork (`_merged`). Measured in docs/evaluation.md ("Latency")."""
    whole_weights = _search_weights(query, options, layout, whole_photo=True)
    search_whole = partial(_visual_candidates, downstream, query, layout, whole_weights, options, request_id)
    found = await search_whole(regions=False)
    if _confident(found, confident_score):
        return found, _whole_photo_only(query)
    if _matches_regions(query, options):
        found = await search_whole()
        if _confident(found, confident_score):
            return found, _whole_photo_only(query)
    query = await _completed(query)
    located = _located_values(query, options)
    if located is None or located.shape != query.values.shape:
        return found, query
    located_weights = _search_weights(query, options, layout)
    try:
        crop = await _visual_candidates(
            downstream, query, layout, located_weights, options, request_id, values=located
        )
    except Exception as error:
        # The located painting's search is an improvement, not a requirement: the whole photo's answers.
        log.warning("search with the located painting failed; whole photo only", extra={"error": str(error)})
        return found, query
    return _merged(found, crop, options.pool), query


def _matches_regions(query: QueryVector, options: SearchOptions) -> bool:
    """Whether the photo's own search also matches the artworks' regions: a photo (not a stored artwork's
    descriptor) may show a detail; `regions=off` turns it off."""
    return query.by_model and options.regions == "auto"


def _confident(candidates: _Candidates, score: float) -> bool:
    """Whether the best match scores at least `score` and leads the next artwork by CONFIDENT_LEAD: two
    paintings of one hand that the photo matches about as well (a detail of a Bruegel at 0.708 and 0.703)
    are left to the costlier searches."""
    best, second = [*heapq.nlargest(2, candidates.visual), -1.0, -1.0][:2]
    return best >= score and best - second >= CONFIDENT_LEAD


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
    # The analysis under way goes on: complete, it is kept for the picture's next searches (picture_id).
    return replace(query, analysis=analysis, rest=None, whole_photo_confident=True)


def _discard_analysis(query: QueryVector) -> None:
    """A search that failed before it needed its photo's analysis stops waiting for it (the analysis itself
    goes on for the picture cache: `_kept_vector`)."""
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


def _merged(whole: _Candidates, located: _Candidates, pool: int) -> _Candidates:
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
    return _Candidates(
        [hit for _, hit, _ in ranked],
        [score for score, _, _ in ranked],
        whole.collection,
        (located if best_from_located else whole).weights,
        best_from_located=best_from_located,
    )


def _with_region_match(result: dict[str, object], hit: search_pb2.ScoredArtwork) -> dict[str, object]:
    """With region matching, which part of the artwork gave its visual score: "whole" or "region" (a part
    of it: the photo shows a detail). The aspect scores are the whole picture's either way."""
    scores = result["scores"]
    if hit.HasField("whole_score") and isinstance(scores, dict):
        scores["matched"] = "region" if hit.region_matched else "whole"
    return result


def _query_json(
    query: QueryVector, options: SearchOptions, candidates: _Candidates, layout: DescriptorLayout, grey: bool
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
        "searched_located": _located_values(query, options) is not None,
        "whole_photo_confident": query.whole_photo_confident,
        "best_from_located": candidates.best_from_located,
        "grey": options.grey,
        "greyscale": analysis.greyscale,
        "photo_greyscale": analysis.photo_greyscale,
        "chroma_spread": round(analysis.chroma_spread, 3),
        "colour_dropped": grey,
        "photo_colour_dropped": _grey_applies(query, options, layout, whole_photo=True),
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
) -> _Candidates:
    """The `pool` artworks most similar to the query's descriptor (or to `values`, another descriptor of
    the same picture: the located painting's). Only the photo as taken is matched against the artworks'
    regions too (unless `regions` is off: `_photo_candidates` tries without first): it may show a detail,
    while a located painting is a whole picture, and region matching is the costlier search
    (docs/search.md, "Regions")."""
    match_regions = regions and values is None and _matches_regions(query, options)
    values = query.values if values is None else values
    vector = reweight_query(values, layout, weights)
    # The engine scores by cosine (it divides by the query's length); its length brings back Σ v_a cos_a.
    length = float(np.linalg.norm(vector))
    embedding = common_pb2.Embedding(values=vector.tolist())
    search_filter = _filter(options, query)
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
    visual = [_clipped(float(hit.score) * length) for hit in hits]
    return _Candidates(hits, visual, collection, weights)


def _part_query(values: np.ndarray, weights: dict[str, float]) -> common_pb2.Embedding | None:
    """What the aspects are explained against: the re-weighted query keeps every aspect's direction unless
    its weight is 0; then the unweighted descriptor travels too, so that aspect is still explained."""
    if all(weight > 0 for weight in weights.values()):
        return None
    return common_pb2.Embedding(values=values.tolist())


def _aspect_cosines(hit: search_pb2.ScoredArtwork, layout: DescriptorLayout) -> dict[str, float]:
    """Each aspect's cosine from the hit's part projections: a stored descriptor's aspect part has length
    sqrt(default weight) (artsearch.descriptor_layout), so projection / sqrt(w_a) = cos_a. 0 for an aspect
    stored empty (weight 0), or when the engine sent no projections (the artwork was deleted meanwhile)."""
    projections = list(hit.part_projections) or [0.0] * len(layout.aspects)
    return {
        aspect.name: _clipped(p / math.sqrt(aspect.default_weight)) if aspect.default_weight > 0 else 0.0
        for aspect, p in zip(layout.aspects, projections, strict=True)
    }


def _clipped(similarity: float) -> float:
    # Stored vectors are kept at reduced precision, so an exact match can come out at 1.00003.
    return min(1.0, max(-1.0, similarity))


def _filter(options: SearchOptions, query: QueryVector) -> search_pb2.Filter:
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


async def _influence_or_degrade(
    downstream: Downstream,
    candidates: _Candidates,
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
    candidates: _Candidates, distances: influence_pb2.DistancesResponse | None
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


def _source_vote(candidates: _Candidates, options: SearchOptions) -> _NamedVote:
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
