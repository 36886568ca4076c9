"""Rate limits: token buckets refilled continuously; one per admin key (a bounded set of names), and per
client address in tables that stay bounded however many addresses call (`ClientTable`).

Used from the event loop; the locks only guard against a caller on a worker thread."""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

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

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    def take(self, count: int = 1) -> float:
        """0.0 when `count` tokens were taken (at most `burst`: a bucket never holds more); otherwise the
        seconds until they will be there (nothing taken)."""
        self._refill()
        wanted = min(float(count), self._burst)
        if self._tokens >= wanted:
            self._tokens -= wanted
            return 0.0
        return (wanted - self._tokens) / self._rate

    def wait(self) -> float:
        """Seconds until a token is there (0.0: one is there now), taking nothing."""
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def full(self) -> bool:
        """Whether the bucket is full again: forgetting it then loses nothing (a new one starts full)."""
        self._refill()
        return self._tokens >= self._burst


def whole_seconds(wait: float) -> int:
    """A wait as Retry-After says it: 0 for none, else whole seconds, at least 1."""
    return 0 if wait <= 0.0 else max(1, math.ceil(wait))


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
        return whole_seconds(wait)


class ClientState(Protocol):
    def idle(self) -> bool:
        """Forgetting this state now loses nothing (e.g. its bucket is full again, nothing in flight)."""

    def busy(self) -> bool:
        """This state must not be forgotten (a request is in flight)."""


S = TypeVar("S", bound=ClientState)


class ClientTable(Generic[S]):
    """Per-client state, at most `max_clients` entries in least-recently-used order. Each lookup first
    forgets the idle entries at the old end (lossless: an idle entry is what a new one would be); a new
    client in a full table pushes out the least recently used entry that is not busy (its limits start
    afresh: memory stays bounded whatever number of addresses an attacker has). When every entry is busy
    the new client is not admitted (None)."""

    def __init__(self, make: Callable[[], S], max_clients: int) -> None:
        if max_clients < 1:
            raise ValueError(f"a client table needs room for at least one client, got {max_clients}")
        self._make = make
        self._max = max_clients
        self._entries: OrderedDict[str, S] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, client: str) -> S | None:
        entry = self._entries.get(client)
        if entry is not None:
            self._entries.move_to_end(client)
            return entry
        self._forget_idle()
        if len(self._entries) >= self._max and not self._push_out_one():
            return None
        entry = self._entries[client] = self._make()
        return entry

    def peek(self, client: str) -> S | None:
        """The client's entry if there is one, without making one or changing the order."""
        return self._entries.get(client)

    def _forget_idle(self) -> None:
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if not oldest.idle():
                return
            self._entries.popitem(last=False)

    def _push_out_one(self) -> bool:
        for client, entry in self._entries.items():
            if not entry.busy():
                del self._entries[client]
                return True
        return False


@dataclass(frozen=True)
class Verdict:
    """Whether a request may go ahead: `retry_after` 0 when it may, else whole seconds; `reason` says why
    not, for people, and `kind` for metrics (`concurrency`, `rate`, `clients`)."""

    retry_after: int = 0
    reason: str = ""
    kind: str = ""

    def __bool__(self) -> bool:
        return self.retry_after == 0


class _Client:
    def __init__(self, bucket: TokenBucket | None) -> None:
        self.bucket = bucket
        self.in_flight = 0

    def idle(self) -> bool:
        return self.in_flight == 0 and (self.bucket is None or self.bucket.full())

    def busy(self) -> bool:
        return self.in_flight > 0


class ClientLimiter:
    """Per client: at most `max_concurrent` requests in flight (0: no limit) and a token bucket of `burst`
    refilled at `per_minute` (0: no rate limit). `admit` then `release` once the request is answered."""

    def __init__(
        self,
        per_minute: float,
        burst: int,
        max_concurrent: int,
        max_clients: int,
        clock: Clock = time.monotonic,
    ) -> None:
        if per_minute > 0:
            TokenBucket(per_minute / 60.0, burst, clock)  # validates the settings now
        self._rate = per_minute / 60.0
        self._burst = burst
        self._max_concurrent = max_concurrent
        self._clock = clock
        self._clients: ClientTable[_Client] = ClientTable(self._new_client, max_clients)
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._rate > 0 or self._max_concurrent > 0

    def __len__(self) -> int:
        return len(self._clients)

    def _new_client(self) -> _Client:
        bucket = TokenBucket(self._rate, self._burst, self._clock) if self._rate > 0 else None
        return _Client(bucket)

    def admit(self, client: str) -> Verdict:
        with self._lock:
            state = self._clients.get(client)
            if state is None:
                return Verdict(1, "the gateway is serving too many clients at once", "clients")
            if self._max_concurrent and state.in_flight >= self._max_concurrent:
                reason = f"more than {self._max_concurrent} requests at once from this client"
                return Verdict(1, reason, "concurrency")
            wait = state.bucket.take() if state.bucket is not None else 0.0
            if wait:
                return Verdict(whole_seconds(wait), "too many requests from this client", "rate")
            state.in_flight += 1
            return Verdict()

    def charge(self, client: str, count: int) -> Verdict:
        """`count` more tokens from an admitted client's bucket, for a request that turned out to be several
        (a batch of searches: one token each, the first taken by `admit`)."""
        with self._lock:
            state = self._clients.peek(client)
            if count < 1 or state is None or state.bucket is None:
                return Verdict()
            wait = state.bucket.take(count)
            if wait:
                return Verdict(whole_seconds(wait), "too many searches from this client", "rate")
            return Verdict()

    def release(self, client: str) -> None:
        with self._lock:
            state = self._clients.peek(client)
            if state is not None and state.in_flight > 0:
                state.in_flight -= 1


class _Failures:
    def __init__(self, bucket: TokenBucket) -> None:
        self.bucket = bucket

    def idle(self) -> bool:
        return self.bucket.full()

    def busy(self) -> bool:
        return False


class FailureThrottle:
    """Per client, `max_failures` failed attempts in quick succession, then one more each
    `window_s / max_failures` seconds (a token bucket taken by failures only). `max_failures` 0: off."""

    def __init__(
        self, max_failures: int, window_s: float, max_clients: int, clock: Clock = time.monotonic
    ) -> None:
        self._rate = max_failures / window_s if max_failures > 0 else 0.0
        self._burst = max_failures
        self._clock = clock
        self._clients: ClientTable[_Failures] = ClientTable(self._new_client, max_clients)
        self._lock = threading.Lock()

    def _new_client(self) -> _Failures:
        return _Failures(TokenBucket(self._rate, self._burst, self._clock))

    def __len__(self) -> int:
        return len(self._clients)

    def retry_after(self, client: str) -> int:
        """0 when the client may try (again); else whole seconds until it may. Takes nothing."""
        if not self._burst:
            return 0
        with self._lock:
            state = self._clients.peek(client)
            return whole_seconds(state.bucket.wait()) if state is not None else 0

    def failed(self, client: str) -> bool:
        """Counts a failed attempt; True when it used up the client's allowance (it now has to wait)."""
        if not self._burst:
            return False
        with self._lock:
            state = self._clients.get(client)
            if state is None:
                return False
            state.bucket.take()
            return state.bucket.wait() > 0
