"""/v1/artworks/{artwork_id}/similar: artworks related to one already in the catalogue."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from artsearch.jsonlog import request_id_var
from services.gateway.answer_cache import AnswerCaches
from services.gateway.config import GatewayConfig
from services.gateway.routes import api_router
from services.gateway.routes.docs import (
    ARTWORK_ID,
    CURSOR_DOC,
    CURSOR_ERRORS,
    SEARCH_ANSWER,
    STORED_ROUTE_ERRORS,
)
from services.gateway.search_answers import similar_ranking
from services.gateway.search_params import SearchOptions, checked, search_query
from services.gateway.step_timer import Timer


def router(config: GatewayConfig) -> APIRouter:
    """The similar route; its query parameters are bounded by `config` (MAX_K, MAX_POOL, ...)."""
    routes = api_router(tags=["search"])
    options_from_query = Annotated[SearchOptions, Depends(search_query(config))]

    @routes.get(
        "/v1/artworks/{artwork_id}/similar",
        responses={200: SEARCH_ANSWER, **STORED_ROUTE_ERRORS, **CURSOR_ERRORS},
    )
    async def similar(
        request: Request,
        artwork_id: ARTWORK_ID,
        options: options_from_query,
        cursor: Annotated[str | None, Query(min_length=1, description=CURSOR_DOC)] = None,
    ) -> JSONResponse:
        """Artworks related to one already in the catalogue, from its stored descriptor (no re-encoding);
        the artwork itself is left out and its artist is the source artist unless `source_artist` is set.
        The ranked answer is kept a while (SIMILAR_CACHE_TTL_S; until the next catalogue write through this
        gateway): the same query again, or another page of it, is cut from it."""
        timer = Timer()
        answers: AnswerCaches = request.app.state.answer_caches
        if cursor is not None:
            return JSONResponse(answers.page_of(cursor, artwork_id, timer.timings_ms, config.max_k))
        options = checked(options, config)
        downstream = request.app.state.downstream
        generation = answers.generation
        ranked = await similar_ranking(
            downstream, answers, config, artwork_id, options, timer, request_id_var.get(), generation
        )
        return JSONResponse(answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation))

    return routes
