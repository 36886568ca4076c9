"""The two ways a search starts, shared by the single routes (POST /v1/search, GET .../similar) and the batch
(POST /v1/search/batch), so that a query of a batch is answered exactly as its own route answers it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from services.gateway.answer_cache import AnswerCaches, similar_key
from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream
from services.gateway.query import RankedAnswer, rank_search
from services.gateway.query_cache import EncodedPictureCache
from services.gateway.query_vectors import QueryVector, encode_image, kept_picture, stored_vector
from services.gateway.search_params import SearchOptions
from services.gateway.step_timer import Timer


async def picture_query(
    downstream: Downstream,
    cache: EncodedPictureCache,
    options: SearchOptions,
    timer: Timer,
    request_id: str,
    *,
    picture_id: str | None,
    picture: Callable[[], Awaitable[bytes]],
) -> QueryVector:
    """The query of a picture search: the kept descriptors `picture_id` names (no upload, decode nor encode),
    or the picture (`picture()`, read only then) encoded. The encoder analyses the photo (locates the
    painting, tells grey-scale) unless `locate` and `grey` are both off."""
    analyse = "auto" in (options.locate, options.grey)
    if picture_id is not None:
        return kept_picture(downstream, picture_id, cache, analyse=analyse)
    return await encode_image(downstream, await picture(), timer, cache, request_id, analyse=analyse)


async def similar_ranking(
    downstream: Downstream,
    answers: AnswerCaches,
    config: GatewayConfig,
    artwork_id: str,
    options: SearchOptions,
    timer: Timer,
    request_id: str,
    generation: int,
) -> RankedAnswer:
    """The ranked artworks related to a stored one, from the similar cache when the same query was answered
    a moment ago (its key holds the encoder's model as last seen: a redeployed model is another key); a new
    ranking is kept under the catalogue `generation` read before the search began."""
    model = await downstream.model_info(request_id)
    key = similar_key(artwork_id, options, config.collection, model.version)
    ranked = answers.similar_answer(key)
    if ranked is None:
        query = await stored_vector(downstream, artwork_id, timer, request_id)
        ranked = await rank_search(downstream, query, options, config, timer, request_id)
        answers.keep_similar(key, ranked, generation)
    return ranked
