"""/v1/search: related artworks for a picture (POST, an upload or a URL), and the next page of a search's
ranked result by its cursor (GET)."""

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from artsearch.jsonlog import request_id_var
from services.gateway.answer_cache import AnswerCaches
from services.gateway.config import GatewayConfig
from services.gateway.errors import error_responses
from services.gateway.query import rank_search
from services.gateway.routes import api_router
from services.gateway.routes.docs import CURSOR_DOC, CURSOR_ERRORS, IMAGE_ROUTE_ERRORS, SEARCH_ANSWER
from services.gateway.routes.picture_body import image_request_body, picture_bytes, read_body
from services.gateway.search_answers import picture_query
from services.gateway.search_params import (
    SearchOptions,
    UrlRequest,
    checked,
    search_query,
    with_body,
    with_form_artist,
)
from services.gateway.step_timer import Timer

# POST /v1/search's 400 and 410 also cover a picture_id or a cursor sent instead of the picture.
_PICTURE_OR_CURSOR_ERRORS = error_responses(
    400,
    410,
    notes={
        400: "Bad image (empty, unreadable), an image URL that is refused or cannot be fetched, a malformed "
        "picture_id (invalid_picture_id) or cursor (invalid_cursor)",
        410: "The picture_id's descriptors are no longer kept (picture_expired): send the picture again; or "
        "the cursor's result is no longer kept (cursor_expired): search again",
    },
)


def router(config: GatewayConfig) -> APIRouter:
    """The search routes; their query parameters are bounded by `config` (MAX_K, MAX_POOL, ...)."""
    routes = api_router(tags=["search"])
    options_from_query = Annotated[SearchOptions, Depends(search_query(config))]

    @routes.post(
        "/v1/search",
        openapi_extra=image_request_body(UrlRequest, search_params=True),
        responses={200: SEARCH_ANSWER, **IMAGE_ROUTE_ERRORS, **_PICTURE_OR_CURSOR_ERRORS},
    )
    async def search(request: Request, options: options_from_query) -> JSONResponse:
        """Related artworks for a picture, best first, each with its score breakdown and influence path.

        Send the picture as multipart form field `image` (optionally with form field `artist`, the source
        artist), or as JSON `{"url": "https://..."}`, which may also carry any query parameter. To search a
        picture again with other parameters, send the `picture_id` of its answer instead (JSON or form
        field): re-ranked from the kept descriptors, no upload nor encode; 410 picture_expired once gone.
        A client that only POSTs pages by sending the `cursor` of an answer instead (JSON or form field):
        the same as GET /v1/search?cursor=, the other parameters not read."""
        timer = Timer()
        source = await read_body(request, UrlRequest, config)
        answers: AnswerCaches = request.app.state.answer_caches
        if source.cursor is not None:
            return JSONResponse(answers.page_of(source.cursor, None, timer.timings_ms, config.max_k))
        if isinstance(source.body, UrlRequest):
            options = with_body(options, source.body)
        options = checked(with_form_artist(options, source.form_artist), config)
        downstream = request.app.state.downstream
        generation = answers.generation
        query = await picture_query(
            downstream,
            request.app.state.picture_cache,
            options,
            timer,
            request_id_var.get(),
            picture_id=source.picture_id,  # a picture sent a moment ago: its kept descriptors
            picture=lambda: picture_bytes(source, config, timer),
        )
        ranked = await rank_search(downstream, query, options, config, timer, request_id_var.get())
        return JSONResponse(answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation))

    @routes.get("/v1/search", responses={200: SEARCH_ANSWER, **CURSOR_ERRORS})
    async def search_page(
        request: Request, cursor: Annotated[str, Query(min_length=1, description=CURSOR_DOC)]
    ) -> JSONResponse:
        """The next page of a search's ranked result (a picture search's, or a similar one's), by the
        `next_cursor` of its previous page: the picture is not sent (nor encoded, nor searched) again."""
        answers: AnswerCaches = request.app.state.answer_caches
        return JSONResponse(answers.page_of(cursor, None, Timer().timings_ms, config.max_k))

    return routes
