"""POST /v1/search/batch: several pictures (uploads or URLs) or catalogue artworks searched in one request,
one answer or error per query (services/gateway/batch_search.py)."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from artsearch.jsonlog import request_id_var
from services.gateway.batch_search import (
    JSON_BYTES_PER_QUERY,
    SEARCH_BATCH_ROUTE,
    BatchContext,
    BatchRequest,
    QueryInput,
    SearchParams,
    check_query_count,
    run_batch,
)
from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError, error_responses
from services.gateway.public_limits import charge_queries
from services.gateway.routes import api_router
from services.gateway.routes.picture_body import FORM_TYPES, MAX_JSON_BYTES, content_type, is_json, read_json
from services.gateway.schemas.batch import BatchSearchAnswer
from services.gateway.search_params import SearchOptions, search_query

_ERRORS = error_responses(
    413,
    415,
    422,
    429,
    503,
    notes={
        413: "More queries than SEARCH_BATCH_MAX_QUERIES (too_many_queries), or a request body larger than "
        "that many uploads; an oversized image is its own query's error",
        415: "Not multipart/form-data nor JSON",
        422: "No query, or a malformed body or parameter shared by every query",
        429: "This client is over its rate or concurrency limit (rate_limited; a batch costs a token per "
        "query), or the encoder is busy "
        "(encoder_busy): retry after Retry-After seconds",
        503: "The encoder or the search service is unavailable: retry after Retry-After seconds",
    },
)


def router(config: GatewayConfig) -> APIRouter:
    """The batch search route; its query parameters are bounded by `config` (MAX_K, MAX_POOL, ...)."""
    routes = api_router(tags=["search"])
    options_from_query = Annotated[SearchOptions, Depends(search_query(config))]

    @routes.post(
        SEARCH_BATCH_ROUTE,
        openapi_extra=_request_body(config.search_batch_max_queries),
        responses={
            200: {
                "model": BatchSearchAnswer,
                "description": "Each query's answer or error, in request order",
            },
            **_ERRORS,
        },
    )
    async def search_batch(request: Request, options: options_from_query) -> JSONResponse:
        """Several searches in one request: uploaded pictures (multipart, one `image` field per picture),
        or JSON `{"queries": [{"url": ...} | {"artwork_id": ...}, ...]}`. Each query is answered as its
        single route would answer it (POST /v1/search; GET /v1/artworks/{artwork_id}/similar for an
        artwork id), in request order; a query that fails on its own input gets its error object and the
        others are still answered. The query parameters apply to every query; a JSON body's top-level search
        parameters too, and a query's own parameters win over both. At most SEARCH_BATCH_MAX_QUERIES
        queries."""
        shared, queries = await _read_queries(request, config)
        charge_queries(request, len(queries))  # a token per query under the public rate limit
        context = BatchContext(
            downstream=request.app.state.downstream,
            config=config,
            pictures=request.app.state.picture_cache,
            answers=request.app.state.answer_caches,
            request_id=request_id_var.get(),
        )
        return JSONResponse(await run_batch(context, options, shared, queries))

    return routes


async def _read_queries(request: Request, config: GatewayConfig) -> tuple[BaseModel | None, list[QueryInput]]:
    """The batch's shared parameters (JSON) and its queries, from a multipart or a JSON body."""
    media_type = content_type(request)
    if media_type in FORM_TYPES:
        return None, await _read_uploads(request, config)
    if is_json(media_type):
        limit = MAX_JSON_BYTES + JSON_BYTES_PER_QUERY * config.search_batch_max_queries
        body: BatchRequest = await read_json(request, BatchRequest, limit)
        check_query_count(len(body.queries), config)
        shared = SearchParams.model_validate(body.model_dump(exclude_none=True, exclude={"queries"}))
        return shared, [
            QueryInput(url=q.url, artwork_id=q.artwork_id, picture_id=q.picture_id, params=q.params())
            for q in body.queries
        ]
    raise ApiError(
        415,
        "unsupported_media_type",
        "send the pictures as multipart/form-data fields 'image', or application/json {\"queries\": [...]}",
    )


async def _read_uploads(request: Request, config: GatewayConfig) -> list[QueryInput]:
    """One query per multipart `image` field, in order. One file more than the limit is read, so a batch
    too large is told so (413 too_many_queries) rather than cut short; each image is read one byte past the
    upload limit so an oversized one is seen (its query's 413)."""
    most = config.search_batch_max_queries
    try:
        async with request.form(max_files=most + 1, max_fields=most + 20) as form:
            return await _uploaded_queries(form.getlist("image"), config)
    except HTTPException as error:  # Starlette's parser stops at max_files: that is too many queries
        if error.status_code == 400 and str(error.detail).startswith("Too many files"):
            check_query_count(most + 1, config)
        raise


async def _uploaded_queries(fields: list[Any], config: GatewayConfig) -> list[QueryInput]:
    check_query_count(len(fields), config)
    queries = []
    for field in fields:
        if isinstance(field, UploadFile):
            queries.append(QueryInput(image=await field.read(config.max_upload_bytes + 1)))
        else:
            refused = ApiError(422, "invalid_request", "image: a picture file is required, not a text field")
            queries.append(QueryInput(refused=refused))
    return queries


def _request_body(max_queries: int) -> dict[str, Any]:
    """OpenAPI for a body that is either a multipart upload of pictures or JSON queries."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "image": {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "maxItems": max_queries,
                                "description": "The pictures, one query each, answered in this order",
                            }
                        },
                        "required": ["image"],
                    },
                    "encoding": {"image": {"contentType": "image/*"}},
                },
                "application/json": {
                    "schema": BatchRequest.model_json_schema(),
                    "examples": {
                        "urls_and_artworks": {
                            "summary": "A picture by URL and an artwork of the catalogue",
                            "value": BatchRequest.model_config["json_schema_extra"]["examples"][0],  # type: ignore[index]
                        }
                    },
                },
            },
        }
    }
