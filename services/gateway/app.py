"""The public HTTP API: FastAPI over the three gRPC services.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and their
Query bounds refer to the configuration in scope."""

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from artsearch.artists import default_artist_index
from artsearch.telemetry import shutdown_tracing
from services.gateway.admin import install_admin_guard
from services.gateway.answer_cache import AnswerCaches
from services.gateway.backend_factory import open_downstream
from services.gateway.batch_search import SEARCH_BATCH_ROUTE
from services.gateway.body_limit import BodyLimitMiddleware, upload_body_limit
from services.gateway.catalogue_admin import BATCH_ROUTE, sweep_stale_uploads
from services.gateway.config import GatewayConfig
from services.gateway.downstream import DownstreamError, ServiceStubs
from services.gateway.errors import (
    HTTP_STATUS_FOR_GRPC,
    RETRY_AFTER_S,
    RETRY_STATUSES,
    ApiError,
    error_response,
    with_error_body,
)
from services.gateway.public_limits import PublicLimitMiddleware
from services.gateway.query_cache import EncodedPictureCache
from services.gateway.request_context import RequestContextMiddleware
from services.gateway.routes import (
    add_routes,
    admin_artworks,
    artists,
    artwork_images,
    artworks,
    clusters,
    evaluation_pictures,
    health,
    search,
    search_batch,
    similar,
    styles,
    web_ui,
)
from services.gateway.routes import operation_id as operation_id  # the operationIds: handler names
from services.gateway.schemas import with_answer_examples
from services.gateway.telemetry import (
    install_telemetry,
)

log = logging.getLogger(__name__)


def create_app(config: GatewayConfig, stubs: ServiceStubs | None = None) -> FastAPI:
    """The gateway; `stubs` replace the gRPC channels to the services (bench/in_process.py only)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        default_artist_index()  # fail at start-up, not on the first request, if the artist table is missing
        app.state.downstream = open_downstream(config, stubs)
        app.state.picture_cache = EncodedPictureCache(config.query_cache_entries, config.query_cache_ttl_s)
        app.state.answer_caches = AnswerCaches(config)
        # In the background: a large IMAGE_ROOT must not hold back readiness.
        app.state.upload_sweep = asyncio.create_task(sweep_stale_uploads(config.admin.image_root))
        yield
        app.state.upload_sweep.cancel()
        await app.state.downstream.close()
        shutdown_tracing()

    app = FastAPI(
        title="artsearch",
        version="1.0.0",
        summary="Influence-aware artwork search: send a picture, get related artworks, explained.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
    )
    app.state.config = config
    _install_error_handlers(app)
    _install_routes(app, config)
    install_admin_guard(app, config.admin)  # the admin routes' key-checking middleware, after the routes
    upload_limit = upload_body_limit(config.max_upload_bytes)
    app.add_middleware(
        BodyLimitMiddleware,
        routes=app.routes,
        default_limit=upload_limit,
        route_limits={
            ("POST", BATCH_ROUTE): config.admin.max_batch_items * upload_limit,
            ("POST", SEARCH_BATCH_ROUTE): config.search_batch_max_queries * upload_limit,
        },
    )
    # Outside the body limit: a shed request is answered before its body is counted or read.
    app.add_middleware(PublicLimitMiddleware, settings=config.public_limits, routes=app.routes)
    # Added last, so it wraps the middlewares above (a middleware added later runs first): their early
    # answers get a request id, a log line and metrics too.
    app.add_middleware(RequestContextMiddleware)
    install_telemetry(app, config.telemetry)  # CORS, tracing and /metrics
    _install_openapi(app)
    return app


def _install_openapi(app: FastAPI) -> None:
    """/openapi.json as FastAPI builds it, with every error answer declared as the ErrorBody it is and every
    success answer's example beside its schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = with_answer_examples(with_error_body(build()))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DownstreamError)
    async def downstream_failed(_: Request, error: DownstreamError) -> JSONResponse:
        status = HTTP_STATUS_FOR_GRPC.get(error.status, 502)
        if status == 400:
            return error_response(400, "invalid_image", error.details)
        headers = {"Retry-After": RETRY_AFTER_S} if status in RETRY_STATUSES else None
        log.warning("downstream failure", extra={"service": error.service, "status": error.status.name})
        if status == 429:  # the service sheds load (the encoder's queues are full): back off, then retry
            message = f"the {error.service} service is busy, retry in {RETRY_AFTER_S} s"
            return error_response(429, f"{error.service}_busy", message, headers)
        message = f"the {error.service} service is unavailable, retry shortly"
        return error_response(status, f"{error.service}_unavailable", message, headers)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        headers = dict(error.headers or {})
        if error.status in RETRY_STATUSES:
            headers.setdefault("Retry-After", RETRY_AFTER_S)
        return error_response(error.status, error.code, error.message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in error.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request")

    # Starlette's class, so that errors raised by mounted apps (static files) are JSON too.
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, "http_error", str(error.detail), error.headers)


def _install_routes(app: FastAPI, config: GatewayConfig) -> None:
    """Every route, one module per resource (services/gateway/routes/), in this order."""
    add_routes(app, health.router)
    add_routes(app, web_ui.router)
    add_routes(app, search.router(config))
    add_routes(app, search_batch.router(config))
    add_routes(app, similar.router(config))
    add_routes(app, artworks.router)
    add_routes(app, styles.router)
    web_ui.mount_static(app)
    artwork_images.install(app, config.media)
    clusters.install(app, config.clusters)
    add_routes(app, evaluation_pictures.router(config.evaluation_pictures))
    add_routes(app, admin_artworks.router)
    add_routes(app, artists.router)
