"""Milliseconds per step of one request: the `timings_ms` every search answer carries."""

from __future__ import annotations

import asyncio
import time


class Timer:
    """Milliseconds per step of one request."""

    def __init__(self) -> None:
        self.timings_ms: dict[str, float] = {}

    def step(self, name: str) -> _Step:
        return _Step(self.timings_ms, name)


class _Step:
    def __init__(self, timings: dict[str, float], name: str) -> None:
        self._timings, self._name = timings, name

    def __enter__(self) -> None:
        self._started = time.perf_counter()

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # A step cancelled (a photo's analysis no search needed) took no part in the answer.
        if kind is not asyncio.CancelledError:
            self._timings[self._name] = round((time.perf_counter() - self._started) * 1000, 2)
