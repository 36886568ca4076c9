"""What one ingest run did: added, updated, skipped (already stored) and rejected artworks, with reasons."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Rejection:
    item: str  # the artwork id, or the file name / metadata row when there is no id
    reason: str


@dataclass
class IngestReport:
    catalogue: str
    collection: str = ""
    shard: str = "0/1"
    total: int = 0  # artworks of this shard the metadata named (rows that were rejected included)
    added: int = 0  # new in the search service
    updated: int = 0  # stored again because their image or metadata changed
    skipped: int = 0  # already stored, same record: not encoded again
    encoded: int = 0  # images sent to the encoder by this run
    regions_encoded: int = 0  # region crops sent to the encoder besides (artsearch_tools.regions)
    artists_added: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    state_file: str = ""

    @property
    def stored(self) -> int:
        return self.added + self.updated

    @property
    def processed(self) -> int:
        return self.stored + self.skipped + len(self.rejected)

    def reject(self, item: str, reason: str) -> None:
        self.rejected.append(Rejection(item, reason))

    def summary(self) -> str:
        lines = [
            f"catalogue {self.catalogue}: {self.stored} artworks stored, {len(self.rejected)} rejected, "
            f"{self.skipped} skipped (already stored); {self.added} added, {self.updated} updated, "
            f"{self.encoded} encoded (+{self.regions_encoded} region crops), "
            f"{self.artists_added} new artists, {self.seconds:.1f} s"
        ]
        lines += [f"  rejected {rejection.item}: {rejection.reason}" for rejection in self.rejected]
        if self.interrupted:
            lines.append(f"  interrupted after {self.processed} of {self.total} artworks")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["stored"] = self.stored
        return document

    def write(self, path: Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_json(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
