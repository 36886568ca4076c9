"""Downloads the images of a URL manifest: http(s) only, bounded in size and time, images only.

Every failure is a `DownloadRejected` with a reason for the ingest report; nothing here raises anything
else for a bad URL or a bad server answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from artsearch.image_formats import SNIFF_BYTES, sniff_image_format

ALLOWED_SCHEMES = frozenset({"http", "https"})
# Content types that may carry an image when a server does not know better; the bytes decide.
_NEUTRAL_TYPES = frozenset({"", "application/octet-stream", "binary/octet-stream"})


class DownloadRejected(ValueError):
    """The URL could not be fetched as an image; `reason` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DownloadLimits:
    max_bytes: int = 50 * 1024 * 1024
    timeout_s: float = 30.0
    concurrency: int = 8
    max_redirects: int = 5


def check_url(url: str) -> str:
    """The URL when it is an absolute http(s) URL with a host; DownloadRejected otherwise."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ALLOWED_SCHEMES:
        scheme = parts.scheme or "a relative"
        raise DownloadRejected(f"only http and https URLs are fetched, not {scheme} URL")
    if not parts.hostname:
        raise DownloadRejected("URL has no host")
    return url


class Downloader:
    """One shared HTTP client with a cap on concurrent downloads."""

    def __init__(self, limits: DownloadLimits = DownloadLimits()) -> None:
        self.limits = limits
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(limits.timeout_s),
            follow_redirects=True,
            max_redirects=limits.max_redirects,
            headers={"User-Agent": "artsearch-ingest/1", "Accept": "image/*"},
        )
        self._slots = asyncio.Semaphore(limits.concurrency)

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    async def fetch(self, url: str) -> bytes:
        """The image bytes at `url`. Raises DownloadRejected."""
        check_url(url)
        async with self._slots:
            try:
                return await asyncio.wait_for(self._fetch(url), self.limits.timeout_s)
            except (TimeoutError, httpx.TimeoutException):
                raise DownloadRejected(f"download took longer than {self.limits.timeout_s:g} s") from None
            except httpx.TooManyRedirects:
                raise DownloadRejected(f"more than {self.limits.max_redirects} redirects") from None
            except httpx.UnsupportedProtocol:
                raise DownloadRejected("redirected to a URL that is not http or https") from None
            except httpx.HTTPError as error:
                raise DownloadRejected(f"download failed: {type(error).__name__}: {error}") from None

    async def _fetch(self, url: str) -> bytes:
        async with self._client.stream("GET", url) as response:
            if response.status_code != 200:
                raise DownloadRejected(f"HTTP {response.status_code} {response.reason_phrase}".strip())
            self._check_headers(response)
            data = bytearray()
            async for chunk in response.aiter_bytes():
                data.extend(chunk)
                if len(data) > self.limits.max_bytes:
                    raise DownloadRejected(f"larger than the limit of {self.limits.max_bytes:,} bytes")
        if sniff_image_format(bytes(data[:SNIFF_BYTES])) is None:
            raise DownloadRejected("content is not a JPEG, PNG, GIF, BMP, TIFF, WebP or AVIF image")
        return bytes(data)

    def _check_headers(self, response: httpx.Response) -> None:
        content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
        if not content_type.startswith("image/") and content_type not in _NEUTRAL_TYPES:
            raise DownloadRejected(f"content type {content_type!r} is not an image")
        length = response.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limits.max_bytes:
            raise DownloadRejected(f"{int(length):,} bytes, more than the limit of {self.limits.max_bytes:,}")
