"""Catalogue management over HTTP (artworks, artists, influences), guarded by admin API keys.

Who may write: a request carrying a configured key (`X-API-Key: KEY` or `Authorization: Bearer KEY`),
within that key's rate limit. Without a key or with a wrong one: 401. When no key is configured at all
(ADMIN_API_KEYS unset or empty) the admin API is switched off: the guarded routes answer 403
`admin_disabled` (a configuration state, not a transient outage, so not 503). Read-only artist routes
(GET /v1/artists...) need no key. docs/admin.md shows how to make keys and call every route.

Settings (environment):
  ADMIN_API_KEYS              comma-separated `name:sha256hex` (see services/gateway/api_keys.py)
  ADMIN_RATE_LIMIT_PER_MIN    sustained requests per minute per key (default 60)
  ADMIN_RATE_LIMIT_BURST      requests a key may make at once before the sustained rate applies (default 20)
  ADMIN_MAX_BATCH_ITEMS       images per POST /v1/artworks/batch (default 32)
  ADMIN_DEFAULT_CATALOGUE     catalogue of an added artwork that names none (default "uploads")
  IMAGE_ROOT                  where added images are written, as IMAGE_ROOT/<catalogue>/<id>.<ext>;
                              unset: images are encoded and indexed but not kept
  MAX_IMAGE_PIXELS            largest accepted image, in pixels (default 50,000,000, as the encoder's)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from artsearch.config import ConfigError, Env
from services.gateway.api_keys import ApiKey, ApiKeyRing, parse_api_keys
from services.gateway.artwork_records import check_catalogue_name
from services.gateway.errors import ApiError
from services.gateway.rate_limit import KeyedRateLimiter

API_KEY_HEADER = "x-api-key"
DEFAULT_CATALOGUE = "uploads"


@dataclass(frozen=True)
class AdminSettings:
    api_keys: tuple[ApiKey, ...] = ()
    rate_limit_per_min: float = 60.0
    rate_limit_burst: int = 20
    max_batch_items: int = 32
    default_catalogue: str = DEFAULT_CATALOGUE
    image_root: Path | None = None
    max_image_pixels: int = 50_000_000

    @classmethod
    def from_env(cls, env: Env) -> AdminSettings:
        catalogue = env.str("ADMIN_DEFAULT_CATALOGUE", DEFAULT_CATALOGUE)
        try:
            check_catalogue_name(catalogue)
        except ApiError as error:
            raise ConfigError(f"ADMIN_DEFAULT_CATALOGUE: {error.message}") from None
        image_root = env.optional("IMAGE_ROOT")
        return cls(
            api_keys=parse_api_keys(env.optional("ADMIN_API_KEYS")),
            rate_limit_per_min=env.float("ADMIN_RATE_LIMIT_PER_MIN", 60.0, minimum=0.001),
            rate_limit_burst=env.int("ADMIN_RATE_LIMIT_BURST", 20, minimum=1),
            max_batch_items=env.int("ADMIN_MAX_BATCH_ITEMS", 32, minimum=1),
            default_catalogue=catalogue,
            image_root=Path(image_root) if image_root else None,
            max_image_pixels=env.int("MAX_IMAGE_PIXELS", 50_000_000, minimum=64),
        )


class AdminGuard:
    """Says who is calling (the key's name) or raises ApiError: 403 admin off, 401 no or wrong key, 429
    over the key's rate limit (with Retry-After in whole seconds)."""

    def __init__(self, settings: AdminSettings) -> None:
        self._keys = ApiKeyRing(settings.api_keys)
        self._limiter = KeyedRateLimiter(settings.rate_limit_per_min, settings.rate_limit_burst)

    def __call__(self, request: Request) -> str:
        if not self._keys:
            raise ApiError(
                403, "admin_disabled", "the admin API is disabled: no ADMIN_API_KEYS are configured"
            )
        presented = _presented_key(request)
        if presented is None:
            raise ApiError(
                401,
                "unauthorized",
                "this route needs an admin API key (X-API-Key header or Authorization: Bearer)",
                {"WWW-Authenticate": "Bearer"},
            )
        owner = self._keys.identify(presented)
        if owner is None:
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


def _presented_key(request: Request) -> str | None:
    key = request.headers.get(API_KEY_HEADER)
    if key:
        return key.strip()
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


async def _api_error(_: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return JSONResponse(
        {"error": {"code": error.code, "message": error.message}},
        status_code=error.status,
        headers=error.headers,
    )


def install_admin_routes(app: FastAPI, settings: AdminSettings) -> None:
    """Adds the admin routes to the app."""
    from services.gateway.artist_admin import install_artist_routes
    from services.gateway.catalogue_admin import install_catalogue_routes

    if ApiError not in app.exception_handlers:
        app.add_exception_handler(ApiError, _api_error)
    guard = AdminGuard(settings)

    async def require_admin(request: Request) -> str:
        return guard(request)

    install_catalogue_routes(app, settings, require_admin)
    install_artist_routes(app, require_admin)
