"""Ingest progress on stderr: a tqdm bar on a terminal, else a plain line every few seconds (logs, CI)."""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...

    def close(self) -> None: ...


def make_progress(label: str, stream: TextIO | None = None, interval_s: float = 5.0) -> Progress:
    """A tqdm bar (rate and ETA) when `stream` is a terminal, else a `LineProgress`."""
    stream = stream or sys.stderr
    if stream.isatty():
        return BarProgress(label, stream)
    return LineProgress(label, stream, interval_s)


class BarProgress:
    def __init__(self, label: str, stream: TextIO) -> None:
        self.label = label
        self.stream = stream
        self._bar = None

    def __call__(self, done: int, total: int) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self.label, unit="img", file=self.stream, dynamic_ncols=True)
        self._bar.update(done - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class LineProgress:
    """``ingest gcompris: 120/1000 (12 %), 8.1 img/s, ETA 1m48s`` at most every `interval_s` seconds and at
    the end."""

    def __init__(self, label: str, stream: TextIO, interval_s: float = 5.0) -> None:
        self.label = label
        self.stream = stream
        self.interval_s = interval_s
        self._started = time.monotonic()
        self._last_print = float("-inf")
        self._last: tuple[int, int] | None = None

    def __call__(self, done: int, total: int) -> None:
        if (done, total) == self._last:
            return
        self._last = (done, total)
        now = time.monotonic()
        if done >= total or now - self._last_print >= self.interval_s:
            self._last_print = now
            print(progress_line(self.label, done, total, now - self._started), file=self.stream, flush=True)

    def close(self) -> None:
        pass


def progress_line(label: str, done: int, total: int, elapsed_s: float) -> str:
    rate = done / elapsed_s if elapsed_s > 0 else 0.0
    percent = 100 * done / total if total else 100.0
    eta = format_duration((total - done) / rate) if rate > 0 else "?"
    return f"{label}: {done}/{total} ({percent:.0f} %), {rate:.1f} img/s, ETA {eta}"


def format_duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
