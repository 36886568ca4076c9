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
from collections.abc import Callable

from prometheus_client import Counter

from artsearch.v1 import encoder_pb2
from services.gateway.lru import TtlLru

# Pictures larger than this are hashed on a worker thread rather than on the event loop.
_HASH_INLINE_BYTES = 256 * 1024
LOOKUPS = Counter("artsearch_gateway_query_cache", "Encoded-picture cache lookups", ["result"])


class EncodedPictureCache:
    """Recent encoder answers by picture (see the module docstring); `max_entries` 0 keeps nothing."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TtlLru[bytes, encoder_pb2.EncodeResponse] = TtlLru(max_entries, ttl_s, clock)

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
        answer = self._entries.get(
            key, lambda kept: model_version is None or kept.model.version == model_version
        )
        LOOKUPS.labels("miss" if answer is None else "hit").inc()
        return answer

    def put(self, key: bytes, answer: encoder_pb2.EncodeResponse) -> None:
        self._entries.put(key, answer)

    def __len__(self) -> int:
        return len(self._entries)
