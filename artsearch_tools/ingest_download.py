"""Downloads the images of a URL manifest through `artsearch.safe_fetch`, the gateway's SSRF policy: http(s)
only, every address (also after a redirect) vetted — loopback, private, link-local, CGNAT, metadata and
other special addresses refused unless the operator allows local networks —, bounded in size and time,
images only.

Every failure is a `DownloadRejected` with a reason for the ingest report; nothing here raises anything
else for a bad URL or a bad server answer.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from artsearch.safe_fetch import FetchRefused, FetchSettings, IPNetwork, fetch_image, parse_url

USER_AGENT = "artsearch-ingest/1"
PRIVATE_OPT_OUT = (
    "an operator may allow local networks: --allow-private-downloads or --allow-download-network"
)


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
    # Operator opt-out: fetch from loopback, private, link-local and CGNAT addresses (e.g. a manifest on an
    # internal object store). Cloud metadata, multicast, reserved and unspecified addresses stay refused.
    allow_private_addresses: bool = False
    # The same opt-out for these networks only.
    allowed_networks: tuple[IPNetwork, ...] = ()

    def fetch_settings(self) -> FetchSettings:
        return FetchSettings(
            timeout_s=self.timeout_s,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            allow_private=self.allow_private_addresses,
            allowed_networks=self.allowed_networks,
            user_agent=USER_AGENT,
        )


def check_url(url: str) -> str:
    """The URL to fetch when it is an absolute http(s) URL with a host (spaces, which manifests often leave
    unencoded in file names, become %20); DownloadRejected otherwise."""
    url = url.strip().replace(" ", "%20")
    try:
        parse_url(url)
    except FetchRefused as refused:
        raise DownloadRejected(refused.message) from None
    return url


def rejection_reason(refused: FetchRefused) -> str:
    """The report's reason for a refused download: what went wrong, after which redirect, and how an
    operator lets a local-network address through."""
    reason = refused.message
    if refused.redirected_to is not None:
        reason = f"redirected to {refused.redirected_to}: {reason}"
    if refused.local_network:
        reason = f"{reason}; {PRIVATE_OPT_OUT}"
    return reason


class Downloader:
    """Fetches under one policy with a cap on concurrent downloads; each download has its own deadline
    (DNS, every redirect and the whole body), counted from when it gets a slot."""

    def __init__(self, limits: DownloadLimits = DownloadLimits()) -> None:
        self.limits = limits
        self._settings = limits.fetch_settings()
        self._slots = asyncio.Semaphore(limits.concurrency)

    async def __aenter__(self) -> Downloader:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Nothing is held between downloads (each connects to its own vetted address); kept for callers."""

    async def fetch(self, url: str) -> bytes:
        """The image bytes at `url`. Raises DownloadRejected."""
        url = check_url(url)
        async with self._slots:
            try:
                fetched = await fetch_image(url, self._settings)
            except FetchRefused as refused:
                raise DownloadRejected(rejection_reason(refused)) from None
        return fetched.data
