"""The encoder's answers for pictures the gateway was sent a moment ago, kept in memory so that the same
picture sent again — a weight slider moved in the web UI, page 2 asked for, a retry — skips its decode and
encode: the gateway looks the picture up by the SHA-256 of its bytes (and whether the encoder analysed it)
before calling the encoder.

Bounded two ways: at most `max_entries` answers (least recently used dropped first; an answer is the
descriptor and, for an analysed photo, the located painting's: ~25 KB at 2664-d), each kept at most `ttl_s`
seconds. An answer made by another model version than the encoder's latest known one is not used: after a
redeploy with a new model, a picture is encoded again by it. Lookups are counted in
`artsearch_gateway_query_cache_total{result="hit"|"miss"}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from prometheus_client import Counter

from artsearch.v1 import encoder_pb2

# Pictures larger than this are hashed on a worker thread rather than on the event loop.
_HASH_INLINE_BYTES = 256 * 1024
LOOKUPS = Counter("artsearch_gateway_query_cache", "Encoded-picture cache lookups", ["result"])


@dataclass(frozen=True)
class _Entry:
    answer: encoder_pb2.EncodeResponse
    stored_at: float


class EncodedPictureCache:
    """Recent encoder answers by picture (see the module docstring); `max_entries` 0 keeps nothing."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[bytes, _Entry] = OrderedDict()

    @staticmethod
    def key(picture: bytes, analysed: bool) -> bytes:
        return hashlib.sha256(picture).digest() + (b"A" if analysed else b"-")

    async def key_of(self, picture: bytes, analysed: bool) -> bytes:
        """`key`, hashed off the event loop for a large picture (SHA-256: ~2 ms a MB; uploads go to 20 MB)."""
        if len(picture) <= _HASH_INLINE_BYTES:
            return self.key(picture, analysed)
        return await asyncio.to_thread(self.key, picture, analysed)

    def get(self, key: bytes, model_version: str | None) -> encoder_pb2.EncodeResponse | None:
        """The answer kept for `key`, unless expired or made by another model than `model_version` (None:
        not known yet, any)."""
        entry = self._entries.get(key)
        fresh = entry is not None and self._clock() - entry.stored_at <= self._ttl_s
        if entry is not None and (
            not fresh or (model_version is not None and entry.answer.model.version != model_version)
        ):
            del self._entries[key]
            entry = None
        LOOKUPS.labels("miss" if entry is None else "hit").inc()
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry.answer

    def put(self, key: bytes, answer: encoder_pb2.EncodeResponse) -> None:
        if self._max_entries == 0:
            return
        self._entries[key] = _Entry(answer, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)
