"""Per-key rate limits: one token bucket per admin key, refilled continuously."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """Holds up to `burst` tokens, refilled at `rate_per_s`; each request takes one."""

    def __init__(self, rate_per_s: float, burst: int, clock: Clock = time.monotonic) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got {rate_per_s} and {burst}")
        self._rate = rate_per_s
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._updated = clock()

    def take(self) -> float:
        """0.0 when a token was taken; otherwise the seconds until one will be there (nothing taken)."""
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return 0.0
        return (1.0 - self._tokens) / self._rate


class KeyedRateLimiter:
    """A bucket per key name, made on first use (the set of names is the configured keys: bounded)."""

    def __init__(self, per_minute: float, burst: int, clock: Clock = time.monotonic) -> None:
        TokenBucket(per_minute / 60.0, burst, clock)  # validates the settings now, not at the first request
        self._rate = per_minute / 60.0
        self._burst = burst
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()

    def retry_after(self, key_name: str) -> int:
        """0 when the request may go ahead; else whole seconds to wait (at least 1), for Retry-After."""
        with self._lock:
            bucket = self._buckets.get(key_name)
            if bucket is None:
                bucket = self._buckets[key_name] = TokenBucket(self._rate, self._burst, self._clock)
            wait = bucket.take()
        return 0 if wait == 0.0 else max(1, math.ceil(wait))
