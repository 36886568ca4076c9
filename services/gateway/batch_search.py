"""Batch search: several queries (uploaded pictures, picture URLs, artworks of the catalogue) in one request,
answered with one result list per query, in request order (POST /v1/search/batch, routes/search_batch.py).

Each query is searched exactly as its single route would (POST /v1/search for a picture or a URL, GET
/v1/artworks/{id}/similar for an artwork id): same options, same caches, same answer with its own cursor. A
query that fails on its own input (an unreadable or oversized image, a refused URL, an unknown artwork, an
invalid parameter) gets its error object, with the status it would have had alone, and the other queries
are still answered. A failure of a service the whole request needs (the encoder or search service
unavailable or busy: 429 / 503) fails the request, as it would each query, so the client backs off once.

The queries run concurrently, at most BATCH_CONCURRENCY at a time. Each picture is its own Encode call: the
encoder batches concurrent calls into one inference (its micro-batcher), and an image it cannot decode
then fails only its own call (one Encode call for all pictures would fail them all), while the gateway's
picture cache still serves a picture sent again. The number of queries per request is bounded
(SEARCH_BATCH_MAX_QUERIES; more: 413 too_many_queries), and so is the request body (that many uploads)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from services.gateway.answer_cache import AnswerCaches
from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.errors import HTTP_STATUS_FOR_GRPC, RETRY_STATUSES, ApiError
from services.gateway.image_checks import ImageLimits, check_image
from services.gateway.image_fetch import fetch_image
from services.gateway.query import rank_search
from services.gateway.query_cache import EncodedPictureCache
from services.gateway.search_answers import picture_query, similar_ranking
from services.gateway.search_params import PICTURE_FIELDS, SearchOptions, UrlRequest, checked, with_body
from services.gateway.step_timer import Timer

SEARCH_BATCH_ROUTE = "/v1/search/batch"
# Queries of one batch searched at the same time: enough for the encoder to batch their pictures, few
# enough that one batch does not fill its queues alone.
BATCH_CONCURRENCY = 8
# The JSON body of a batch: a URL (2 KiB at most) and parameters per query.
JSON_BYTES_PER_QUERY = 8 * 1024
_EXAMPLE_URL = "https://upload.wikimedia.org/wikipedia/commons/a/a5/Tsunami_by_hokusai_19th_century.jpg"

# The search parameters a JSON body may carry (those of POST /v1/search's body, less the picture), shared by
# every query of a batch or set per query.
SearchParams: type[BaseModel] = create_model(
    "SearchParams",
    __config__=ConfigDict(extra="forbid"),
    **{
        name: (info.annotation, info)  # type: ignore[misc]
        for name, info in UrlRequest.model_fields.items()
        if name not in PICTURE_FIELDS
    },
)


class BatchQuery(SearchParams):  # type: ignore[misc, valid-type]
    """One query of a JSON batch: a picture URL, a picture sent a moment ago (its `picture_id`) or an artwork
    of the catalogue, and any search parameter that differs from the batch's."""

    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description="http(s) URL of a picture",
        examples=[_EXAMPLE_URL],
    )
    artwork_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=256,
        description="An artwork of the catalogue: its related artworks, as GET /v1/artworks/{id}/similar",
    )

    picture_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=80,
        description="The picture_id of an earlier picture search's answer: that picture, not sent again "
        "(410 picture_expired once no longer kept)",
    )

    @model_validator(mode="after")
    def _one_subject(self) -> BatchQuery:
        if sum(subject is not None for subject in (self.url, self.artwork_id, self.picture_id)) != 1:
            raise ValueError("each query has exactly one of url, artwork_id and picture_id")
        return self

    def params(self) -> BaseModel:
        subjects = {"url", "artwork_id", "picture_id"}
        return SearchParams.model_validate(self.model_dump(exclude_none=True, exclude=subjects))


class BatchRequest(SearchParams):  # type: ignore[misc, valid-type]
    """JSON body of POST /v1/search/batch: the queries, in the order of the answers, and the search
    parameters they share (a query's own parameter wins, and both win over the query string)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "queries": [
                        {"url": _EXAMPLE_URL},
                        {"artwork_id": "van-gogh-bedroom-in-arles", "w_colour": 0.8},
                        {"picture_id": "3f2a" + "0" * 60 + "-a", "w_style": 0.7},
                    ],
                    "k": 10,
                }
            ]
        },
    )
    queries: list[BatchQuery] = Field(min_length=1, description="The queries, answered in this order")


@dataclass(frozen=True)
class QueryInput:
    """One query as received (an upload, a URL, a picture id or an artwork id) and its own parameters."""

    image: bytes | None = None
    url: str | None = None
    artwork_id: str | None = None
    picture_id: str | None = None
    params: BaseModel | None = None
    # An upload that could not be read as a picture file: the query's error, answered in its place.
    refused: ApiError | None = None


@dataclass(frozen=True)
class BatchContext:
    """What a batch searches with: the app's downstream services, caches and configuration."""

    downstream: Downstream
    config: GatewayConfig
    pictures: EncodedPictureCache
    answers: AnswerCaches
    request_id: str


