"""How much decoding the encoder does at once, counted in bytes of memory rather than in threads.

A decode thread per core bounds CPU, not memory: one picture at the pixel limit needs ~200 MB decoded (a
7000x7000 RGBA PNG is 200 KB on the wire), so a few at once would exceed a container's limit and get the
process OOM-killed, failing every call in flight. `DecodeMemory` is a weighted semaphore over the decode
estimates of `services.encoder.images.open_image`: a picture starts decoding once its estimate fits in what
the pictures being decoded leave free. Waiters are served in arrival order (a big picture is not starved
by a stream of small ones); a waiter that is cancelled leaves the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque


class DecodeMemory:
    """A budget of `capacity` bytes shared by the decodes in flight."""

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("the decode memory capacity must be at least one byte")
        self.capacity = capacity
        self._in_use = 0
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def in_use(self) -> int:
        return self._in_use

    def _clamp(self, amount: int) -> int:
        # More than the whole budget would wait forever: it runs alone instead (callers refuse such
        # pictures beforehand; this keeps the semaphore safe on its own).
        return max(0, min(amount, self.capacity))

    async def acquire(self, amount: int) -> int:
        """Waits until `amount` bytes are free and takes them; returns what was taken (for `release`)."""
        amount = self._clamp(amount)
        if not self._waiters and self._in_use + amount <= self.capacity:
            self._in_use += amount
            return amount
        granted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (amount, granted)
        self._waiters.append(entry)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self.release(amount)  # granted just as the caller was cancelled: give it back
            else:
                with contextlib.suppress(ValueError):  # `_wake` may have dropped it already
                    self._waiters.remove(entry)
                self._wake()  # the queue's head may have changed
            raise
        return amount

    def release(self, amount: int) -> None:
        self._in_use -= amount
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            amount, granted = self._waiters[0]
            if granted.done():  # cancelled meanwhile
                self._waiters.popleft()
                continue
            if self._in_use + amount > self.capacity:
                return
            self._waiters.popleft()
            self._in_use += amount
            granted.set_result(None)
