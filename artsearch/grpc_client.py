"""Client-side gRPC plumbing: channels with sane options, deadlines, health checks."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from artsearch.config import Env, ServiceAuth
from artsearch.grpc_server import MAX_MESSAGE_BYTES, REQUEST_ID_KEY
from artsearch.service_auth import bearer

# Round-robin over every address the name resolves to: with a headless Kubernetes Service
# (`dns:///encoder.artsearch.svc:50051`) load spreads over all pods instead of pinning one HTTP/2
# connection. Transparent retries cover a pod going away between resolution and the call.
_SERVICE_CONFIG = json.dumps(
    {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ],
    }
)


_Continuation = Callable[[grpc.aio.ClientCallDetails, Any], Awaitable[Any]]


class _SendsToken:
    """Adds `authorization: Bearer <token>` to every call (artsearch.service_auth). grpc.aio files an
    interceptor under the first call kind it implements, so each kind gets an object of its own."""

    def __init__(self, token: str) -> None:
        self._metadata = bearer(token)

    def _with_token(self, details: grpc.aio.ClientCallDetails) -> grpc.aio.ClientCallDetails:
        metadata = grpc.aio.Metadata(*(details.metadata or ()), *self._metadata)
        return grpc.aio.ClientCallDetails(
            details.method, details.timeout, metadata, details.credentials, details.wait_for_ready
        )


class _UnaryUnaryToken(_SendsToken, grpc.aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self, continuation: _Continuation, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_token(client_call_details), request)


class _UnaryStreamToken(_SendsToken, grpc.aio.UnaryStreamClientInterceptor):
    async def intercept_unary_stream(
        self, continuation: _Continuation, client_call_details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        return await continuation(self._with_token(client_call_details), request)


class _StreamUnaryToken(_SendsToken, grpc.aio.StreamUnaryClientInterceptor):
    async def intercept_stream_unary(
        self, continuation: _Continuation, client_call_details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(self._with_token(client_call_details), requests)


class _StreamStreamToken(_SendsToken, grpc.aio.StreamStreamClientInterceptor):
    async def intercept_stream_stream(
        self, continuation: _Continuation, client_call_details: grpc.aio.ClientCallDetails, requests: Any
    ) -> Any:
        return await continuation(self._with_token(client_call_details), requests)


def _token_interceptors(token: str) -> list[_SendsToken]:
    kinds = (_UnaryUnaryToken, _UnaryStreamToken, _StreamUnaryToken, _StreamStreamToken)
    return [kind(token) for kind in kinds]


def open_channel(address: str, token: str | None = None) -> grpc.aio.Channel:
    """An insecure aio channel to `address` (host:port or dns:///host:port). Every call carries the service
    token: `token`, or by default the first of SERVICE_TOKEN in this process's environment (none: no
    token), so that every caller of the services — gateway, ingest, tools — authenticates the same way."""
    token = token if token is not None else ServiceAuth.from_env(Env()).client_token
    interceptors = _token_interceptors(token) if token else None
    return grpc.aio.insecure_channel(
        address,
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.service_config", _SERVICE_CONFIG),
            ("grpc.enable_retries", 1),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.keepalive_timeout_ms", 10_000),
            # Reconnect quickly after a peer restarts instead of waiting out a long backoff.
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ],
    )


def request_metadata(request_id: str) -> tuple[tuple[str, str], ...]:
    return ((REQUEST_ID_KEY, request_id),) if request_id else ()


async def is_serving(channel: grpc.aio.Channel, service: str = "", timeout: float = 1.0) -> bool:
    """True when the peer's gRPC health check answers SERVING within `timeout` seconds."""
    stub = health_pb2_grpc.HealthStub(channel)
    try:
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
    except grpc.aio.AioRpcError:
        return False
    return reply.status == health_pb2.HealthCheckResponse.SERVING
