"""Load shedding: how much work the encoder takes on, and which work it drops unrun.

An encoder is CPU- (or GPU-) bound: past what it can finish within a caller's patience, accepting more
requests only makes every request slower, until all of them miss their deadlines and the memory of the
queued uploads grows without bound. So:

- `ImageAdmission` counts the images of the calls in progress (being decoded, queued for a batch, in the
  running batch). A call that would take the count over the limit is refused at once, before any work, with
  RESOURCE_EXHAUSTED (the gateway's 429): the caller learns within a round trip that it should back off,
  instead of after its deadline.
- `request_deadline` carries the gRPC deadline of the call being served (a context variable: each call is
  its own task, and the tasks it starts copy it). Work that reaches the front of a queue after that deadline
  is dropped unrun (`DeadlineExpired`): nobody is waiting for its answer any more.
"""

from __future__ import annotations

import contextvars
import time

# Batches the queue may hold, each at most BATCH_MAX_IMAGES, per core: with a batch running on every core and
# the next few queued, the cores never idle, and what waits beyond that is latency only.
QUEUED_BATCHES_PER_CORE = 4

# time.monotonic() by which the call being served must be answered; None when it has no deadline.
request_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "request_deadline", default=None
)


class DeadlineExpired(RuntimeError):
    """The caller's deadline passed while its work waited: the work is dropped, not run."""


def default_max_queued_images(batch_max_images: int, max_call_images: int, cores: int) -> int:
    """`QUEUED_BATCHES_PER_CORE` batches per core, and never fewer than two of the largest calls (so that
    ingest's two concurrent full calls are taken): 128 with 16-image batches on 2 cores, ~1 s of work on
    the 2-core CPU machine of docs/performance.md."""
    return max(2 * max_call_images, QUEUED_BATCHES_PER_CORE * batch_max_images * max(1, cores))


def set_request_deadline(time_remaining: float | None) -> None:
    """Records the deadline of the call served by the current task (`context.time_remaining()`)."""
    request_deadline.set(None if time_remaining is None else time.monotonic() + time_remaining)


def check_deadline(deadline: float | None, what: str) -> None:
    """Raises DeadlineExpired when `deadline` (a time.monotonic() value) has passed."""
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExpired(f"the caller's deadline passed before {what}")


class ImageAdmission:
    """At most `limit` images in the calls being served; a call that does not fit is refused, not queued."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the admission limit must be at least one image")
        self.limit = limit
        self.in_progress = 0

    def try_admit(self, images: int) -> bool:
        """Takes `images` places and returns True, or returns False without taking any."""
        if self.in_progress + images > self.limit:
            return False
        self.in_progress += images
        return True

    def release(self, images: int) -> None:
        self.in_progress -= images
