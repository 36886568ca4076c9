"""Load shedding at the door: per-client limits on the public routes that make the encoder decode an image
(POST /v1/search, by upload or by URL, and POST /v1/predict-style), checked from the request line and
headers before a byte of the body is read (a pure ASGI middleware, as the admin key check).

A client (services/gateway/clients.py: the peer address, or behind TRUSTED_PROXIES the forwarded one) gets
429 `rate_limited` with Retry-After (whole seconds, at least 1) when it has PUBLIC_MAX_CONCURRENT_PER_CLIENT
requests in flight on these routes already, or when its token bucket (PUBLIC_RATE_BURST requests at once,
refilled at PUBLIC_RATE_PER_MIN) is empty. A batch of searches (POST /v1/search/batch) costs a token per
query: one at the door, the others once its body says how many (`charge_queries`). Answers shed so are
counted in `artsearch_http_shed_total`.
Memory is bounded: a client is forgotten once it is idle (bucket full again, nothing in flight), and at most
RATE_LIMIT_MAX_CLIENTS are remembered (services/gateway/rate_limit.py). Limits are per gateway process.

Both limits are off by default (0): behind a proxy that is not in TRUSTED_PROXIES every request comes from
the proxy's address, and a per-client limit would then be one limit for everybody. Set TRUSTED_PROXIES to
the ingress or load balancer addresses first.

Settings (environment): PUBLIC_RATE_PER_MIN, PUBLIC_RATE_BURST, PUBLIC_MAX_CONCURRENT_PER_CLIENT,
TRUSTED_PROXIES, RATE_LIMIT_MAX_CLIENTS; each declared, with its default and meaning, in
services/gateway/settings.py (the table: docs/architecture.md, "Configuration").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from prometheus_client import Counter
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from artsearch.config import Env
from services.gateway import settings as declared
from services.gateway.body_limit import error_answer, matched_route, remaining_body, send_early_answer
from services.gateway.clients import IPNetwork, client_of, trusted_proxies_from_env
from services.gateway.errors import ApiError
from services.gateway.rate_limit import ClientLimiter, Verdict

# The routes whose requests make the encoder decode an image: (method, route path).
LIMITED_ROUTES = frozenset(
    {("POST", "/v1/search"), ("POST", "/v1/search/batch"), ("POST", "/v1/predict-style")}
)

SHED = Counter(
    "artsearch_http_shed_total",
    "Requests to the public image routes answered 429 before their body was read, by why",
    ["route", "reason"],
)


@dataclass(frozen=True)
class PublicLimitSettings:
    rate_per_min: float = 0.0
    burst: int = 20
    max_concurrent_per_client: int = 0
    trusted_proxies: tuple[IPNetwork, ...] = ()
    max_clients: int = 100_000

    @classmethod
    def from_env(cls, env: Env) -> PublicLimitSettings:
        return cls(
            rate_per_min=declared.PUBLIC_RATE_PER_MIN.read(env),
            burst=declared.PUBLIC_RATE_BURST.read(env),
            max_concurrent_per_client=declared.PUBLIC_MAX_CONCURRENT_PER_CLIENT.read(env),
            trusted_proxies=trusted_proxies_from_env(env),
            max_clients=declared.RATE_LIMIT_MAX_CLIENTS.read(env),
        )


# Where an admitted request's client is kept, for `charge_queries` (the request's state, from its scope).
_ADMITTED = "public_limit_client"


@dataclass(frozen=True)
class AdmittedClient:
    limiter: ClientLimiter
    client: str


def charge_queries(request: Request, count: int) -> None:
    """A request found to carry `count` searches (a batch) costs a token each: the first was taken when it
    was admitted, the others now; 429 rate_limited (Retry-After) when the client's bucket lacks them, before
    any search is run. Nothing happens where the public limits are off."""
    admitted = getattr(request.state, _ADMITTED, None)
    if admitted is None:
        return
    verdict = admitted.limiter.charge(admitted.client, count - 1)
    if not verdict:
        SHED.labels(request.url.path, verdict.kind).inc()
        message = f"{verdict.reason} ({count} in this batch); retry in {verdict.retry_after} s"
        raise ApiError(429, "rate_limited", message, {"Retry-After": str(verdict.retry_after)})


class PublicLimitMiddleware:
    """Admits or sheds requests to LIMITED_ROUTES per client (see the module doc); other routes pass."""

    def __init__(self, app: ASGIApp, *, settings: PublicLimitSettings, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._routes = routes  # the app's live route list: the router's order decides which route serves
        self._trusted = settings.trusted_proxies
        self.limiter = ClientLimiter(
            settings.rate_per_min, settings.burst, settings.max_concurrent_per_client, settings.max_clients
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = self._limited_route(scope)
        if route is None:
            await self.app(scope, receive, send)
            return
        client = client_of(scope, self._trusted)
        verdict = self.limiter.admit(client)
        if not verdict:
            await self._shed(route, verdict, scope, receive, send)
            return
        scope.setdefault("state", {})[_ADMITTED] = AdmittedClient(self.limiter, client)
        try:
            await self.app(scope, receive, send)
        finally:
            self.limiter.release(client)

    def _limited_route(self, scope: Scope) -> BaseRoute | None:
        if scope["type"] != "http" or not self.limiter.enabled:
            return None
        route = matched_route(self._routes, scope)
        path = getattr(route, "path", None)
        return route if (scope["method"], path) in LIMITED_ROUTES else None

    @staticmethod
    async def _shed(route: BaseRoute, verdict: Verdict, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = route  # the route label of the request metrics
        SHED.labels(getattr(route, "path", ""), verdict.kind).inc()
        wait = str(verdict.retry_after)
        message = f"{verdict.reason}; retry in {wait} s"
        answer = error_answer(429, "rate_limited", message, {"Retry-After": wait})
        await send_early_answer(answer, remaining_body(Headers(scope=scope)), receive, send)
