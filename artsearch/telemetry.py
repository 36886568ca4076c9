"""OpenTelemetry tracing shared by the gateway and the gRPC services, off unless configured.

Environment (read by `TracingSettings.from_env`):
* OTEL_ENABLED: `true` turns tracing on (default `false`: no provider, no exporter, no overhead
  beyond a no-op tracer);
* OTEL_EXPORTER_OTLP_ENDPOINT: the collector's OTLP/gRPC address (default: the exporter's own,
  http://localhost:4317); OTEL_EXPORTER_OTLP_INSECURE / _HEADERS / _CERTIFICATE are read by the
  exporter itself;
* OTEL_SERVICE_NAME: the `service.name` resource attribute (default: the service's own name);
* OTEL_TRACES_SAMPLER_ARG: fraction of new traces sampled, 0..1 (default 1); a request that arrives
  with a sampled parent is always traced (parent-based sampling).

The W3C trace context travels in gRPC metadata (`traceparent`), so a gateway span and the spans of
the services it calls share one trace id.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from dataclasses import dataclass

import grpc
from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.instrumentation.grpc.filters import any_of, health_check, negate, service_prefix
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

from artsearch import settings
from artsearch.config import ConfigError, Env

log = logging.getLogger(__name__)

# The provider this process traces with, once `start_tracing` ran with tracing enabled.
_provider: TracerProvider | None = None


@dataclass(frozen=True)
class TracingSettings:
    enabled: bool = False
    # OTLP/gRPC collector address; None: the exporter's default (or its own environment variables).
    endpoint: str | None = None
    service_name: str = "artsearch"
    sample_ratio: float = 1.0

    @classmethod
    def from_env(cls, env: Env, default_service_name: str) -> TracingSettings:
        ratio = settings.OTEL_TRACES_SAMPLER_ARG.read(env)
        if ratio > 1.0:
            raise ConfigError(f"environment variable OTEL_TRACES_SAMPLER_ARG={ratio} must be <= 1")
        return cls(
            enabled=settings.OTEL_ENABLED.read(env),
            endpoint=settings.OTEL_EXPORTER_OTLP_ENDPOINT.read(env),
            service_name=settings.OTEL_SERVICE_NAME.read(env, default_service_name),
            sample_ratio=ratio,
        )


def start_tracing(settings: TracingSettings, exporter: SpanExporter | None = None) -> TracerProvider | None:
    """Installs the process-wide tracer provider when tracing is enabled; returns it (None when off).

    Once per process: a later call returns the provider already installed. `exporter` replaces the
    OTLP exporter (tests pass the SDK's in-memory one; spans are then exported synchronously).
    """
    global _provider
    if not settings.enabled:
        return _provider
    if _provider is not None:
        return _provider
    provider = TracerProvider(
        resource=Resource.create({"service.name": settings.service_name}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample_ratio)),
    )
    if exporter is None:
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _provider = provider
    log.info("tracing on", extra={"otlp_endpoint": settings.endpoint or "default"})
    return provider


def active_tracer_provider() -> TracerProvider | None:
    """The provider `start_tracing` installed, or None when tracing is off in this process."""
    return _provider


def shutdown_tracing() -> None:
    """Flushes spans still buffered (call on shutdown; harmless when tracing is off)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis=5_000)


def grpc_server_interceptors(provider: TracerProvider | None) -> list[grpc.aio.ServerInterceptor]:
    """A span per RPC, child of the caller's span when the metadata carries a trace context.

    Health checks and reflection are not traced: load balancers and readiness probes poll them."""
    if provider is None:
        return []
    not_probes = negate(any_of(health_check(), service_prefix("grpc.reflection")))
    return [aio_server_interceptor(tracer_provider=provider, filter_=not_probes)]


def inject_trace_context(carrier: MutableMapping[str, str]) -> MutableMapping[str, str]:
    """Adds the current span's W3C trace context (`traceparent`, ...) to outgoing metadata."""
    propagate.inject(carrier)
    return carrier
