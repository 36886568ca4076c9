"""When a failed attempt is tried again, and after how long.

Tried again, within `max_attempts` and `max_total_s`:
- a connection that could not be made (nothing was sent): every call;
- 429 (rate limited, encoder busy: the gateway refused before doing any work): every call;
- 503/502/504 (a service down) and a connection lost or timed out after the request went out: only calls
  that can be repeated safely (reads, searches, edits, deletions), never additions, which might land twice.

The wait is the answer's Retry-After (seconds or an HTTP date) when it has one, else exponential backoff
with jitter: half of min(cap, base * 2^(attempt-1)) plus a random part up to the other half, so many
clients that failed together do not come back together. A Retry-After that would end past `max_total_s`
is not waited for: the error is raised at once, carrying it (`ArtsearchError.retry_after`)."""

from __future__ import annotations

import email.utils
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

ALWAYS_RETRIED_STATUSES = frozenset({429})
RETRIED_WHEN_IDEMPOTENT_STATUSES = frozenset({502, 503, 504})
# The request never left: safe to send again whatever it does.
NOT_SENT_ERRORS: tuple[type[Exception], ...] = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard a call tries. `RetryPolicy(max_attempts=1)` never retries."""

    max_attempts: int = 4
    backoff_base_s: float = 0.5
    backoff_max_s: float = 8.0
    # Every attempt and wait of one call together: no retry starts that could not end within it, and each
    # attempt's timeout is cut to what is left.
    max_total_s: float = 60.0
    random_source: Callable[[], float] = field(default=random.random, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.backoff_base_s < 0 or self.backoff_max_s < 0 or self.max_total_s <= 0:
            raise ValueError("backoff times must be >= 0 and max_total_s > 0")

    def backoff_s(self, attempt: int) -> float:
        """The wait after failed attempt number `attempt` (1-based) when the answer named none."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2.0 ** (attempt - 1))
        return ceiling / 2 + self.random_source() * ceiling / 2

    def retries_status(self, status: int, idempotent: bool) -> bool:
        return status in ALWAYS_RETRIED_STATUSES or (
            idempotent and status in RETRIED_WHEN_IDEMPOTENT_STATUSES
        )

    def retries_error(self, error: Exception, idempotent: bool) -> bool:
        if isinstance(error, NOT_SENT_ERRORS):
            return True
        return idempotent and isinstance(error, httpx.TransportError)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds from now: delta-seconds ("2") or an HTTP date; None when absent or malformed.
    A date in the past is 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
