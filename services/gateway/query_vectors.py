"""Where a search starts: the query descriptor (`QueryVector`) of an uploaded picture (encoded, or kept from a
moment ago in the picture cache: services/gateway/query_cache.py) or of a stored artwork.

A photo to analyse is encoded in two stages (EncodeInStages): its query is there as soon as the encoder has
described the whole photo, the painting located in it follows (`QueryVector.rest`); the visual search
(services/gateway/visual_candidates.py) starts with the first and waits for the second only when needed."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, replace

import grpc
import numpy as np

from artsearch.v1 import common_pb2, encoder_pb2, search_pb2
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.errors import ApiError
from services.gateway.query_cache import EncodedPictureCache, KeptPicture, PendingAnalysis, picture_id_of
from services.gateway.step_timer import Timer


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
    # meanwhile (visual_candidates.photo_candidates).
    rest: asyncio.Future[QueryVector] | None = None
    # Answered from the whole photo alone: its best match was confident (visual_candidates.photo_candidates).
    whole_photo_confident: bool = False

    @property
    def routing_version(self) -> str:
        """The model version that picks the collection ("": the configured collection)."""
        return self.model.version if self.by_model else ""


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
    whether it is grey-scale (searched with in query.rank_search, per the request's `locate` and `grey`). A
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

    task = asyncio.ensure_future(_analysed_answer(whole, complete, timer))
    task.add_done_callback(_taken)
    # Cancelled before its first step, the task never awaits the call: the call is cancelled with it.
    task.add_done_callback(lambda ended: complete.cancel() if ended.cancelled() else None)
    analysis = PendingAnalysis(task)
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
    (`QueryVector.rest`: cancelled by this search when it has no use for it, which cancels the analysis only
    when no other search of the same picture waits for it: query_cache.PendingAnalysis)."""
    vector = _picture_vector(kept.answer, picture_id, analyse)
    if kept.analysis is None or not analyse:
        return vector
    # Joined now, not when `completed` first runs: a search leaving at once still counts as having been.
    waiter = kept.analysis.join()

    async def completed() -> QueryVector:
        try:
            return _picture_vector(await waiter, picture_id, True)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise
            # Dropped by the searches before this one joined it: this search gets the whole photo alone.
            return vector

    rest = asyncio.ensure_future(completed())
    rest.add_done_callback(lambda _: waiter.cancel())
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
