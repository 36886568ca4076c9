"""A bounded, expiring map: at most `max_entries` values (least recently used dropped first), each kept at
most `ttl_s` seconds; `max_entries` 0 keeps nothing. Shared by the gateway's caches (query_cache.py: the
encoder's answers per picture; answer_cache.py: ranked answers and search cursors).

`clear()` starts a new generation: a value computed from data read before a write (catalogue writes clear
the answer caches) is offered with the generation seen before it was computed, and is not kept when a clear
came in between (`put(..., generation=...)`)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    stored_at: float


class TtlLru(Generic[K, V]):
    def __init__(self, max_entries: int, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_entries = max_entries
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._generation = 0

    @property
    def enabled(self) -> bool:
        return self._max_entries > 0

    @property
    def generation(self) -> int:
        return self._generation

    def get(self, key: K, valid: Callable[[V], bool] | None = None) -> V | None:
        """The value kept for `key`, unless expired or refused by `valid` (then it is dropped)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self._expired(entry) or (valid is not None and not valid(entry.value)):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry.value

    def put(self, key: K, value: V, generation: int | None = None) -> bool:
        """Keeps `value` (False: not kept, the cache is off or cleared since `generation`)."""
        if self._max_entries == 0 or (generation is not None and generation != self._generation):
            return False
        self._entries[key] = _Entry(value, self._clock())
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return True

    def replace(self, key: K, value: V) -> bool:
        """Puts `value` in the place of the value kept for `key`, which keeps its age and its place in the
        order of use; nothing when none is kept (evicted, expired or never put). Whether it was replaced."""
        entry = self._entries.get(key)
        if entry is None or self._expired(entry):
            return False
        self._entries[key] = _Entry(value, entry.stored_at)
        return True

    def _expired(self, entry: _Entry[V]) -> bool:
        return self._clock() - entry.stored_at > self._ttl_s

    def clear(self) -> None:
        self._entries.clear()
        self._generation += 1

    def __len__(self) -> int:
        return len(self._entries)
