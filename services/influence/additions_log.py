"""Append-only JSON-lines log of what ingest added to the in-memory graph, replayed at start so that
additions survive restarts.

All or nothing for a reader: each batch is one line (`{"batch": [{"artist": ...}, ..., {"influence": ...}]}`,
artists before edges), and a line counts only once its final newline is written. The line is fsync'd before
the graph applies the batch and the call is answered, so an acknowledged batch is on disk; a batch whose
append a crash cut short is a torn last line (no newline), which the next start cuts off with a warning and
never holds start-up on. An append that fails in a running service (disk full, an I/O error) cuts its partial
line off again at once, and every append first cuts any torn tail it finds, so a failed batch never glues
itself to the next one. Logs written before batches were one line keep their one-entry lines
(`{"artist": ...}` or `{"influence": ...}`), read as before. Any other unreadable line (a complete line in the
middle that is not a batch: the file was damaged or edited) stops the start with its line number, byte
offset and an excerpt, since skipping it would silently lose data.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from artsearch import fault_injection
from artsearch.artists import ArtistRecord
from services.influence.graph import GraphStorageFull, GraphUnavailable, Influence

log = logging.getLogger(__name__)

LOG_FILE = "additions.jsonl"
# Write failures that mean "no room", not "broken": the caller may retry once space is freed.
_NO_ROOM = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})
# How far back from the end of the file to look for the last newline at a time.
_TAIL_CHUNK = 64 * 1024


class CorruptAdditionsLog(ValueError):
    """A complete line of the log that is not a batch of additions (the service refuses to start)."""


def _artist_entry(artist: ArtistRecord) -> dict[str, object]:
    return {
        "artist": {
            "key": artist.key,
            "name": artist.name,
            "birth_year": artist.birth_year,
            "death_year": artist.death_year,
            "movement": artist.movement,
            "nationality": artist.nationality,
        }
    }


def _influence_entry(edge: Influence) -> dict[str, object]:
    return {
        "influence": {
            "influencer": edge.influencer,
            "influenced": edge.influenced,
            "relation": edge.relation,
            "source": edge.source,
        }
    }


def _parse(entry: dict[str, dict[str, object]]) -> ArtistRecord | Influence:
    if "artist" in entry:
        fields = entry["artist"]
        return ArtistRecord(
            key=str(fields["key"]),
            name=str(fields["name"]),
            birth_year=int(fields.get("birth_year", 0)),  # type: ignore[call-overload]
            death_year=int(fields.get("death_year", 0)),  # type: ignore[call-overload]
            movement=str(fields.get("movement", "")),
            nationality=str(fields.get("nationality", "")),
        )
    fields = entry["influence"]
    return Influence(
        influencer=str(fields["influencer"]),
        influenced=str(fields["influenced"]),
        relation=str(fields["relation"]),
        source=str(fields.get("source", "")),
    )


def _parse_line(line: bytes) -> list[ArtistRecord | Influence]:
    """The entries of one complete line: a batch, or one entry of a log written before batches."""
    content = json.loads(line)
    if isinstance(content, dict) and "batch" in content:
        return [_parse(entry) for entry in content["batch"]]
    return [_parse(content)]


class AdditionsLog:
    """The additions file in a state directory (created when missing)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LOG_FILE

    def replay(self) -> list[ArtistRecord | Influence]:
        """Every entry of every complete batch, in the order written (see the module docstring). Raises
        CorruptAdditionsLog naming the first unreadable complete line."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        complete = raw.rfind(b"\n") + 1
        if complete < len(raw):  # opened for writing only then: a read-only state folder still loads
            with self.path.open("r+b") as handle:
                _cut_torn_tail(handle, self.path)
            raw = raw[:complete]
        entries: list[ArtistRecord | Influence] = []
        offset = 0
        for number, line in enumerate(raw.split(b"\n")[:-1], start=1):
            if line.strip():
                entries.extend(self._read_line(line, number, offset))
            offset += len(line) + 1
        return entries

    def _read_line(self, line: bytes, number: int, offset: int) -> list[ArtistRecord | Influence]:
        try:
            return _parse_line(line)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            excerpt = line[:80].decode("utf-8", errors="replace")
            raise CorruptAdditionsLog(
                f"{self.path}: line {number} (byte {offset}) is not a batch of additions "
                f"({type(error).__name__}: {error}); it starts {excerpt!r}. The file was damaged or edited: "
                "restore it from a backup, or remove that line to start without those additions"
            ) from None

    def append(self, artists: Sequence[ArtistRecord], influences: Sequence[Influence]) -> None:
        """Writes one batch as one line, durably (fsync), before the graph applies it. Raises
        GraphStorageFull when the disk has no room, GraphUnavailable on another write failure; either way
        the file is left as it was."""
        entries = [_artist_entry(artist) for artist in artists]
        entries += [_influence_entry(edge) for edge in influences]
        if not entries:
            return
        payload = (json.dumps({"batch": entries}, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            with self.path.open("r+b" if self.path.exists() else "w+b") as handle:
                start = _cut_torn_tail(handle, self.path)
                handle.seek(start)
                _write_or_cut(handle, payload, start)
        except OSError as error:
            failure = GraphStorageFull if error.errno in _NO_ROOM else GraphUnavailable
            raise failure(f"cannot record the additions in {self.path}: {error}") from error


def _write_or_cut(handle: IO[bytes], payload: bytes, start: int) -> None:
    """Writes `payload` at `start` durably; on failure cuts the file back to `start` before raising."""
    try:
        fault_injection.tear(handle, payload, "additions.append")
        handle.write(payload)
        handle.flush()
        os.fsync(handle.fileno())
    except BaseException:
        try:
            handle.truncate(start)
            os.fsync(handle.fileno())
        except OSError:
            log.exception("cannot cut a failed append off; the next append or start will")
        raise


def _cut_torn_tail(handle: IO[bytes], path: Path) -> int:
    """Cuts whatever follows the last newline (a torn line) off the file, durably; returns the length of the
    complete lines."""
    size = handle.seek(0, os.SEEK_END)
    end = size
    while end > 0:
        start = max(0, end - _TAIL_CHUNK)
        handle.seek(start)
        newline = handle.read(end - start).rfind(b"\n")
        if newline >= 0:
            end = start + newline + 1
            break
        end = start
    if end < size:
        log.warning("dropping a torn last line", extra={"path": str(path), "bytes": size - end})
        handle.truncate(end)
        handle.flush()
        os.fsync(handle.fileno())
    return end
