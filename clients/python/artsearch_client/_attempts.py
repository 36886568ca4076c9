"""One call's attempts: the timeout of the next one, and after a failure either the wait before trying
again or the exception to raise (RetryPolicy decides which failures are tried again)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

import httpx

from artsearch_client.errors import ArtsearchError, Timeout, TransportError, error_for_response
from artsearch_client.retry import RetryPolicy, retry_after_s


class Attempts:
    def __init__(
        self, policy: RetryPolicy, idempotent: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._policy = policy
        self._idempotent = idempotent
        self._clock = clock
        self._started = clock()
        self.number = 0
        # One id for every attempt of the call: the gateway logs them under it (X-Request-ID).
        self.request_id = uuid.uuid4().hex

    def start(self, configured: httpx.Timeout) -> httpx.Timeout:
        """Counts an attempt; its timeout: the client's, cut to the time the call has left."""
        self.number += 1
        left = self._left()
        return httpx.Timeout(
            connect=_at_most(configured.connect, left),
            read=_at_most(configured.read, left),
            write=_at_most(configured.write, left),
            pool=_at_most(configured.pool, left),
        )

    def after_answer(self, response: httpx.Response) -> float:
        """The wait before the next attempt after an error answer, or raises its exception."""
        retry_after = retry_after_s(response.headers.get("retry-after"))
        error = error_for_response(response, retry_after)
        if not self._policy.retries_status(response.status_code, self._idempotent):
            raise self._final(error)
        return self._wait_or_raise(error, retry_after)

    def after_transport_error(self, cause: httpx.TransportError) -> float:
        """The wait before the next attempt after no answer came, or raises TransportError / Timeout."""
        kind = Timeout if isinstance(cause, httpx.TimeoutException) else TransportError
        error = kind(f"{type(cause).__name__}: {cause or 'no answer'}", request_id=self.request_id)
        error.__cause__ = cause
        if not self._policy.retries_error(cause, self._idempotent):
            raise self._final(error)
        return self._wait_or_raise(error, None)

    def _wait_or_raise(self, error: ArtsearchError, retry_after: float | None) -> float:
        if self.number >= self._policy.max_attempts:
            raise self._final(error)
        wait = retry_after if retry_after is not None else self._policy.backoff_s(self.number)
        # No attempt that could not even start within the call's time: the error now, with its Retry-After.
        if wait >= self._left():
            raise self._final(error)
        return wait

    def _final(self, error: ArtsearchError) -> ArtsearchError:
        error.attempts = self.number
        return error

    def _left(self) -> float:
        return self._policy.max_total_s - (self._clock() - self._started)


def _at_most(configured: float | None, left: float) -> float:
    bound = max(left, 0.001)
    return bound if configured is None else min(configured, bound)
