"""The admin API keys guarding catalogue management over HTTP (artworks, artists, influences: their routes
are services/gateway/routes/admin_artworks.py and artists.py).

Who may write: a request carrying a configured key (`X-API-Key: KEY` or `Authorization: Bearer KEY`),
within that key's rate limit. Without a key or with a wrong one: 401. When no key is configured at all
(ADMIN_API_KEYS unset or empty) the admin API is switched off: the guarded routes answer 403
`admin_disabled` (a configuration state, not a transient outage, so not 503). Read-only artist routes
(GET /v1/artists...) need no key. docs/admin.md shows how to make keys and call every route.

A client (its address, services/gateway/clients.py) that presents wrong keys too often is answered 429 with
Retry-After, before its key is even looked at, until it may try again; the moment it is throttled is
logged. A key is never counted against the client that presents it correctly.

The key is checked from the request's headers before any of its body is read (AdminAuthMiddleware, a pure
ASGI middleware in front of the routes whose dependencies include the admin check): an anonymous client
cannot make the gateway receive and spool a large upload. The route's own dependency then reuses that
decision, so a request takes one token of its key's rate limit, not two.

Settings (environment): ADMIN_API_KEYS, ALLOW_DEV_ADMIN_KEY, ADMIN_AUTH_MAX_FAILURES,
ADMIN_AUTH_FAILURE_WINDOW_S, TRUSTED_PROXIES, RATE_LIMIT_MAX_CLIENTS, ADMIN_RATE_LIMIT_PER_MIN,
ADMIN_RATE_LIMIT_BURST, ADMIN_MAX_BATCH_ITEMS, ADMIN_DEFAULT_CATALOGUE, ADMIN_WRITE_TIMEOUT_S, IMAGE_ROOT,
MAX_IMAGE_PIXELS; each declared, with its default and meaning, in services/gateway/settings.py (the table:
docs/architecture.md, "Configuration").
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from fastapi import FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from services.gateway.admin_settings import AdminSettings
from services.gateway.api_keys import ApiKeyRing
from services.gateway.body_limit import error_answer, matched_route, remaining_body, send_early_answer
from services.gateway.clients import client_of
from services.gateway.errors import ApiError
from services.gateway.rate_limit import FailureThrottle, KeyedRateLimiter

log = logging.getLogger(__name__)

API_KEY_HEADER = "x-api-key"
# Where AdminAuthMiddleware leaves its decision for the route dependency (the request's ASGI state).
ADMIN_OWNER_STATE = "artsearch.admin_owner"


class AdminGuard:
    """Says who is calling (the key's name) or raises ApiError: 403 admin off, 429 a client that presented
    too many wrong keys, 401 no or wrong key, 429 over the key's rate limit (Retry-After in whole
    seconds)."""

    def __init__(self, settings: AdminSettings) -> None:
        self._keys = ApiKeyRing(settings.api_keys)
        self._limiter = KeyedRateLimiter(settings.rate_limit_per_min, settings.rate_limit_burst)
        self.failures = FailureThrottle(
            settings.auth_max_failures, settings.auth_failure_window_s, settings.max_clients
        )
        self.trusted_proxies = settings.trusted_proxies

    def check(self, headers: Headers, client: str) -> str:
        """The owner of the key these request headers present; takes one token of its rate limit. `client`
        is who sends them (clients.client_of), throttled after too many wrong keys."""
        if not self._keys:
            raise ApiError(
                403, "admin_disabled", "the admin API is disabled: no ADMIN_API_KEYS are configured"
            )
        throttled = self.failures.retry_after(client)
        if throttled:
            raise ApiError(
                429,
                "rate_limited",
                f"too many wrong admin keys from this client; retry in {throttled} s",
                {"Retry-After": str(throttled)},
            )
        presented = _presented_key(headers)
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "this route needs an admin API key (X-API-Key header or Authorization: Bearer)",
                {"WWW-Authenticate": "Bearer"},
            )
        owner = self._keys.identify(presented)
        if owner is None:
            self._wrong_key(client)
            raise ApiError(401, "unauthorized", "the API key is not valid", {"WWW-Authenticate": "Bearer"})
        wait = self._limiter.retry_after(owner)
        if wait:
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests for this key; retry in {wait} s",
                {"Retry-After": str(wait)},
            )
        return owner

    def _wrong_key(self, client: str) -> None:
        if self.failures.failed(client):
            # Once per throttling, not per refused attempt: a guessing client cannot flood the log.
            log.warning(
                "admin key guessing: client throttled",
                extra={"client": client, "retry_after_s": self.failures.retry_after(client)},
            )

    def __call__(self, request: Request) -> str:
        """The route dependency: the owner the middleware already found for this request (one rate-limit
        token per request), else the check itself (an app built without AdminAuthMiddleware)."""
        decided = request.scope.get("state", {}).get(ADMIN_OWNER_STATE)
        if isinstance(decided, _Decision) and decided.guard is self:
            return decided.owner
        return self.check(request.headers, client_of(request.scope, self.trusted_proxies))


@dataclass(frozen=True)
class _Decision:
    guard: AdminGuard
    owner: str


class AdminAuthMiddleware:
    """Checks the admin key of a request to an admin-guarded route from its headers alone, before a byte
    of its body is read: a client without a valid key (or over its rate limit) gets its 401/403/429 at
    once and cannot make the gateway receive and buffer a large upload. The decision is left in the
    request's state for the route's dependency, which then takes no second rate-limit token."""

    def __init__(
        self, app: ASGIApp, *, guard: AdminGuard, routes: Sequence[BaseRoute], guarded: Collection[BaseRoute]
    ) -> None:
        self.app = app
        self._guard = guard
        self._routes = routes  # the app's live route list: the router's order decides which route serves
        self._guarded = {id(route) for route in guarded}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = matched_route(self._routes, scope) if scope["type"] == "http" else None
        if route is None or id(route) not in self._guarded:
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        try:
            owner = self._guard.check(headers, client_of(scope, self._guard.trusted_proxies))
        except ApiError as error:
            scope["route"] = route  # the route label of the metrics
            answer = error_answer(error.status, error.code, error.message, error.headers)
            await send_early_answer(answer, remaining_body(headers), receive, send)
            return
        scope.setdefault("state", {})[ADMIN_OWNER_STATE] = _Decision(self._guard, owner)
        await self.app(scope, receive, send)


def _presented_key(headers: Headers) -> str | None:
    key = headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


async def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_answer(error.status, error.code, error.message, error.headers)


def _depends_on(dependant: Dependant, call: object) -> bool:
    return dependant.call is call or any(_depends_on(d, call) for d in dependant.dependencies)


async def require_admin(request: Request) -> str:
    """The dependency of every admin route: the key's owner, or the refusal (as ApiError). The guard is the
    app's (install_admin_guard)."""
    guard: AdminGuard = request.app.state.admin_guard
    return guard(request)


def install_admin_guard(app: FastAPI, settings: AdminSettings) -> None:
    """The admin routes' key check: the guard the `require_admin` dependency asks, and the middleware
    checking keys before bodies are read (install it inside the app's request-context middleware, so its
    answers are logged and counted). Call it after the admin routes are included (services/gateway/routes/
    admin_artworks.py, artists.py): the middleware guards the routes that depend on `require_admin`."""
    if ApiError not in app.exception_handlers:
        app.add_exception_handler(ApiError, _api_error)
    guard = AdminGuard(settings)
    app.state.admin_guard = guard
    guarded = [r for r in app.routes if isinstance(r, APIRoute) and _depends_on(r.dependant, require_admin)]
    app.add_middleware(AdminAuthMiddleware, guard=guard, routes=app.routes, guarded=guarded)
