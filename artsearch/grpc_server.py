"""Server bootstrap shared by every gRPC service: grpc.aio, health checking, reflection, request ids,
access log lines, Prometheus metrics, OpenTelemetry spans (when enabled), graceful shutdown on
SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from opentelemetry.sdk.trace import TracerProvider
from prometheus_client import Counter, Histogram, start_http_server

from artsearch.config import ConfigError, Env, ListenSettings, ServiceAuth
from artsearch.jsonlog import accept_request_id, configure_logging, request_id_var
from artsearch.service_auth import TokenCheckingInterceptor
from artsearch.telemetry import (
    TracingSettings,
    active_tracer_provider,
    grpc_server_interceptors,
    shutdown_tracing,
    start_tracing,
)

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REQUEST_ID_KEY = "x-request-id"

RPC_TOTAL = Counter("artsearch_grpc_server_handled_total", "RPCs handled", ["method", "code"])
# Counted as each call begins (grpc-prometheus's grpc_server_started_total): a streaming call's end, which
# `handled` counts, may come after its caller has already answered with its first messages.
RPC_STARTED = Counter("artsearch_grpc_server_started", "RPCs started", ["method"])
RPC_SECONDS = Histogram(
    "artsearch_grpc_server_handling_seconds",
    "RPC handling time",
    ["method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


@dataclass(frozen=True)
class ServiceRegistration:
    """One gRPC service to expose: its full name (for health and reflection) and how to add it."""

    full_name: str
    add_to_server: Callable[[grpc.aio.Server], None]


# Polled by load balancers and readiness probes: counted in metrics, not logged per call.
_PROBE_PREFIXES = ("/grpc.health.", "/grpc.reflection.")


class _ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id context for logging, logs and records metrics for every unary call and every
    server-streaming one (the encoder's EncodeInStages, health Watch).

    The id comes from the caller's `x-request-id` metadata, or is made up when absent, so that every
    line logged while serving a call can be correlated. grpc.aio serves each RPC in its own asyncio
    task, so the id is set for the rest of that task (not reset when the handler returns): grpc's own
    log line about a handler that raised is written after the handler, and carries the id too."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or (handler.unary_unary is None and handler.unary_stream is None):
            return handler
        method = handler_call_details.method
        proposed = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_KEY)
        call = _ObservedCall(method, accept_request_id(proposed if isinstance(proposed, str) else None))
        if handler.unary_unary is not None:
            inner = handler.unary_unary

            async def observed(request: object, context: grpc.aio.ServicerContext) -> object:
                with call.observing(context):
                    return await inner(request, context)

            return grpc.unary_unary_rpc_method_handler(
                observed,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        streaming = handler.unary_stream

        async def observed_stream(
            request: object, context: grpc.aio.ServicerContext
        ) -> AsyncIterator[object]:
            # A stream is observed from its call to its last message (or its failure).
            with call.observing(context):
                async for response in streaming(request, context):
                    yield response

        return grpc.unary_stream_rpc_method_handler(
            observed_stream,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


@dataclass(frozen=True)
class _ObservedCall:
    method: str
    request_id: str

    @contextmanager
    def observing(self, context: grpc.aio.ServicerContext) -> Iterator[None]:
        """Sets the request id; records the call's time and code, and logs it (probes are not logged)."""
        request_id_var.set(self.request_id)
        RPC_STARTED.labels(self.method).inc()
        started = time.perf_counter()
        code = "OK"
        try:
            yield
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED.name  # the caller cancelled (or the server is stopping)
            raise
        except BaseException:
            code = (context.code() or grpc.StatusCode.UNKNOWN).name
            raise
        finally:
            if context.code() not in (None, grpc.StatusCode.OK):
                code = context.code().name
            elapsed = time.perf_counter() - started
            RPC_SECONDS.labels(self.method).observe(elapsed)
            RPC_TOTAL.labels(self.method, code).inc()
            if not self.method.startswith(_PROBE_PREFIXES):
                log.info("rpc", extra={"method": self.method, "code": code, "ms": round(elapsed * 1000, 2)})


