"""Answers kept in memory so that work is not repeated: the ranked answer of an artwork-id query (GET
/v1/artworks/{id}/similar), and the ranked pool behind every search answer that has more pages (the search
cursors: page 2 of a picture search without sending the picture again).

Both keep `RankedAnswer`s (services/gateway/query.py: the whole ranked pool, explained a page at a time) in
a `TtlLru`, bounded in entries (least recently used dropped first; an entry is ~100 candidates with their
payloads, some 100 KB) and in age:

- similar answers: SIMILAR_CACHE_ENTRIES / SIMILAR_CACHE_TTL_S (0 entries: off), keyed by everything that
  changes the answer: the artwork id, every search parameter normalised (the page, `k` and `offset`, aside:
  pages are cut from the kept pool), the collection and the encoder's model version. An answer marked
  degraded (influence down) is not kept.
- cursors: SEARCH_CURSOR_ENTRIES / SEARCH_CURSOR_TTL_S (0 entries: no cursors, `next_cursor` is null).
  A cursor is opaque (base64url of a random token, the next page's offset and its size); an unknown,
  expired or invalidated one answers 410 `cursor_expired`, a malformed one 400 `invalid_cursor`.

Every catalogue write made through this gateway (the admin routes' Upsert, UpdateArtwork, Delete and
AddArtists calls: services/gateway/admin_calls.py) clears both once the write returns (or fails: it may
have landed), and an answer computed from data read before a write is not kept (TtlLru generations): after
a write through this gateway has answered, no answer computed before it is served. Writes made by another
gateway replica or straight to the search or influence service are not seen here: such staleness is
bounded by the TTLs. Lookups are counted in
`artsearch_gateway_answer_cache_total{cache="similar"|"cursor", result="hit"|"miss"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from prometheus_client import Counter

from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError
from services.gateway.lru import TtlLru
from services.gateway.query import RankedAnswer
from services.gateway.search_params import SearchOptions

LOOKUPS = Counter("artsearch_gateway_answer_cache", "Ranked-answer cache lookups", ["cache", "result"])
INVALIDATIONS = Counter("artsearch_gateway_answer_cache_invalidations", "Answer caches cleared by writes")
SIMILAR, CURSOR = "similar", "cursor"
_MAX_CURSOR_CHARS = 200


@dataclass(frozen=True)
class Cursor:
    token: str
    offset: int
    k: int

    def encode(self) -> str:
        raw = f"{self.token}:{self.offset}:{self.k}".encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        """The cursor `text` encodes; 400 ApiError `invalid_cursor` for anything else."""
        try:
            if len(text) > _MAX_CURSOR_CHARS:
                raise ValueError("too long")
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
            token, offset, k = raw.split(":")
            cursor = cls(token, int(offset), int(k))
        except (ValueError, binascii.Error, UnicodeDecodeError):
            raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API gave out") from None
        if not cursor.token or cursor.offset < 0 or cursor.k < 1:
            raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API gave out")
        return cursor


class AnswerCaches:
    """The similar-answer cache and the cursors' ranked pools of one gateway process."""

    def __init__(self, config: GatewayConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.similar: TtlLru[str, RankedAnswer] = TtlLru(
            config.similar_cache_entries, config.similar_cache_ttl_s, clock
        )
        self.pools: TtlLru[str, RankedAnswer] = TtlLru(
            config.search_cursor_entries, config.search_cursor_ttl_s, clock
        )
        # The token each kept pool is known by (a pool served again keeps its token).
        self._tokens: dict[int, str] = {}

    @property
    def generation(self) -> int:
        return self.similar.generation

    def invalidate(self) -> None:
        """The catalogue or the influence graph changed: nothing kept may be served again."""
        self.similar.clear()
        self.pools.clear()
        self._tokens.clear()
        INVALIDATIONS.inc()

    def similar_answer(self, key: str) -> RankedAnswer | None:
        if not self.similar.enabled:
            return None
        found = self.similar.get(key)
        LOOKUPS.labels(SIMILAR, "miss" if found is None else "hit").inc()
        return found

    def keep_similar(self, key: str, answer: RankedAnswer, generation: int) -> None:
        if not answer.degraded:
            self.similar.put(key, answer, generation)

    def answer(
        self, ranked: RankedAnswer, offset: int, k: int, timings_ms: dict[str, float], generation: int
    ) -> dict[str, object]:
        """The page's answer with `next_cursor`: null on the last page of the pool, or when the pool cannot
        be kept (cursors off, or a write came in while it was computed)."""
        page = ranked.page(offset, k, timings_ms)
        following = offset + k
        cursor = None
        if following < len(ranked.ranked):
            token = self._token_of(ranked, generation)
            cursor = None if token is None else Cursor(token, following, k).encode()
        return {**page, "next_cursor": cursor}

    def _token_of(self, ranked: RankedAnswer, generation: int) -> str | None:
        token = self._tokens.get(id(ranked))
        if token is not None and self.pools.get(token) is ranked:
            return token
        token = secrets.token_urlsafe(12)
        if not self.pools.put(token, ranked, generation):
            return None
        self._tokens[id(ranked)] = token
        if len(self._tokens) > 4 * max(len(self.pools), 1):  # forget tokens of pools dropped since
            self._tokens = {key: t for key, t in self._tokens.items() if self.pools.get(t) is not None}
        return token

    def page_of(
        self, text: str, origin: str | None, timings_ms: dict[str, float], max_k: int
    ) -> dict[str, object]:
        """The page a cursor points to, from its kept pool; 400 invalid_cursor (also when `origin`, the
        artwork of the similar route it came to, is not the one its search was from), 410 cursor_expired."""
        cursor = Cursor.decode(text)
        if cursor.k > max_k:
            raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API gave out")
        ranked = self.pools.get(cursor.token)
        LOOKUPS.labels(CURSOR, "miss" if ranked is None else "hit").inc()
        if ranked is None:
            raise ApiError(
                410,
                "cursor_expired",
                "cursor: this result is no longer kept (expired, or the catalogue changed): search again",
            )
        if origin is not None and ranked.origin != origin:
            raise ApiError(400, "invalid_cursor", "cursor: it pages another query's results")
        return self.answer(ranked, cursor.offset, cursor.k, timings_ms, self.pools.generation)


def similar_key(artwork_id: str, options: SearchOptions, collection: str, model_version: str) -> str:
    """What a similar answer depends on: the artwork, every search parameter but the page (normalised: filter
    values sorted, weights by name), the collection and the model version."""
    params = asdict(options)
    del params["k"], params["offset"]
    for name in ("filter_artist", "filter_style", "filter_genre"):
        params[name] = sorted(params[name])
    return json.dumps([artwork_id, collection, model_version, params], sort_keys=True)
