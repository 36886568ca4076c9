"""Crash points for the durability tests, and nothing else: inert unless a test arms one.

The durability tests SIGKILL a real service process (search, influence) at chosen steps of its writes, index
builds, swaps and restores, then start it again and check that nothing acknowledged was lost. Killing at a
step from outside is a race; so the code calls `crash_point(name)` at each step, and a test process started
with `ARTSEARCH_TEST_CRASH_AT=<name>` (or `<name>@<n>`: the n-th time it gets there) kills itself there with
SIGKILL, as an OOM kill or a power cut would (no cleanup, no flush). `tear` does the same half-way through a
write. Unset -- always, outside those tests -- both return at once. A service reads the setting with
`crash_point_from_env` (a malformed value is refused at start) and `arm`s it.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from typing import IO

from artsearch import settings
from artsearch.config import ConfigError, Env

CRASH_AT_ENV = settings.TEST_CRASH_AT.name
_SPEC = re.compile(r"(?P<name>[a-z][a-z_.]*)(@(?P<count>[1-9][0-9]*))?")

_lock = threading.Lock()
_armed: tuple[str, int] | None = None
_hits = 0


def parse(spec: str) -> tuple[str, int]:
    """`name` or `name@n` -> (name, n); ValueError when malformed."""
    found = _SPEC.fullmatch(spec.strip())
    if found is None:
        raise ValueError(f"{CRASH_AT_ENV}={spec!r} must be a crash point name, optionally @<count>")
    return found["name"], int(found["count"] or 1)


def crash_point_from_env(env: Env) -> str | None:
    """The armed crash point of this process's environment (None: none); ConfigError when malformed."""
    spec = settings.TEST_CRASH_AT.read(env)
    if spec is not None:
        try:
            parse(spec)
        except ValueError as error:
            raise ConfigError(str(error)) from None
    return spec


def arm(spec: str | None) -> None:
    """Arms the crash point `spec` names (None disarms)."""
    global _armed, _hits
    with _lock:
        _armed = parse(spec) if spec else None
        _hits = 0


def _reached(name: str) -> bool:
    """Counts a visit of the armed point `name`; True on the visit that must crash."""
    global _hits
    if _armed is None or _armed[0] != name:
        return False
    with _lock:
        _hits += 1
        return _hits == _armed[1]


def crash_point(name: str) -> None:
    """SIGKILLs this process when `name` is the armed crash point reached for the armed time."""
    if _reached(name):
        os.kill(os.getpid(), signal.SIGKILL)


def tear(handle: IO[bytes], data: bytes, name: str) -> None:
    """At the armed crash point `name`: writes the first half of `data` to `handle`, flushes it to the OS and
    SIGKILLs this process -- a write torn by a kill. Otherwise does nothing (the caller writes `data`)."""
    if _reached(name):
        handle.write(data[: len(data) // 2])
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
