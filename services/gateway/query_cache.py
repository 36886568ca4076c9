"""The encoder's answers for pictures the gateway was sent a moment ago, kept in memory so that the same
picture sent again — a weight slider moved in the web UI, page 2 asked for, a retry — skips its decode and
encode: the gateway looks the picture up by the SHA-256 of its bytes (and whether the encoder analysed it)
before calling the encoder.

Bounded two ways: at most `max_entries` answers (least recently used dropped first; an answer is the
descriptor and, for an analysed photo, the located painting's: ~25 KB at 2664-d), each kept at most `ttl_s`
seconds. An answer made by another model version than the encoder's latest known one is not used: after a
redeploy with a new model, a picture is encoded again by it. Lookups are counted in
`artsearch_gateway_query_cache_total{result="hit"|"miss"}`.

A kept answer is also named by a **picture id** (`picture_id` of every picture search's answer): the hex
SHA-256 of the picture's bytes and whether it was analysed (`<64 hex>-a` or `-n`). A search may send the id
instead of the picture (`by_picture_id`) to re-rank from the kept descriptors with other parameters: no
upload, decode nor encode. It lives as long as its answer here (QUERY_CACHE_ENTRIES, QUERY_CACHE_TTL_S, the
model version); after that the id answers 410 `picture_expired` and the client sends the picture again. The
id says nothing a holder of the picture could not compute, and nothing about the picture to anyone else.
Searches by id are counted in `artsearch_gateway_picture_id_searches_total{result="hit"|"expired"}` (their
lookups are query-cache hits or misses as well).

A photo encoded in stages (encoder.proto, EncodeInStages) is kept from its first stage on, with its analysis
still under way (`put_pending`): a search of the same picture meanwhile waits for that analysis, where it
needs it, rather than encoding the photo again; once it comes, the complete answer replaces the first stage
(when it fails, the first stage stays: the whole photo alone, as its own search was answered).

The analysis is made only while some search may still need it (`PendingAnalysis`): when every search of the
photo was answered without it (its whole matched with confidence), it is cancelled, and with it the rest of
the encoder's call - the locator and the crop's network pass are work no answer uses (they were ~a fifth of
the stack's CPU per clean query, docs/performance.md). The first stage stays kept, as after a failed
analysis: a later search of the picture is answered from the whole photo alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from prometheus_client import Counter

from artsearch.v1 import encoder_pb2
from services.gateway.errors import ApiError
from services.gateway.lru import TtlLru

# Pictures larger than this are hashed on a worker thread rather than on the event loop.
_HASH_INLINE_BYTES = 256 * 1024
LOOKUPS = Counter("artsearch_gateway_query_cache", "Encoded-picture cache lookups", ["result"])
PICTURE_ID_SEARCHES = Counter(
    "artsearch_gateway_picture_id_searches",
    "Searches by picture_id (hit: re-ranked, expired: 410)",
    ["result"],
)
ANALYSES = Counter(
    "artsearch_gateway_photo_analyses",
    "Photo analyses asked of the encoder in stages, by how they ended (completed, dropped: cancelled as no "
    "search needed them, failed)",
    ["outcome"],
)
_PICTURE_ID = re.compile(r"[0-9a-f]{64}-[an]")
_ANALYSED, _WHOLE = b"A", b"-"


class PendingAnalysis:
    """A photo's analysis under way (`task`: the complete encoder answer to come) and the searches that may
    still need it (`join`). When the last of them leaves, having had no use for it, the analysis is
    cancelled: no one would wait for it (see the module docstring)."""

    def __init__(self, task: asyncio.Future[encoder_pb2.EncodeResponse]) -> None:
        self.task = task
        self._users = 0
        task.add_done_callback(_count_analysis)

    def join(self) -> asyncio.Future[encoder_pb2.EncodeResponse]:
        """The complete answer for one more search: cancel the returned future when that search no longer
        needs it (its cancellation does not reach the analysis while others still wait). Cancelled itself
        when the analysis was (every other search left before this one joined)."""
        self._users += 1
        waiter = asyncio.shield(self.task)
        waiter.add_done_callback(self._left)
        return waiter

    def _left(self, _waiter: asyncio.Future[encoder_pb2.EncodeResponse]) -> None:
        self._users -= 1
        if self._users == 0:
            self.task.cancel()  # nothing when it has ended


def _count_analysis(task: asyncio.Future[encoder_pb2.EncodeResponse]) -> None:
    ANALYSES.labels(_outcome(task)).inc()


def _outcome(task: asyncio.Future[encoder_pb2.EncodeResponse]) -> str:
    if task.cancelled():
        return "dropped"
    return "failed" if task.exception() is not None else "completed"


@dataclass(frozen=True)
class KeptPicture:
    """A kept encoder answer; with its analysis still under way (`analysis`, the complete answer to come),
    `answer` is the first stage's: the whole photo's descriptor and grey-scale test."""

    answer: encoder_pb2.EncodeResponse
    analysis: PendingAnalysis | None = None


class EncodedPictureCache:
    """Recent encoder answers by picture (see the module docstring); `max_entries` 0 keeps nothing."""

    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: TtlLru[bytes, encoder_pb2.EncodeResponse] = TtlLru(max_entries, ttl_s, clock)
        # Analyses under way of first stages kept in `_entries`, by key; each leaves when it ends.
        self._pending: dict[bytes, PendingAnalysis] = {}

    @staticmethod
    def key(picture: bytes, analysed: bool) -> bytes:
        return hashlib.sha256(picture).digest() + (_ANALYSED if analysed else _WHOLE)

    async def key_of(self, picture: bytes, analysed: bool) -> bytes:
        """`key`, hashed off the event loop for a large picture (SHA-256: ~2 ms a MB; uploads go to 20 MB)."""
        if len(picture) <= _HASH_INLINE_BYTES:
            return self.key(picture, analysed)
        return await asyncio.to_thread(self.key, picture, analysed)

    def get(self, key: bytes, model_version: str | None) -> KeptPicture | None:
        """The answer kept for `key`, unless expired or made by another model than `model_version` (None:
        not known yet, any)."""
        answer = self._entries.get(
            key, lambda kept: model_version is None or kept.model.version == model_version
        )
        LOOKUPS.labels("miss" if answer is None else "hit").inc()
        return None if answer is None else KeptPicture(answer, self._pending.get(key))

    def put(self, key: bytes, answer: encoder_pb2.EncodeResponse) -> bool:
        """Keeps `answer` (False: the cache is off)."""
        return self._entries.put(key, answer)

    def put_pending(
        self, key: bytes, first_stage: encoder_pb2.EncodeResponse, analysis: PendingAnalysis
    ) -> bool:
        """Keeps a photo's first stage, and its complete answer in its place once `analysis` ends with one
        (False: the cache is off). The complete answer takes the first stage's age: the picture expires
        `ttl_s` after it was sent, however long its analysis took, and one evicted or expired meanwhile is
        not brought back."""
        if not self._entries.put(key, first_stage):
            return False
        self._pending[key] = analysis
        analysis.task.add_done_callback(partial(self._analysis_ended, key, analysis))
        return True

    def _analysis_ended(
        self, key: bytes, analysis: PendingAnalysis, task: asyncio.Future[encoder_pb2.EncodeResponse]
    ) -> None:
        if self._pending.get(key) is analysis:
            del self._pending[key]
        if not task.cancelled() and task.exception() is None:
            self._entries.replace(key, task.result())

    def by_picture_id(self, picture_id: str, analyse: bool, model_version: str | None) -> KeptPicture:
        """The answer a picture id names, for a search that needs the photo's analysis (`analyse`) or not:
        an analysed answer serves both. 400 ApiError `invalid_picture_id` for a malformed id; 410
        `picture_expired` when the answer is no longer kept (or was kept without the analysis asked for)."""
        key = key_of_picture_id(picture_id)
        if analyse and key.endswith(_WHOLE):
            PICTURE_ID_SEARCHES.labels("expired").inc()
            raise ApiError(
                410,
                "picture_expired",
                "picture_id: this picture was searched with locate=off and grey=off, so its analysis was not "
                "kept: send the picture again",
            )
        answer = self.get(key, model_version)
        PICTURE_ID_SEARCHES.labels("expired" if answer is None else "hit").inc()
        if answer is None:
            raise ApiError(
                410,
                "picture_expired",
                "picture_id: this picture's descriptors are no longer kept (expired, evicted, or the model "
                "changed): send the picture again",
            )
        return answer

    def __len__(self) -> int:
        return len(self._entries)


def picture_id_of(key: bytes) -> str:
    """The picture id of a cache key (see the module docstring)."""
    return key[:-1].hex() + ("-a" if key.endswith(_ANALYSED) else "-n")


def key_of_picture_id(picture_id: str) -> bytes:
    """The cache key a picture id names; 400 ApiError `invalid_picture_id` for anything else."""
    if not _PICTURE_ID.fullmatch(picture_id):
        raise ApiError(
            400,
            "invalid_picture_id",
            "picture_id: not a picture id this API gave out (64 hex digits, then -a or -n)",
        )
    return bytes.fromhex(picture_id[:64]) + (_ANALYSED if picture_id.endswith("-a") else _WHOLE)
