"""The public search routes: search by upload or URL, similar artworks, one artwork, style prediction.

No `from __future__ import annotations`: FastAPI reads the route signatures at run time."""

from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.datastructures import UploadFile

from artsearch.jsonlog import request_id_var
from services.gateway.answer_cache import AnswerCaches, similar_key
from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError, error_responses
from services.gateway.explain import artwork_json
from services.gateway.image_checks import ImageLimits, check_image
from services.gateway.image_fetch import fetch_image
from services.gateway.query import (
    Timer,
    encode_image,
    rank_search,
    run_style_prediction,
    stored_artwork,
    stored_vector,
)
from services.gateway.schemas.artworks import Artwork
from services.gateway.schemas.search import SearchAnswer, StyleAnswer
from services.gateway.search_params import (
    SearchOptions,
    UrlRequest,
    checked,
    search_query,
    with_body,
    with_form_artist,
)

MAX_JSON_BYTES = 64 * 1024
ARTWORK_ID = Annotated[str, Path(min_length=1, max_length=256, description="Artwork id")]
_CURSOR_DOC = (
    "The next_cursor of a previous answer: its next page of the same ranked result (kept SEARCH_CURSOR_TTL_S "
    "seconds; the other search parameters are not read). 410 cursor_expired when no longer kept"
)
_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_EXAMPLE_URL = "https://upload.wikimedia.org/wikipedia/commons/a/a5/Tsunami_by_hokusai_19th_century.jpg"


class StyleUrlRequest(BaseModel):
    """JSON body of POST /v1/predict-style: the URL of a picture."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, examples=[_EXAMPLE_URL])


class _ImageInput:
    """The picture a request carries (uploaded bytes, or a URL still to fetch) and its body parameters."""

    def __init__(
        self, data: bytes, body: UrlRequest | StyleUrlRequest | None = None, form_artist: object = None
    ) -> None:
        self.data = data
        self.body = body
        self.form_artist = form_artist


def install_search_routes(app: FastAPI, config: GatewayConfig) -> None:
    options_from_query = Annotated[SearchOptions, Depends(search_query(config))]
    upload_limits = ImageLimits(config.max_upload_bytes, config.max_image_pixels)
    fetched_limits = ImageLimits(config.url_fetch.max_bytes, config.max_image_pixels)

    async def image_bytes(source: _ImageInput, timer: Timer) -> bytes:
        """The checked picture: the upload, or the URL's image fetched under the SSRF policy."""
        if source.body is None:
            check_image(source.data, upload_limits)
            return source.data
        with timer.step("fetch"):
            fetched = await fetch_image(source.body.url, config.url_fetch)
        check_image(fetched.data, fetched_limits)
        return fetched.data

    @app.post(
        "/v1/search",
        tags=["search"],
        openapi_extra=_image_request_body(UrlRequest, search_params=True),
        responses={200: _SEARCH_ANSWER, **_IMAGE_ROUTE_ERRORS},
    )
    async def search(request: Request, options: options_from_query) -> JSONResponse:
        """Related artworks for a picture, best first, each with its score breakdown and influence path.

        Send the picture as multipart form field `image` (optionally with form field `artist`, the source
        artist), or as JSON `{"url": "https://..."}`, which may also carry any query parameter."""
        timer = Timer()
        source = await _read_body(request, UrlRequest, config)
        if isinstance(source.body, UrlRequest):
            options = with_body(options, source.body)
        options = checked(with_form_artist(options, source.form_artist), config)
        data = await image_bytes(source, timer)
        downstream = request.app.state.downstream
        # The encoder analyses the photo (locates the painting, tells grey-scale) unless both are off.
        analyse = "auto" in (options.locate, options.grey)
        cache = request.app.state.picture_cache
        answers: AnswerCaches = request.app.state.answer_caches
        generation = answers.generation
        query = await encode_image(downstream, data, timer, cache, request_id_var.get(), analyse=analyse)
        ranked = await rank_search(downstream, query, options, config, timer, request_id_var.get())
        return JSONResponse(answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation))

    @app.get(
        "/v1/search",
        tags=["search"],
        responses={200: _SEARCH_ANSWER, **_CURSOR_ERRORS},
    )
    async def search_page(
        request: Request, cursor: Annotated[str, Query(min_length=1, description=_CURSOR_DOC)]
    ) -> JSONResponse:
        """The next page of a search's ranked result (a picture search's, or a similar one's), by the
        `next_cursor` of its previous page: the picture is not sent (nor encoded, nor searched) again."""
        answers: AnswerCaches = request.app.state.answer_caches
        return JSONResponse(answers.page_of(cursor, None, Timer().timings_ms, config.max_k))

    @app.get(
        "/v1/artworks/{artwork_id}/similar",
        tags=["search"],
        responses={200: _SEARCH_ANSWER, **_STORED_ROUTE_ERRORS, **_CURSOR_ERRORS},
    )
    async def similar(
        request: Request,
        artwork_id: ARTWORK_ID,
        options: options_from_query,
        cursor: Annotated[str | None, Query(min_length=1, description=_CURSOR_DOC)] = None,
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
        # The encoder's model as last seen (asked once): a redeployed model is another key.
        model = await downstream.model_info(request_id_var.get())
        key = similar_key(artwork_id, options, config.collection, model.version)
        ranked = answers.similar_answer(key)
        if ranked is None:
            query = await stored_vector(downstream, artwork_id, timer, request_id_var.get())
            ranked = await rank_search(downstream, query, options, config, timer, request_id_var.get())
            answers.keep_similar(key, ranked, generation)
        return JSONResponse(answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation))

    @app.get(
        "/v1/artworks/{artwork_id}",
        tags=["artworks"],
        response_model=Artwork,
        response_description="The artwork",
        responses=_STORED_ROUTE_ERRORS,
    )
    async def artwork(request: Request, artwork_id: ARTWORK_ID) -> JSONResponse:
        """Public metadata of one artwork."""
        found = await stored_artwork(request.app.state.downstream, artwork_id, request_id_var.get())
        return JSONResponse(artwork_json(found))

    @app.post(
        "/v1/predict-style",
        tags=["search"],
        openapi_extra=_image_request_body(StyleUrlRequest, search_params=False),
        responses={200: {"model": StyleAnswer, "description": "The predicted style"}, **_IMAGE_ROUTE_ERRORS},
    )
    async def predict_style(request: Request) -> JSONResponse:
        """The style of a picture: a similarity-weighted vote of its nearest catalogue artworks' style
        labels, with the winner's share of the vote as confidence and the top 3; "unknown" when the
        catalogue has no style labels."""
        timer = Timer()
        data = await image_bytes(await _read_body(request, StyleUrlRequest, config), timer)
        downstream = request.app.state.downstream
        cache = request.app.state.picture_cache
        query = await encode_image(downstream, data, timer, cache, request_id_var.get())
        return JSONResponse(
            await run_style_prediction(downstream, query, config, timer, request_id_var.get())
        )


