"""What the gateway tells operators: Prometheus metrics per route and per downstream call, request ids,
OpenTelemetry spans when enabled, and which browser origins may call the API (CORS).

Environment (read by `TelemetrySettings.from_env`):
* CORS_ALLOW_ORIGINS: comma-separated origins allowed to call the API from a browser
  (e.g. `https://art.example.org,http://localhost:3000`, or `*`); empty (default): no CORS headers;
* OTEL_ENABLED, OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER_ARG: tracing,
  see artsearch.telemetry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import grpc
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.trace import SpanKind, Status, StatusCode
from prometheus_client import Counter, Gauge, Histogram, make_asgi_app
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from artsearch.config import Env
from artsearch.grpc_client import request_metadata
from artsearch.telemetry import TracingSettings, inject_trace_context, start_tracing
from services.gateway import settings as declared

HTTP_REQUESTS = Counter(
    "artsearch_http_requests_total", "HTTP requests answered", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram("artsearch_http_request_seconds", "HTTP request latency", ["method", "route"])
DOWNSTREAM_SECONDS = Histogram(
    "artsearch_downstream_call_seconds",
    "Latency of the gateway's gRPC calls to the services, by outcome",
    ["service", "method", "code"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
DOWNSTREAM_ERRORS = Counter(
    "artsearch_downstream_call_errors_total",
    "The gateway's gRPC calls to the services that failed, by gRPC status",
    ["service", "method", "code"],
)
DOWNSTREAM_UP = Gauge(
    "artsearch_downstream_up",
    "Whether each service answered the gateway's last health check (1) or not (0)",
    ["service"],
)
# A scrape checks the services' health first, so the gauge is current even where nothing probes /readyz.
SCRAPE_HEALTH_TIMEOUT_S = 1.0

# Probes and scrapes: counted, not logged nor traced.
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})
UNMATCHED_ROUTE = "unmatched"  # one label for every unknown path, so a scan cannot blow up the metrics

_tracer = trace.get_tracer("services.gateway")


@dataclass(frozen=True)
class TelemetrySettings:
    tracing: TracingSettings = field(default_factory=TracingSettings)
    # Browser origins allowed by CORS; empty: no CORS headers at all.
    cors_allow_origins: tuple[str, ...] = ()

    @classmethod
    def from_env(cls, env: Env) -> TelemetrySettings:
        origins = declared.CORS_ALLOW_ORIGINS.read(env)
        return cls(
            tracing=TracingSettings.from_env(env, "artsearch-gateway"),
            cors_allow_origins=tuple(o.strip().rstrip("/") for o in origins.split(",") if o.strip()),
        )


def install_telemetry(app: FastAPI, settings: TelemetrySettings) -> None:
    """CORS (when origins are configured), spans per request (when tracing is on), and /metrics."""
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_allow_origins),
            allow_methods=["GET", "POST", "PATCH", "DELETE", "OPTIONS"],
            allow_headers=["Content-Type", "X-API-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "ETag"],
            max_age=600,
        )
    provider = start_tracing(settings.tracing)
    if provider is not None:
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=provider, excluded_urls=",".join(r.lstrip("/") for r in QUIET_ROUTES)
        )
    app.mount("/metrics", _HealthRefreshingMetrics(make_asgi_app()))


def record_downstream_health(health: Mapping[str, bool]) -> None:
    for service, up in health.items():
        DOWNSTREAM_UP.labels(service).set(1.0 if up else 0.0)


class _HealthRefreshingMetrics:
    """The Prometheus exposition, after a health check of the services (Downstream.readiness, each within
    SCRAPE_HEALTH_TIMEOUT_S) so that `artsearch_downstream_up` says how they are now."""

    def __init__(self, metrics: ASGIApp) -> None:
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope.get("app")
        downstream = getattr(getattr(app, "state", None), "downstream", None)
        if scope["type"] == "http" and downstream is not None:
            await downstream.readiness(timeout=SCRAPE_HEALTH_TIMEOUT_S)
        await self._metrics(scope, receive, send)


def route_label(scope: Mapping[str, object]) -> str:
    """The route template that served a request (`/v1/artworks/{id}`), never the raw path."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else UNMATCHED_ROUTE


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    HTTP_SECONDS.labels(method, route).observe(seconds)
    HTTP_REQUESTS.labels(method, route, str(status)).inc()


def rpc_name(stub_method: object) -> str:
    """`artsearch.v1.EncoderService/Encode` for a grpc.aio stub method."""
    raw = getattr(stub_method, "_method", b"")
    name = raw.decode("ascii", "replace") if isinstance(raw, bytes) else str(raw)
    return name.lstrip("/") or "unknown/unknown"


@contextmanager
def downstream_call(
    service: str, stub_method: object, request_id: str
) -> Iterator[tuple[tuple[str, str], ...]]:
    """Wraps one gRPC call to a service: yields the metadata to send (request id and trace context),
    and records its latency, its failure if any, and a client span (a no-op when tracing is off). A call
    the gateway cancels itself (an analysis no search needs, a client gone) is timed under `CANCELLED` but
    is no failure of the service: not counted in the errors, its span not marked as one."""
    full_name = rpc_name(stub_method)
    method = full_name.rsplit("/", 1)[-1]
    attributes = {"rpc.system": "grpc", "rpc.service": full_name.split("/", 1)[0], "rpc.method": method}
    started = time.perf_counter()
    with _tracer.start_as_current_span(
        full_name, kind=SpanKind.CLIENT, attributes=attributes, set_status_on_exception=False
    ) as span:
        code = grpc.StatusCode.OK
        try:
            yield (*request_metadata(request_id), *inject_trace_context({}).items())
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except BaseException as error:
            code = grpc_status_of(error)
            span.set_status(Status(StatusCode.ERROR, code.name))
            DOWNSTREAM_ERRORS.labels(service, method, code.name).inc()
            raise
        finally:
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            DOWNSTREAM_SECONDS.labels(service, method, code.name).observe(time.perf_counter() - started)


def grpc_status_of(error: BaseException) -> grpc.StatusCode:
    """The gRPC status an exception out of a call stands for."""
    status = getattr(error, "status", None)  # DownstreamError
    if isinstance(status, grpc.StatusCode):
        return status
    if isinstance(error, grpc.aio.AioRpcError):
        return error.code()
    return grpc.StatusCode.UNKNOWN
