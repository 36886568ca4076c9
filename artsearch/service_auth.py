"""Authentication between the services: a shared token on every gRPC call.

Without it any pod that can reach a service port can call its destructive RPCs (Delete, SetAlias with
replace, RestoreSnapshot); NetworkPolicies were the only guard. With SERVICE_TOKEN set:

- a server (encoder, search, influence) answers UNAUTHENTICATED to every call whose `authorization`
  metadata is not `Bearer <one of the tokens>` (compared in constant time) — except gRPC health checks,
  which kubelet probes and load balancers make without credentials;
- a client (the gateway, the `artsearch` command, the ingest Job) sends the first token on every call:
  `artsearch.grpc_client.open_channel` reads it from the same variable.

SERVICE_TOKEN is a comma-separated list so that a token can be rotated without downtime: "old,new"
everywhere (clients send old, servers accept both), then "new,old", then "new". Each token is at least
32 characters (`openssl rand -hex 32`). Unset: no authentication (local development, the demo).

The token travels in clear text inside the cluster network (the services speak plaintext gRPC): it is a
guard against callers that are not ours, not against an observer on the network; a service mesh (Linkerd,
Istio) adds mTLS underneath without changes here.

GRPC_REFLECTION (default true) turns server reflection off; production does (it describes the whole API to
anyone who can connect). With a token set, reflection needs the token too.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Sequence

import grpc

AUTHORIZATION_KEY = "authorization"
# Health checks answer anyone: kubelet's gRPC probes and Docker's health checks carry no credentials.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return ((AUTHORIZATION_KEY, f"Bearer {token}"),)


def _presented_token(metadata: Sequence[tuple[str, str | bytes]] | None) -> str:
    for key, value in metadata or ():
        if key == AUTHORIZATION_KEY and isinstance(value, str) and value.startswith("Bearer "):
            return value.removeprefix("Bearer ")
    return ""


def token_matches(presented: str, tokens: Sequence[str]) -> bool:
    """Constant-time comparison against every accepted token (no early exit on the first match)."""
    matched = False
    for token in tokens:
        matched |= hmac.compare_digest(presented.encode(), token.encode())
    return matched


class TokenCheckingInterceptor(grpc.aio.ServerInterceptor):
    """Refuses every call but health checks unless it presents one of the accepted tokens."""

    def __init__(self, tokens: Sequence[str]) -> None:
        if not tokens:
            raise ValueError("a token-checking interceptor needs at least one token")
        self._tokens = tuple(tokens)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        presented = _presented_token(handler_call_details.invocation_metadata)
        if method.startswith(UNAUTHENTICATED_PREFIXES) or token_matches(presented, self._tokens):
            return await continuation(handler_call_details)
        return _refusal(await continuation(handler_call_details), presented)


def _refusal(handler: grpc.RpcMethodHandler | None, presented: str) -> grpc.RpcMethodHandler | None:
    """A handler of the same shape that answers UNAUTHENTICATED without running the service."""
    if handler is None:
        return None
    details = "a valid service token is required" if not presented else "the service token is not valid"

    async def refuse(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    async def refuse_stream(_request: object, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)
        yield  # pragma: no cover - makes this an async generator, as streaming handlers are

    if handler.unary_unary is not None:
        return grpc.unary_unary_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    if handler.unary_stream is not None:
        return grpc.unary_stream_rpc_method_handler(
            refuse_stream, handler.request_deserializer, handler.response_serializer
        )
    if handler.stream_unary is not None:
        return grpc.stream_unary_rpc_method_handler(
            refuse, handler.request_deserializer, handler.response_serializer
        )
    return grpc.stream_stream_rpc_method_handler(
        refuse_stream, handler.request_deserializer, handler.response_serializer
    )
