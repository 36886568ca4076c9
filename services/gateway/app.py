"""The public HTTP API: FastAPI over the three gRPC services.

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time, and their
Query bounds refer to the configuration in scope."""

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated

import grpc
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import Counter, Histogram, make_asgi_app

from artsearch.artists import default_artist_index
from artsearch.jsonlog import request_id_var
from services.gateway.admin import install_admin_routes
from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.media import install_media_routes
from services.gateway.query import SearchParams, search_by_image

log = logging.getLogger(__name__)

HTTP_REQUESTS = Counter("artsearch_http_requests_total", "HTTP requests", ["route", "status"])
HTTP_SECONDS = Histogram("artsearch_http_request_seconds", "HTTP request latency", ["route"])

# gRPC failures of a downstream service, as the HTTP status the client should see.
_HTTP_STATUS_FOR_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}
RETRY_AFTER_S = "2"


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


def create_app(config: GatewayConfig) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        default_artist_index()  # fail at start-up, not on the first request, if the artist table is missing
        app.state.downstream = Downstream(config)
        yield
        await app.state.downstream.close()

    app = FastAPI(
        title="artsearch",
        version="1.0.0",
        summary="Influence-aware artwork search: send a picture, get related artworks, explained.",
        lifespan=lifespan,
    )
    app.state.config = config
    _install_error_handlers(app)
    _install_request_context(app)
    _install_routes(app, config)
    install_media_routes(app, config.media)
    install_admin_routes(app, config.admin)
    app.mount("/metrics", make_asgi_app())
    return app


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(DownstreamError)
    async def downstream_failed(_: Request, error: DownstreamError) -> JSONResponse:
        status = _HTTP_STATUS_FOR_GRPC.get(error.status, 502)
        if status == 400:
            return error_response(400, "invalid_image", error.details)
        headers = {"Retry-After": RETRY_AFTER_S} if status == 503 else None
        message = f"the {error.service} service is unavailable, retry shortly"
        log.warning("downstream failure", extra={"service": error.service, "status": error.status.name})
        return error_response(status, f"{error.service}_unavailable", message, headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, error: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
            for e in error.errors()
        )
        return error_response(422, "invalid_request", problems or "invalid request")

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, error: HTTPException) -> JSONResponse:
        return error_response(error.status_code, "http_error", str(error.detail), error.headers)


def _install_request_context(app: FastAPI) -> None:
    @app.middleware("http")
    async def request_context(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        route = request.url.path
        try:
            response = await call_next(request)
        except Exception:
            log.exception("unhandled error")
            response = error_response(500, "internal", "internal error")
        finally:
            request_id_var.reset(token)
        matched = request.scope.get("route")
        route = getattr(matched, "path", route if route.startswith("/v1") else "other")
        HTTP_SECONDS.labels(route).observe(time.perf_counter() - started)
        HTTP_REQUESTS.labels(route, str(response.status_code)).inc()
        response.headers["X-Request-ID"] = request_id
        return response


def _install_routes(app: FastAPI, config: GatewayConfig) -> None:
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """Liveness: the gateway process answers."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    async def readyz(request: Request) -> JSONResponse:
        """Readiness: true only when the encoder, search and influence services answer health checks."""
        services = await request.app.state.downstream.readiness()
        ready = all(services.values())
        return JSONResponse({"ready": ready, "services": services}, status_code=200 if ready else 503)

    @app.get("/", include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("services.gateway").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(page)

    @app.post("/v1/search", tags=["search"])
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="The artwork picture: JPEG, PNG or WebP")],
        k: Annotated[int, Query(ge=1, le=config.max_k, description="Results to return")] = config.default_k,
        pool: Annotated[
            int, Query(ge=1, le=config.max_pool, description="Visual candidates re-ranked by influence")
        ] = config.default_pool,
        artist: Annotated[
            str | None, Form(max_length=200, description="Source artist; inferred when absent")
        ] = None,
        rerank: Annotated[bool, Query(description="Re-rank visual candidates by influence")] = True,
    ) -> JSONResponse:
        """Related artworks for an uploaded picture, best first, each with its score breakdown."""
        data = await image.read(config.max_upload_bytes + 1)
        if len(data) > config.max_upload_bytes:
            return error_response(413, "too_large", f"image is larger than {config.max_upload_bytes} bytes")
        if not data:
            return error_response(400, "invalid_image", "the uploaded image is empty")
        params = SearchParams(
            k=k, pool=max(pool, k), source_artist=(artist or "").strip() or None, rerank=rerank
        )
        outcome = await search_by_image(request.app.state.downstream, data, params, request_id_var.get())
        return JSONResponse(
            {
                "results": outcome.results,
                "source_artist": outcome.source_artist,
                "k": k,
                "pool": params.pool,
                "degraded": outcome.degraded,
                "timings_ms": outcome.timings_ms,
                "model": outcome.model,
            }
        )
