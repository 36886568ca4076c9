"""The gateway's side of fetching an image from a URL a client sent: `artsearch.safe_fetch` (the SSRF
policy, redirects, limits, content checks) with every failure as an ApiError: 400 (bad or forbidden URL),
413 (too large), 415 (not an image), 422 (the remote server failed, timed out or redirected too often).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from artsearch import safe_fetch
from artsearch.safe_fetch import FetchedImage, FetchRefused, IPAddress, refusal_reason
from services.gateway.errors import ApiError

__all__ = [
    "FetchSettings",
    "FetchedImage",
    "IPAddress",
    "fetch_image",
    "parse_url",
    "refusal_reason",
    "vetted_address",
]


@dataclass(frozen=True)
class FetchSettings(safe_fetch.FetchSettings):
    # `allow_private` is for tests only here (URL_FETCH_ALLOW_PRIVATE): the test servers run on 127.0.0.1.
    user_agent: str = "artsearch-gateway/1.0 (+image search by URL)"


@contextmanager
def _as_api_error() -> Iterator[None]:
    try:
        yield
    except FetchRefused as refused:
        raise ApiError(refused.status, refused.code, refused.message) from None


def parse_url(url: str) -> safe_fetch.FetchTarget:
    """Checks and normalises a client's URL; raises ApiError(400, "invalid_url")."""
    with _as_api_error():
        return safe_fetch.parse_url(url)


async def vetted_address(host: str, port: int, *, allow_private: bool = False) -> str:
    """The vetted address to connect to for `host` (see safe_fetch.vetted_address); raises ApiError."""
    with _as_api_error():
        return await safe_fetch.vetted_address(host, port, allow_private=allow_private)


async def fetch_image(url: str, settings: safe_fetch.FetchSettings) -> FetchedImage:
    """Downloads the image at `url` under the SSRF policy; raises ApiError."""
    with _as_api_error():
        return await safe_fetch.fetch_image(url, settings)
