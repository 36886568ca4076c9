"""Micro-batching: concurrent `embed` calls of a few images each become one backend call of many.

A busy encoder receives one image per request (the gateway's pattern), while the network runs best on full
batches and a remote backend (Triton) pays one round trip per call. `MicroBatchingBackend` wraps any
`EmbeddingBackend`, queues the callers' images and hands the backend batches of up to `max_batch_images`.

When a batch starts (the policy, with one batch in flight by default):
- while a batch runs, new requests accumulate; when it finishes, everything queued (up to the limit) goes at
  once, without waiting: those requests have already waited a whole batch;
- a full queue goes at once;
- a request that finds the backend idle starts at once when traffic is light (the previous batch held one
  request): a single client never pays the wait. Under concurrent traffic it waits at most `max_wait_ms`
  for companions, so a burst of requests arriving together shares one batch.

Requests whose deadline (`load_shedding.request_deadline` of the caller) has passed by the time their batch
is formed are dropped with `DeadlineExpired`, never run: their callers are gone. How many images may wait
at all is bounded before this queue, by the servicer's admission (`load_shedding.ImageAdmission`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from services.encoder.backends import EmbeddingBackend, EmbeddingModelInfo
from services.encoder.load_shedding import DeadlineExpired, request_deadline

log = logging.getLogger(__name__)


class BackendClosed(RuntimeError):
    """`embed` was called after `close()`."""


@dataclass
class _Pending:
    """One caller's images (or one chunk of them) waiting for a batch."""

    pixels: np.ndarray
    future: asyncio.Future[dict[str, np.ndarray]]
    # time.monotonic() after which nobody waits for the answer (the caller's gRPC deadline); None: never.
    deadline: float | None = None
    enqueued_at: float = field(default_factory=time.monotonic)

    @property
    def count(self) -> int:
        return len(self.pixels)

    def is_stale(self, now: float) -> bool:
        """Cancelled, or past its deadline (then failed with DeadlineExpired): not to be run."""
        if not self.future.done() and self.deadline is not None and now >= self.deadline:
            waited = now - self.enqueued_at
            self.future.set_exception(
                DeadlineExpired(f"the caller's deadline passed after {waited:.3f} s waiting for a batch")
            )
        return self.future.done()


