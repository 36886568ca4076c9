"""Server bootstrap shared by every gRPC service: grpc.aio, health checking, reflection, request ids,
Prometheus metrics, graceful shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio
from grpc_reflection.v1alpha import reflection
from prometheus_client import Counter, Histogram, start_http_server

from artsearch.config import ConfigError, Env, ListenSettings
from artsearch.jsonlog import configure_logging, request_id_var

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
REQUEST_ID_KEY = "x-request-id"

RPC_TOTAL = Counter("artsearch_grpc_server_handled_total", "RPCs handled", ["method", "code"])
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


class _ObservingInterceptor(grpc.aio.ServerInterceptor):
    """Sets the request id context for logging and records metrics for every unary call."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        request_id = dict(handler_call_details.invocation_metadata or ()).get(REQUEST_ID_KEY, "")
        inner = handler.unary_unary

        async def observed(request: object, context: grpc.aio.ServicerContext) -> object:
            token = request_id_var.set(str(request_id))
            started = time.perf_counter()
            code = "OK"
            try:
                return await inner(request, context)
            except BaseException:
                code = (context.code() or grpc.StatusCode.UNKNOWN).name
                raise
            finally:
                if context.code() not in (None, grpc.StatusCode.OK):
                    code = context.code().name
                RPC_SECONDS.labels(method).observe(time.perf_counter() - started)
                RPC_TOTAL.labels(method, code).inc()
                request_id_var.reset(token)

        return grpc.unary_unary_rpc_method_handler(
            observed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class GrpcServiceServer:
    """A grpc.aio server with health checking and reflection for the given services.

    Tests start it in-process on port 0; `run_service` runs it until a signal arrives.
    """

    def __init__(self, services: Sequence[ServiceRegistration], address: str = "127.0.0.1:0") -> None:
        self._services = list(services)
        self._address = address
        self.health = health_aio.HealthServicer()
        self.server = grpc.aio.server(
            interceptors=[_ObservingInterceptor()],
            options=[
                ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                ("grpc.so_reuseport", 0),
            ],
        )
        self.port = 0

    async def start(self) -> int:
        """Starts serving; returns the bound port. Every service reports SERVING."""
        for service in self._services:
            service.add_to_server(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [s.full_name for s in self._services]
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
    address: str,
    *,
    metrics_port: int | None = None,
    on_shutdown: Callable[[], Awaitable[None]] | None = None,
    grace: float = 5.0,
) -> None:
    """Serves until SIGTERM or SIGINT, then shuts down gracefully."""
    server = GrpcServiceServer(services, address)
    port = await server.start()
    if metrics_port:
        start_http_server(metrics_port, addr=address.rsplit(":", 1)[0].strip("[]") or "0.0.0.0")
    log.info("serving", extra={"address": address, "port": port, "services": [s.full_name for s in services]})
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
        config = load_config(Env())
        configure_logging(name, config.listen.log_level)
        asyncio.run(serve(config))
    except (ConfigError, *start_errors) as error:
        log.error("cannot start: %s", error, extra={"service": name})
        return 2
    return 0
