"""Gateway telemetry: settings, CORS, metrics per route and per downstream call, request ids in log lines,
and OpenTelemetry spans from an HTTP search down to the services (in-memory span exporter)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import REGISTRY

from artsearch.config import ConfigError, Env
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.telemetry import TracingSettings, start_tracing
from artsearch_tools.launcher import free_ports
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream, DownstreamError
from services.gateway.telemetry import TelemetrySettings, downstream_call, rpc_name


def gateway_config(encoder: str, search: str, influence: str, **env: str) -> GatewayConfig:
    return GatewayConfig.from_env(
        Env({"ENCODER_ADDR": encoder, "SEARCH_ADDR": search, "INFLUENCE_ADDR": influence, **env})
    )


def offline_app(monkeypatch: pytest.MonkeyPatch, **env: str):
    """The gateway over addresses where nothing listens (enough for the routes tested here)."""
    addresses = [f"127.0.0.1:{p}" for p in free_ports(3)]
    return create_app(gateway_config(*addresses, **env))


def client_of(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gateway")


def metric(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- settings ---------------------------------------------------------------------------------------


def test_settings_default_to_no_cors_and_no_tracing():
    settings = TelemetrySettings.from_env(Env({}))
    assert settings.cors_allow_origins == ()
    assert settings.tracing == TracingSettings(enabled=False, service_name="artsearch-gateway")


def test_settings_read_origins_and_tracing():
    settings = TelemetrySettings.from_env(
        Env(
            {
                "CORS_ALLOW_ORIGINS": " https://art.example.org/, http://localhost:3000 ,",
                "OTEL_ENABLED": "true",
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317",
                "OTEL_SERVICE_NAME": "gw",
                "OTEL_TRACES_SAMPLER_ARG": "0.25",
            }
        )
    )
    assert settings.cors_allow_origins == ("https://art.example.org", "http://localhost:3000")
    assert settings.tracing == TracingSettings(True, "http://collector:4317", "gw", 0.25)


@pytest.mark.parametrize(
    "env", [{"OTEL_ENABLED": "maybe"}, {"OTEL_TRACES_SAMPLER_ARG": "2"}, {"OTEL_TRACES_SAMPLER_ARG": "-1"}]
)
def test_malformed_telemetry_settings_fail_fast(env):
    with pytest.raises(ConfigError):
        TelemetrySettings.from_env(Env(env))


# --- CORS -------------------------------------------------------------------------------------------


async def test_no_cors_headers_unless_configured(monkeypatch):
    async with client_of(offline_app(monkeypatch)) as client:
        reply = await client.get("/healthz", headers={"Origin": "https://art.example.org"})
    assert reply.status_code == 200
    assert "access-control-allow-origin" not in reply.headers


async def test_cors_allows_only_the_configured_origins(monkeypatch):
    app = offline_app(monkeypatch, CORS_ALLOW_ORIGINS="https://art.example.org")
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "x-api-key"}
    async with client_of(app) as client:
        allowed = await client.options(
            "/v1/search", headers={"Origin": "https://art.example.org", **preflight}
        )
        refused = await client.options("/v1/search", headers={"Origin": "https://evil.example", **preflight})
        simple = await client.get("/healthz", headers={"Origin": "https://art.example.org"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://art.example.org"
    assert "x-api-key" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert simple.headers["access-control-allow-origin"] == "https://art.example.org"
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()


# --- metrics and request ids -----------------------------------------------------------------------


async def test_requests_are_counted_per_route_template_never_per_raw_path(monkeypatch):
    before_health = metric("artsearch_http_requests_total", method="GET", route="/healthz", status="200")
    before_unmatched = metric("artsearch_http_requests_total", method="GET", route="unmatched", status="404")
    async with client_of(offline_app(monkeypatch)) as client:
        await client.get("/healthz")
        await client.get("/v1/no-such-route/12345")
        exposed = (await client.get("/metrics/")).text
    assert metric("artsearch_http_requests_total", method="GET", route="/healthz", status="200") == (
        before_health + 1
    )
    assert metric("artsearch_http_requests_total", method="GET", route="unmatched", status="404") == (
        before_unmatched + 1
    )
    assert "no-such-route" not in exposed
    assert "artsearch_http_request_seconds_bucket" in exposed


async def test_request_id_is_echoed_and_in_the_request_log_line(monkeypatch, json_log_lines):
    async with client_of(offline_app(monkeypatch)) as client:
        given = await client.get("/v1/no-such-route", headers={"X-Request-ID": "req-0123"})
        made_up = await client.get("/v1/no-such-route")
        unsafe_id = ("a b\u00e9" + "x" * 200).encode("latin-1")
        unsafe = await client.get("/v1/no-such-route", headers={"X-Request-ID": unsafe_id})
    assert given.headers["x-request-id"] == "req-0123"
    assert len(made_up.headers["x-request-id"]) == 32
    assert len(unsafe.headers["x-request-id"]) == 32, "an unsafe id is replaced by a fresh one"
    logged = [line for line in json_log_lines() if line["msg"] == "request"]
    assert {line.get("request_id") for line in logged} >= {"req-0123", made_up.headers["x-request-id"]}
    assert all(line["route"] == "unmatched" and line["status"] == 404 for line in logged)


@asynccontextmanager
async def health_only_server() -> AsyncIterator[str]:
    server = GrpcServiceServer([])
    port = await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_downstream_calls_are_timed_and_failures_counted_by_status():
    labels = {"service": "search", "method": "Check"}
    ok_before = metric("artsearch_downstream_call_seconds_count", **labels, code="OK")
    down_before = metric("artsearch_downstream_call_errors_total", **labels, code="UNAVAILABLE")
    async with health_only_server() as address, open_channel(address) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check
        assert rpc_name(check) == "grpc.health.v1.Health/Check"
        reply = await Downstream.call("search", check, health_pb2.HealthCheckRequest(), 2.0, "rid-1")
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    async with open_channel(f"127.0.0.1:{free_ports(1)[0]}") as nowhere:
        check = health_pb2_grpc.HealthStub(nowhere).Check
        with pytest.raises(DownstreamError) as failed:
            await Downstream.call("search", check, health_pb2.HealthCheckRequest(), 0.5, "rid-2")
    assert failed.value.status in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    assert metric("artsearch_downstream_call_seconds_count", **labels, code="OK") == ok_before + 1
    errors = metric("artsearch_downstream_call_errors_total", **labels, code=failed.value.status.name)
    previous = down_before if failed.value.status == grpc.StatusCode.UNAVAILABLE else 0.0
    assert errors >= previous + 1
    assert metric("artsearch_downstream_call_errors_total", **labels, code="OK") == 0.0


async def test_a_call_the_gateway_cancels_is_timed_but_not_counted_as_a_failure():
    """An analysis no search needs is cancelled by the gateway (services/gateway/query_cache.py): the
    encoder did nothing wrong, so an error-ratio alert must not see it."""
    labels = {"service": "encoder", "method": "Check"}
    timed = metric("artsearch_downstream_call_seconds_count", **labels, code="CANCELLED")
    async with open_channel(f"127.0.0.1:{free_ports(1)[0]}") as nowhere:
        check = health_pb2_grpc.HealthStub(nowhere).Check
        with pytest.raises(asyncio.CancelledError), downstream_call("encoder", check, "rid-3"):
            raise asyncio.CancelledError
    assert metric("artsearch_downstream_call_seconds_count", **labels, code="CANCELLED") == timed + 1
    assert metric("artsearch_downstream_call_errors_total", **labels, code="CANCELLED") == 0.0


# --- tracing ----------------------------------------------------------------------------------------

_EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    """The process-wide tracer provider, exporting into memory (tracing can be started once per process)."""
    provider = start_tracing(TracingSettings(enabled=True, service_name="artsearch-test"), _EXPORTER)
    assert provider is not None and trace.get_tracer_provider() is provider
    return _EXPORTER


def test_log_lines_carry_the_trace_id_inside_a_span(spans, json_log_lines):
    with trace.get_tracer("test").start_as_current_span("work") as span:
        logging.getLogger("test").warning("inside")
    logging.getLogger("test").warning("outside")
    trace_id = f"{span.get_span_context().trace_id:032x}"
    by_msg = {line["msg"]: line for line in json_log_lines()}
    assert by_msg["inside"]["trace_id"] == trace_id
    assert "trace_id" not in by_msg["outside"]


@asynccontextmanager
async def real_services(model_path: Path, state: Path) -> AsyncIterator[GatewayConfig]:
    """The three services in this process (the same servicers and bootstrap as their processes)."""
    from services.encoder.backend_factory import open_embedding_backend
    from services.encoder.config import EncoderConfig
    from services.encoder.server import EncoderService, encoder_registration
    from services.influence.backend_factory import open_influence_graph
    from services.influence.config import InfluenceConfig
    from services.influence.server import InfluenceServicer, registration
    from services.search.edge_store import EdgeArtworkStore
    from services.search.server import SearchService, search_registration

    encoder_config = EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path)}))
    encoder = EncoderService(
        open_embedding_backend(encoder_config), max_batch_images=16, max_image_pixels=50_000_000
    )
    store = await EdgeArtworkStore.open(state / "edge")
    influence_config = InfluenceConfig.from_env(Env({}))
    graph = await open_influence_graph(influence_config)
    servers = [
        GrpcServiceServer([encoder_registration(encoder)]),
        GrpcServiceServer([search_registration(SearchService(store))]),
        GrpcServiceServer([registration(InfluenceServicer(graph, influence_config.default_max_hops))]),
    ]
    ports = [await server.start() for server in servers]
    try:
        yield gateway_config(*(f"127.0.0.1:{port}" for port in ports))
    finally:
        for server in servers:
            await server.stop(0)
        await encoder.close()
        await store.close()
        await graph.close()


async def _span_finished(spans, name: str, kind: SpanKind, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.02)):
        if any(s.name == name and s.kind == kind for s in spans.get_finished_spans()):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {kind} span {name} within {timeout_s} s")


def _by_name(finished: tuple[ReadableSpan, ...], name: str, kind: SpanKind) -> ReadableSpan:
    found = [s for s in finished if s.name == name and s.kind == kind]
    assert len(found) == 1, (name, kind, [(s.name, s.kind) for s in finished])
    return found[0]


async def test_a_search_is_one_trace_from_the_gateway_through_every_service(
    spans, model_path, gcompris_catalogue, tmp_path, monkeypatch
):
    from artsearch_tools.catalogue.folder import load_catalogue
    from artsearch_tools.ingest import IngestTargets, ingest_catalogue

    catalogue = load_catalogue(gcompris_catalogue)
    catalogue.entries = catalogue.entries[:4]
    async with real_services(model_path, tmp_path) as config:
        targets = IngestTargets(config.encoder_addr, config.search_addr, config.influence_addr)
        assert (await ingest_catalogue(catalogue, targets)).added == 4
        monkeypatch.setenv("OTEL_ENABLED", "true")
        monkeypatch.delenv("CORS_ALLOW_ORIGINS", raising=False)
        app = create_app(config)
        spans.clear()
        image = catalogue.path_of(catalogue.entries[0]).read_bytes()
        async with app.router.lifespan_context(app), client_of(app) as client:
            reply = await client.post("/v1/search", params={"k": 3}, files={"image": ("q.jpg", image)})
            # A photo is encoded in stages; a whole photo matched with confidence is answered before the
            # encoder's call ends with the analysis, or the gateway cancels it (no search needs it): its span
            # ends then.
            await _span_finished(spans, "artsearch.v1.EncoderService/EncodeInStages", SpanKind.CLIENT)
    assert reply.status_code == 200, reply.text
    assert reply.json()["degraded"] == []
    finished = spans.get_finished_spans()

    request = next(s for s in finished if s.kind == SpanKind.SERVER and "/v1/search" in s.name)
    trace_id = request.context.trace_id
    for rpc in (
        "artsearch.v1.EncoderService/EncodeInStages",
        "artsearch.v1.SearchService/Search",
        "artsearch.v1.InfluenceService/Distances",
    ):
        client_span = _by_name(finished, rpc, SpanKind.CLIENT)
        assert client_span.context.trace_id == trace_id
        assert client_span.parent is not None and client_span.parent.span_id == request.context.span_id
        # The staged encode ends OK, or CANCELLED when the gateway dropped the analysis before it came (a
        # busy machine): either way not an error.
        ended = {0, 1} if rpc.endswith("EncodeInStages") else {0}
        assert client_span.attributes["rpc.grpc.status_code"] in ended
        assert client_span.status.status_code != StatusCode.ERROR
        # The service's span: same trace, child of the gateway's client span (context sent in metadata).
        server_span = _by_name(finished, f"/{rpc}", SpanKind.SERVER)
        assert server_span.context.trace_id == trace_id
        assert server_span.parent is not None and server_span.parent.span_id == client_span.context.span_id
