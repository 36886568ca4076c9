"""The search service's aliases as the gateway last heard them: which model aliases exist
(artsearch/model_aliases.py), asked again once MODEL_ALIAS_TTL_S old."""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger(__name__)


class AliasCache:
    """The search service's aliases, asked again once `ttl_s` seconds old. One question at a time: the
    searches arriving meanwhile wait for its answer. A failed question is logged and answers None (the caller
    searches its configured collection); the next search asks again."""

    def __init__(
        self,
        fetch: Callable[[str], Awaitable[dict[str, str]]],
        ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._ttl_s = ttl_s
        self._clock = clock
        self._aliases: dict[str, str] | None = None
        self._fetched_at = -math.inf
        self._pending: asyncio.Future[dict[str, str] | None] | None = None

    def expire(self) -> None:
        """The next `get` asks again (a model alias was not found: it may have been removed)."""
        self._fetched_at = -math.inf

    async def get(self, request_id: str = "") -> dict[str, str] | None:
        """alias -> collection, or None when the search service could not say."""
        if self._aliases is not None and self._clock() - self._fetched_at < self._ttl_s:
            return self._aliases
        if self._pending is None:
            self._pending = asyncio.ensure_future(self._refresh(request_id))
            self._pending.add_done_callback(self._refreshed)
        return await asyncio.shield(self._pending)  # one request giving up does not cancel the others'

    def _refreshed(self, _: asyncio.Future[dict[str, str] | None]) -> None:
        self._pending = None

    async def _refresh(self, request_id: str) -> dict[str, str] | None:
        asked_at = self._clock()
        try:
            aliases = await self._fetch(request_id)
        except Exception as error:  # whatever it is, a search never fails for it
            log.warning(
                "cannot list the search aliases: searching the configured collection",
                extra={"error": str(error) or type(error).__name__},
            )
            return None
        self._aliases, self._fetched_at = aliases, asked_at
        return aliases