def check_query_count(count: int, config: GatewayConfig) -> None:
    """413 too_many_queries over SEARCH_BATCH_MAX_QUERIES; 422 for a batch without queries."""
    if count == 0:
        raise ApiError(422, "invalid_request", "queries: a batch needs at least one query")
    if count > config.search_batch_max_queries:
        raise ApiError(
            413,
            "too_many_queries",
            f"{count} queries; at most {config.search_batch_max_queries} (SEARCH_BATCH_MAX_QUERIES) a batch",
        )


async def run_batch(
    context: BatchContext, base: SearchOptions, shared: BaseModel | None, queries: Sequence[QueryInput]
) -> dict[str, Any]:
    """Every query's answer or error, in request order. `base` holds the query string's options, `shared`
    the JSON body's parameters for all queries. Raises the first failure that is the whole request's."""
    check_query_count(len(queries), context.config)
    limit = asyncio.Semaphore(BATCH_CONCURRENCY)

    async def one(index: int, query: QueryInput) -> dict[str, Any]:
        async with limit:
            return await _item(context, index, base, shared, query)

    outcomes = await asyncio.gather(*(one(i, q) for i, q in enumerate(queries)), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    items: list[dict[str, Any]] = list(outcomes)  # type: ignore[arg-type]
    answered = sum(item["status"] == 200 for item in items)
    return {"queries": len(items), "answered": answered, "failed": len(items) - answered, "results": items}


async def _item(
    context: BatchContext, index: int, base: SearchOptions, shared: BaseModel | None, query: QueryInput
) -> dict[str, Any]:
    try:
        answer = await _search(context, base, shared, query)
    except ApiError as error:
        if error.status in RETRY_STATUSES:
            raise
        return _failed(index, error.status, error.code, error.message)
    except DownstreamError as error:
        if HTTP_STATUS_FOR_GRPC.get(error.status) != 400:  # an outage, not this query's input
            raise
        return _failed(index, 400, "invalid_image", error.details)
    return {"index": index, "status": 200, "answer": answer}


def _failed(index: int, status: int, code: str, message: str) -> dict[str, Any]:
    return {"index": index, "status": status, "error": {"code": code, "message": message}}


async def _search(
    context: BatchContext, base: SearchOptions, shared: BaseModel | None, query: QueryInput
) -> dict[str, object]:
    """The query's answer, as its single route gives it."""
    if query.refused is not None:
        raise query.refused
    options = base
    for params in (shared, query.params):
        if params is not None:
            options = with_body(options, params)  # type: ignore[arg-type]
    options = checked(options, context.config)
    if query.artwork_id is not None:
        return await _similar(context, query.artwork_id, options)
    timer = Timer()
    downstream, answers = context.downstream, context.answers
    generation = answers.generation
    vector = await picture_query(
        downstream,
        context.pictures,
        options,
        timer,
        context.request_id,
        picture_id=query.picture_id,
        picture=lambda: _picture(context.config, query, timer),
    )
    ranked = await rank_search(downstream, vector, options, context.config, timer, context.request_id)
    return answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation)


async def _picture(config: GatewayConfig, query: QueryInput, timer: Timer) -> bytes:
    """The checked picture: the upload, or the URL's image fetched under the SSRF policy."""
    if query.image is not None:
        check_image(query.image, ImageLimits(config.max_upload_bytes, config.max_image_pixels))
        return query.image
    assert query.url is not None
    with timer.step("fetch"):
        fetched = await fetch_image(query.url, config.url_fetch)
    check_image(fetched.data, ImageLimits(config.url_fetch.max_bytes, config.max_image_pixels))
    return fetched.data


async def _similar(context: BatchContext, artwork_id: str, options: SearchOptions) -> dict[str, object]:
    """As GET /v1/artworks/{artwork_id}/similar: from the stored descriptor, through the similar cache."""
    timer = Timer()
    answers = context.answers
    generation = answers.generation
    ranked = await similar_ranking(
        context.downstream,
        answers,
        context.config,
        artwork_id,
        options,
        timer,
        context.request_id,
        generation,
    )
    return answers.answer(ranked, options.offset, options.k, timer.timings_ms, generation)