async def _read_body(
    request: Request, body_model: type[UrlRequest] | type[StyleUrlRequest], config: GatewayConfig
) -> _ImageInput:
    """The uploaded picture (multipart `image`) or the JSON body; 4xx ApiError for anything else."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type in _FORM_TYPES:
        return await _read_form(request, config)
    if content_type == "application/json" or content_type.endswith("+json"):
        raw = await _read_limited(request, MAX_JSON_BYTES)
        try:
            return _ImageInput(b"", body_model.model_validate_json(raw))
        except ValidationError as error:
            raise RequestValidationError(error.errors(include_url=False, include_context=False)) from None
    raise ApiError(
        415,
        "unsupported_media_type",
        "send the picture as multipart/form-data field 'image', or application/json {\"url\": ...}",
    )


async def _read_form(request: Request, config: GatewayConfig) -> _ImageInput:
    """The upload and the form's source artist. The body's size is bounded as it arrives (body_limit);
    the image's own size and pixels are checked with the image (check_image), reading one byte past the
    limit so an oversized image is seen."""
    async with request.form(max_files=1, max_fields=20) as form:  # closes the spooled upload after
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise ApiError(
                422, "invalid_request", "image: a picture file is required (multipart field 'image')"
            )
        data = await image.read(config.max_upload_bytes + 1)
        artist = form.get("source_artist") or form.get("artist")
    return _ImageInput(data, None, artist)


async def _read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the JSON body is larger than {limit} bytes")
    return bytes(body)


def _image_request_body(url_model: type[BaseModel], *, search_params: bool) -> dict[str, Any]:
    """OpenAPI for a body that is either a multipart upload or a JSON URL (FastAPI cannot declare both)."""
    form_properties: dict[str, Any] = {
        "image": {"type": "string", "format": "binary", "description": "The picture (JPEG, PNG, WebP, ...)"}
    }
    json_example: dict[str, Any] = {"url": _EXAMPLE_URL}
    if search_params:
        form_properties["artist"] = {
            "type": "string",
            "maxLength": 200,
            "description": "Source artist (the query parameter source_artist takes precedence)",
        }
        json_example = {**json_example, "k": 10, "w_style": 0.6, "filter_style": ["Ukiyo-e"]}
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": form_properties, "required": ["image"]},
                    "encoding": {"image": {"contentType": "image/*"}},
                },
                "application/json": {
                    "schema": url_model.model_json_schema(),
                    "examples": {"by_url": {"summary": "An image by URL", "value": json_example}},
                },
            },
        }
    }


# The hot routes declare their answer's model here rather than as response_model, so that nobody is
# tempted to return the dict and have FastAPI re-validate ~25 results per query (issue 16 counts the
# gateway's CPU per query): the handlers send the JSON they build, and the model is documentation that
# tests/services/test_gateway_openapi_contract.py holds to the real answers.
_SEARCH_ANSWER = {"model": SearchAnswer, "description": "Related artworks, best first, each explained"}
_IMAGE_ROUTE_ERRORS = error_responses(
    400,
    413,
    415,
    422,
    429,
    503,
    notes={
        400: "Bad image (empty, unreadable) or an image URL that is refused or cannot be fetched",
        413: "Request body or image too large (bytes or pixels)",
        415: "Not multipart/form-data nor JSON, or not an image in an accepted format",
        429: "This client is over its rate or concurrency limit (rate_limited), or the encoder is busy "
        "(encoder_busy): retry after Retry-After seconds",
    },
)
_STORED_ROUTE_ERRORS = error_responses(404, 422, 503, notes={404: "Unknown artwork"})
_CURSOR_ERRORS = error_responses(
    400,
    410,
    422,
    notes={
        400: "A malformed cursor, or one of another query (invalid_cursor)",
        410: "The cursor's result is no longer kept: expired, or the catalogue changed (cursor_expired); "
        "search again",
    },
)
