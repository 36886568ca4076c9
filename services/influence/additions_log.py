"""Append-only JSON-lines log of what ingest added to the in-memory graph, replayed at start so that
additions survive restarts. One line per artist or edge; a batch writes its artists before its edges."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from artsearch.artists import ArtistRecord
from services.influence.graph import Influence

log = logging.getLogger(__name__)

LOG_FILE = "additions.jsonl"


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


class AdditionsLog:
    """The additions file in a state directory (created when missing)."""

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LOG_FILE

    def replay(self) -> list[ArtistRecord | Influence]:
        """Every entry in the order written. A torn last line (a crash mid-write) is cut off; any other
        unreadable line raises ValueError, since skipping it would silently lose data."""
        if not self.path.exists():
            return []
        raw = self.path.read_bytes()
        complete, _, torn = raw.rpartition(b"\n")
        if torn:
            log.warning("dropping a torn last line", extra={"path": str(self.path), "bytes": len(torn)})
            with self.path.open("r+b") as handle:
                handle.truncate(len(complete) + 1 if complete else 0)
        entries = []
        for number, line in enumerate(complete.decode("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                entries.append(_parse(json.loads(line)))
            except (ValueError, KeyError, TypeError) as error:
                raise ValueError(f"{self.path}:{number}: unreadable entry ({error})") from error
        return entries

    def append(self, artists: Sequence[ArtistRecord], influences: Sequence[Influence]) -> None:
        """Writes one batch durably (fsync), artists first, before the graph applies it."""
        lines = [_artist_entry(artist) for artist in artists] + [
            _influence_entry(edge) for edge in influences
        ]
        if not lines:
            return
        payload = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
