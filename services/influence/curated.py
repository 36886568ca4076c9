"""The curated influence data shipped with the service: `artists.csv` and `influences.csv`.

`influences.csv` columns: influencer, influenced (artist keys), relation (influenced | teacher), source
(the reference work the fact comes from). A teacher -> pupil edge counts as an influence.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from artsearch.artists import ArtistRecord, load_artist_records
from services.influence.graph import RELATIONS, Influence

DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data"
ARTISTS_FILE = "artists.csv"
INFLUENCES_FILE = "influences.csv"
INFLUENCE_CSV_COLUMNS = ("influencer", "influenced", "relation", "source")


@dataclass(frozen=True)
class CuratedData:
    artists: list[ArtistRecord]
    influences: list[Influence]


def load_influences(path: Path) -> list[Influence]:
    influences = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(INFLUENCE_CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            relation = (row["relation"] or "").strip()
            if relation not in RELATIONS:
                raise ValueError(f"{path}:{line}: relation {relation!r} is not one of {sorted(RELATIONS)}")
            influences.append(
                Influence(
                    influencer=(row["influencer"] or "").strip(),
                    influenced=(row["influenced"] or "").strip(),
                    relation=relation,
                    source=(row["source"] or "").strip(),
                )
            )
    return influences


def check_consistency(data: CuratedData) -> None:
    """Every edge joins two distinct known artists, once. Raises ValueError naming the first problem."""
    keys = {artist.key for artist in data.artists}
    seen: set[tuple[str, str]] = set()
    for edge in data.influences:
        pair = (edge.influencer, edge.influenced)
        unknown = [key for key in pair if key not in keys]
        if unknown:
            raise ValueError(f"influence {pair} names unknown artist key(s) {unknown}")
        if edge.influencer == edge.influenced:
            raise ValueError(f"influence {pair} is a self-loop")
        if pair in seen:
            raise ValueError(f"influence {pair} appears twice")
        seen.add(pair)


def load_curated(data_dir: Path) -> CuratedData:
    """Loads and checks the curated files in `data_dir` (FileNotFoundError / ValueError when broken)."""
    data = CuratedData(
        artists=load_artist_records(data_dir / ARTISTS_FILE),
        influences=load_influences(data_dir / INFLUENCES_FILE),
    )
    check_consistency(data)
    return data