class MicroBatchingBackend:
    """An `EmbeddingBackend` that coalesces concurrent calls into batches for the backend it wraps.

    Results are identical to calling the wrapped backend once per caller. A failed backend call fails
    exactly the callers whose images were in that batch; a cancelled caller leaves the others untouched.
    A caller with more than `max_batch_images` images is split into chunks, so the wrapped backend never
    sees a larger batch (Triton's `max_batch_size` rejects one)."""

    def __init__(
        self,
        backend: EmbeddingBackend,
        *,
        max_batch_images: int = 32,
        max_wait_ms: float = 2.0,
        max_batches_in_flight: int = 1,
    ) -> None:
        if max_batch_images < 1 or max_batches_in_flight < 1 or max_wait_ms < 0:
            raise ValueError("max_batch_images and max_batches_in_flight must be >= 1, max_wait_ms >= 0")
        self._backend = backend
        self._max_batch_images = max_batch_images
        self._max_wait_s = max_wait_ms / 1000.0
        self._max_in_flight = max_batches_in_flight
        self._queue: deque[_Pending] = deque()
        self._queued_images = 0
        # Set on every arrival and every finished batch: what the dispatcher may be waiting for.
        self._wakeup = asyncio.Event()
        self._running: set[asyncio.Task[None]] = set()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        self._light_traffic = True

    @property
    def info(self) -> EmbeddingModelInfo:
        return self._backend.info

    @property
    def max_batch_images(self) -> int:
        return self._max_batch_images

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        if self._closing:
            raise BackendClosed("the encoder backend is shutting down")
        self._check_input(pixels)
        if len(pixels) == 0:
            return await self._backend.embed(pixels)
        self._ensure_dispatcher()
        loop = asyncio.get_running_loop()
        deadline = request_deadline.get()
        chunks = [
            _Pending(pixels[start : start + self._max_batch_images], loop.create_future(), deadline)
            for start in range(0, len(pixels), self._max_batch_images)
        ]
        for chunk in chunks:
            self._queue.append(chunk)
            self._queued_images += chunk.count
        self._wakeup.set()
        if len(chunks) == 1:
            return await chunks[0].future
        try:
            parts = await asyncio.gather(*(chunk.future for chunk in chunks))
        except BaseException:
            for chunk in chunks:  # queued chunks of a failed or cancelled caller are then skipped
                chunk.future.cancel()
            raise
        return {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}

    async def close(self) -> None:
        """Refuses new calls, finishes every queued and running batch, then closes the wrapped backend."""
        self._closing = True
        self._wakeup.set()
        if self._dispatcher is not None:
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        await self._backend.close()

    def _check_input(self, pixels: np.ndarray) -> None:
        """Rejects a malformed caller alone: inside a batch its images would fail everyone's call."""
        side = self._backend.info.input_size
        expected = (side, side, 3)
        if not isinstance(pixels, np.ndarray):
            raise ValueError(f"expected a numpy array of images, got {type(pixels).__name__}")
        if pixels.dtype != np.uint8 or pixels.shape[1:] != expected:
            got = f"{pixels.dtype} {pixels.shape}"
            raise ValueError(f"expected uint8 [N, {side}, {side}, 3], got {got}")

    def _ensure_dispatcher(self) -> None:
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.create_task(self._dispatch_forever(), name="micro-batching")
            self._dispatcher.add_done_callback(self._on_dispatcher_done)

    async def _dispatch_forever(self) -> None:
        while True:
            while len(self._running) >= self._max_in_flight:
                await self._wait_for_wakeup(None)
            batch = await self._next_batch()
            if batch is None:
                return
            task = asyncio.create_task(self._run_batch(batch))
            self._running.add(task)
            task.add_done_callback(self._on_batch_done)

    async def _next_batch(self) -> list[_Pending] | None:
        """Waits until the policy in the module docstring says go; None once closing and drained."""
        while True:
            self._drop_stale()
            if not self._queue:
                if self._closing:
                    return None
                await self._wait_for_wakeup(None)
                continue
            delay = self._seconds_to_wait()
            if delay > 0:
                await self._wait_for_wakeup(delay)
                continue
            batch = self._take_batch()
            if batch:  # empty when every request queued went stale meanwhile
                return batch

    def _seconds_to_wait(self) -> float:
        if self._closing or self._light_traffic or self._queued_images >= self._max_batch_images:
            return 0.0
        return self._queue[0].enqueued_at + self._max_wait_s - time.monotonic()

    def _take_batch(self) -> list[_Pending]:
        batch: list[_Pending] = []
        images = 0
        now = time.monotonic()
        while self._queue:
            pending = self._queue[0]
            stale = pending.is_stale(now)
            if not stale and images + pending.count > self._max_batch_images:
                break
            self._queue.popleft()
            self._queued_images -= pending.count
            if not stale:
                batch.append(pending)
                images += pending.count
        self._light_traffic = len(batch) <= 1
        return batch

    def _drop_stale(self) -> None:
        """Drops cancelled and expired requests from the head of the queue (their images count no more)."""
        now = time.monotonic()
        while self._queue and self._queue[0].is_stale(now):
            self._queued_images -= self._queue.popleft().count

    async def _wait_for_wakeup(self, timeout: float | None) -> None:
        self._wakeup.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wakeup.wait(), timeout)

    async def _run_batch(self, batch: list[_Pending]) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("batch", extra={"requests": len(batch), "images": sum(p.count for p in batch)})
        try:
            pixels = batch[0].pixels if len(batch) == 1 else np.concatenate([p.pixels for p in batch])
            outputs = await self._backend.embed(pixels)
            parts = _split_rows(outputs, [p.count for p in batch])
        except Exception as error:  # the backend's failure belongs to this batch's callers only
            log.warning("batch failed", extra={"images": sum(p.count for p in batch), "error": repr(error)})
            for pending in batch:
                if not pending.future.done():
                    pending.future.set_exception(error)
            return
        for pending, part in zip(batch, parts, strict=True):
            if not pending.future.done():  # a caller cancelled meanwhile: nobody to tell
                pending.future.set_result(part)

    def _on_batch_done(self, task: asyncio.Task[None]) -> None:
        self._running.discard(task)
        self._wakeup.set()

    def _on_dispatcher_done(self, task: asyncio.Task[None]) -> None:
        """A dispatcher that died of a bug must not leave callers waiting forever."""
        if task.cancelled() or task.exception() is None:
            return
        log.error("micro-batching dispatcher failed", exc_info=task.exception())
        while self._queue:
            pending = self._queue.popleft()
            if not pending.future.done():
                pending.future.set_exception(RuntimeError("the encoder's batching failed"))
        self._queued_images = 0


def _split_rows(outputs: dict[str, np.ndarray], counts: list[int]) -> list[dict[str, np.ndarray]]:
    """The backend's outputs cut back into one dict per caller, rows in the callers' order."""
    total = sum(counts)
    for name, values in outputs.items():
        if len(values) != total:
            raise ValueError(f"backend returned {len(values)} rows of {name!r} for {total} images")
    bounds = np.cumsum([0, *counts])
    return [
        {name: values[start:stop] for name, values in outputs.items()}
        for start, stop in itertools.pairwise(bounds)
    ]
