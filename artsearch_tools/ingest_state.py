"""Ingest bookkeeping: which artworks a run has stored, so that a re-run or a resumed run skips them.

The state of one catalogue (and collection) is a JSON-lines file under the state folder:

    <state-dir>/ingest-<catalogue>--<collection>.jsonl                      one process
    <state-dir>/ingest-<catalogue>--<collection>.shard-<i>-of-<n>.jsonl     shard i of n (parallel Job)

Each line is ``{"id": ..., "fingerprint": ...}`` for an artwork the search service acknowledged; the
fingerprint is a SHA-256 of the artwork record and its image bytes, so a changed image or changed metadata
is stored again. Lines are appended and fsync'd once per batch: after a crash at most the batches in flight
are lost (and found again in the search service). A torn last line is ignored. Every shard's file is read
on load, so a later single-process run (or another shard count) sees what all shards stored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Shard:
    """Which part of the catalogue a process ingests: artworks whose id hashes to `index` modulo `count`."""

    index: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ValueError(f"shard count must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard index must be in 0..{self.count - 1}, got {self.index}")

    def owns(self, key: str) -> bool:
        return shard_of(key, self.count) == self.index

    @property
    def suffix(self) -> str:
        return "" if self.count == 1 else f".shard-{self.index}-of-{self.count}"


def shard_of(key: str, count: int) -> int:
    """A stable shard number for `key` (the same on every machine and Python version)."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


def fingerprint(record: bytes, content: bytes | None = None) -> str:
    """SHA-256 of an artwork's serialised record and, when known, its image bytes."""
    digest = hashlib.sha256(record)
    if content is not None:
        digest.update(b"\0")
        digest.update(content)
    return digest.hexdigest()


def state_stem(catalogue: str, collection: str) -> str:
    return f"ingest-{_safe(catalogue)}--{_safe(collection or 'default')}"


def _safe(name: str) -> str:
    return _UNSAFE.sub("_", name) or "_"


class IngestState:
    """Done ids with their fingerprints; `record` appends and syncs a batch."""

    def __init__(self, folder: Path, catalogue: str, collection: str, shard: Shard = Shard()) -> None:
        self.folder = Path(folder)
        self.stem = state_stem(catalogue, collection)
        self.path = self.folder / f"{self.stem}{shard.suffix}.jsonl"
        self.done: dict[str, str] = {}
        self._handle: IO[str] | None = None

    def load(self) -> IngestState:
        """Reads every state file of this catalogue and collection (all shards)."""
        for path in sorted(self.folder.glob(f"{self.stem}*.jsonl")):
            if path.name == f"{self.stem}.jsonl" or path.name.startswith(f"{self.stem}.shard-"):
                self.done.update(read_state_file(path))
        return self

    def fingerprint_of(self, artwork_id: str) -> str | None:
        return self.done.get(artwork_id)

    def record(self, rows: Iterable[tuple[str, str]]) -> None:
        """Appends (id, fingerprint) rows and makes them durable before returning."""
        rows = list(rows)
        if not rows:
            return
        handle = self._open()
        handle.write("".join(json.dumps({"id": i, "fingerprint": f}) + "\n" for i, f in rows))
        handle.flush()
        os.fsync(handle.fileno())
        self.done.update(rows)

    def _open(self) -> IO[str]:
        if self._handle is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a", encoding="utf-8")
            _drop_torn_line(self._handle)
        return self._handle

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_state_file(path: Path) -> dict[str, str]:
    """(id -> fingerprint) of one state file; lines that do not parse (a torn write) are skipped."""
    done: dict[str, str] = {}
    with Path(path).open(encoding="utf-8", errors="replace") as handle:
        for line in handle:
            try:
                row = json.loads(line)
                done[str(row["id"])] = str(row["fingerprint"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return done


def _drop_torn_line(handle: IO[str]) -> None:
    """A crash mid-write can leave a line without its newline: start the next write on a fresh line."""
    if handle.tell() == 0:
        return
    with open(handle.name, "rb") as reader:
        reader.seek(-1, os.SEEK_END)
        if reader.read(1) != b"\n":
            handle.write("\n")