class GrpcServiceServer:
    """A grpc.aio server with health checking and reflection for the given services.

    Tests start it in-process on port 0; `run_service` runs it until a signal arrives. With a tracer
    provider (by default the one `start_tracing` installed, if any) every RPC gets a span, child of
    the caller's when the metadata carries a trace context.
    """

    def __init__(
        self,
        services: Sequence[ServiceRegistration],
        address: str = "127.0.0.1:0",
        tracer_provider: TracerProvider | None = None,
        auth: ServiceAuth | None = None,
    ) -> None:
        self._services = list(services)
        self._address = address
        self._auth = auth or ServiceAuth()
        self.health = health_aio.HealthServicer()
        provider = tracer_provider or active_tracer_provider()
        # A refused call is still counted and logged (observing wraps it), with its UNAUTHENTICATED code.
        checking = [TokenCheckingInterceptor(self._auth.tokens)] if self._auth.tokens else []
        self.server = grpc.aio.server(
            # Tracing first, so that the log lines of the call carry its trace id.
            interceptors=[*grpc_server_interceptors(provider), _ObservingInterceptor(), *checking],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
                # Clients re-resolve DNS only when a connection ends: closing each one after ~5 minutes
                # (in-flight calls get 30 s to finish) lets round-robin clients find new replicas.
                ("grpc.max_connection_age_ms", 300_000),
                ("grpc.max_connection_age_grace_ms", 30_000),
            ],
        )
        self.port = 0

    async def start(self) -> int:
        """Starts serving; returns the bound port. Every service reports SERVING."""
        for service in self._services:
            service.add_to_server(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [s.full_name for s in self._services]
        if self._auth.reflection:
            reflection.enable_server_reflection(
                [*names, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
                self.server,
            )
        self.port = self.server.add_insecure_port(self._address)
        if self.port == 0:
            raise OSError(f"cannot bind gRPC server to {self._address}")
        await self.server.start()
        for name in ["", *names]:
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        return self.port

    async def stop(self, grace: float = 5.0) -> None:
        """Reports NOT_SERVING so load balancers drain, then lets in-flight calls finish."""
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)


async def run_service(
    services: Sequence[ServiceRegistration],
    listen: ListenSettings,
    *,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    grace: float = 5.0,
) -> None:
    """Serves on `listen` (address, metrics port, service token, reflection) until SIGTERM or SIGINT, then
    shuts down gracefully."""
    address = listen.address
    server = GrpcServiceServer(services, address, auth=listen.auth)
    port = await server.start()
    if listen.metrics_port:
        start_http_server(listen.metrics_port, addr=address.rsplit(":", 1)[0].strip("[]") or "0.0.0.0")
    log.info(
        "serving",
        extra={
            "address": address,
            "port": port,
            "services": [s.full_name for s in services],
            "token_required": bool(listen.auth.tokens),
            "reflection": listen.auth.reflection,
        },
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down", extra={"grace_s": grace})
    await server.stop(grace)
    if on_shutdown is not None:
        await on_shutdown()


class ServiceConfig(Protocol):
    @property
    def listen(self) -> ListenSettings: ...


ConfigT = TypeVar("ConfigT", bound=ServiceConfig)


def service_main(
    name: str,
    load_config: Callable[[Env], ConfigT],
    serve: Callable[[ConfigT], Awaitable[None]],
    start_errors: tuple[type[Exception], ...] = (),
) -> int:
    """The body of every service's `__main__`: read the configuration, log JSON, serve until a signal.

    A configuration error (or one of `start_errors`, e.g. storage that cannot be opened) is logged and
    gives exit code 2, so an orchestrator sees a failed start rather than a crash loop with a traceback.
    """
    configure_logging(name, "INFO")  # so that a configuration error is logged as JSON too
    try:
        env = Env()
        config = load_config(env)
        configure_logging(name, config.listen.log_level)
        start_tracing(TracingSettings.from_env(env, f"artsearch-{name}"))
        asyncio.run(serve(config))
    except (ConfigError, *start_errors) as error:
        log.error("cannot start: %s", error, extra={"service": name})
        return 2
    finally:
        shutdown_tracing()
    return 0
