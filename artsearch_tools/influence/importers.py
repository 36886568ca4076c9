"""Importers of published influence data into either graph backend, and the `import-influences` command.

    artsearch import-influences {dbpedia,painterpalette} FILE [--hubs N] [--neo4j-uri URI | --state-dir DIR]
    python -m artsearch_tools.influence.importers import-influences ...        (the same, without the CLI)

Sources:
- dbpedia: the seed system's CSV, columns `Artist,Influence`, the influence column a stringified Python
  list of names (DBpedia `dbo:influencedBy`: each listed artist influenced `Artist`).
- painterpalette: PainterPalette.csv (`../shared/data/painterpalette/`): `Influencedby` / `Influencedon`
  give influences, `Teachers` / `Pupils` teacher -> pupil edges (relation "teacher"). Its list columns
  are shifted on some rows (art-movement names, tags, museums, image paths land in them), so a name is
  kept only when it is one of the painters the file lists.

Every name goes through the one normalisation (`artsearch.artists`): a name that resolves to a curated
artist joins it ("Van Gogh" -> "vincent van gogh"); any other gets its normalised name as key, so that two
spellings of one painter become one node. Edges that resolve to a self-loop or repeat an edge are
dropped. `--hubs N` leaves out the N artists with the most distinct neighbours in the file (the original
system removed 11), with their edges. The import goes through the graph interface's `add`, so it is
idempotent and behaves the same on both backends: run again, it adds nothing.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import csv
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from artsearch.artists import ArtistIndex, ArtistRecord, normalise_name
from artsearch.config import ConfigError, Env
from artsearch_tools.settings import IMPORT_NEO4J_URI, IMPORT_STATE_DIR
from services.influence.graph import (
    RELATION_INFLUENCED,
    RELATION_TEACHER,
    AddResult,
    InfluenceGraph,
    NewInfluence,
)

if TYPE_CHECKING:
    from services.influence.config import InfluenceConfig

DBPEDIA_SOURCE = "DBpedia dbo:influencedBy"
PAINTERPALETTE_SOURCE = "PainterPalette"
MAX_LIST_CELL_CHARS = 100_000
DEFAULT_BATCH_SIZE = 5000


@dataclass
class ImportedGraph:
    """What a source file says, by display name, before names are resolved."""

    source: str
    artists: list[ArtistRecord] = field(default_factory=list)
    influences: list[NewInfluence] = field(default_factory=list)
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)


# ---- readers -----------------------------------------------------------------------------------------------


def _display_name(raw: str) -> str:
    return " ".join(raw.split())


def _parse_name_list(cell: str) -> list[str] | None:
    """A stringified Python list of names ("['Claude Monet', 'Paul Cézanne']"), read without evaluating
    code; None when the cell is not such a list."""
    cell = cell.strip()
    if not cell:
        return []
    if len(cell) > MAX_LIST_CELL_CHARS:
        return None
    try:
        value = ast.literal_eval(cell)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        return None
    return [_display_name(item) for item in value if item.strip()]


def read_dbpedia_csv(path: Path) -> ImportedGraph:
    graph = ImportedGraph(DBPEDIA_SOURCE)
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = {"Artist", "Influence"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)} (expected Artist,Influence)")
        for row in reader:
            graph.rows += 1
            artist = _display_name(row["Artist"] or "")
            influencers = _parse_name_list(row["Influence"] or "")
            if not artist or influencers is None:
                graph.skipped["unreadable row"] += 1
                continue
            graph.artists.append(ArtistRecord.named(artist))
            for influencer in influencers:
                graph.artists.append(ArtistRecord.named(influencer))
                graph.influences.append(NewInfluence(influencer, artist, source=DBPEDIA_SOURCE))
    return graph


def _year(raw: str) -> int:
    try:
        return int(float(raw)) if raw.strip() else 0
    except ValueError:
        return 0


def _listed_names(cell: str) -> list[str]:
    return [_display_name(item) for item in cell.split(",") if item.strip()]


# PainterPalette list columns: (column, the row's painter is the influencer?, relation).
_PAINTERPALETTE_EDGES = (
    ("Influencedby", False, RELATION_INFLUENCED),
    ("Influencedon", True, RELATION_INFLUENCED),
    ("Teachers", False, RELATION_TEACHER),
    ("Pupils", True, RELATION_TEACHER),
)


def read_painterpalette_csv(path: Path) -> ImportedGraph:
    graph = ImportedGraph(PAINTERPALETTE_SOURCE)
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    required = {"artist", "birth_year", "death_year", "movement", "Nationality"} | {
        column for column, _, _ in _PAINTERPALETTE_EDGES
    }
    missing = required - set(rows[0] if rows else ())
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    painters = {normalise_name(row["artist"] or "") for row in rows} - {""}
    for row in rows:
        graph.rows += 1
        painter = _display_name(row["artist"] or "")
        if not normalise_name(painter):
            graph.skipped["row without a painter"] += 1
            continue
        graph.artists.append(
            ArtistRecord.named(
                painter,
                birth_year=_year(row["birth_year"] or ""),
                death_year=_year(row["death_year"] or ""),
                movement=(row["movement"] or "").strip(),
                nationality=(row["Nationality"] or "").split(",")[0].strip(),
            )
        )
        for column, painter_leads, relation in _PAINTERPALETTE_EDGES:
            for other in _listed_names(row[column] or ""):
                if normalise_name(other) not in painters:
                    graph.skipped[f"{column}: not a listed painter"] += 1
                    continue
                pair = (painter, other) if painter_leads else (other, painter)
                graph.influences.append(NewInfluence(*pair, source=PAINTERPALETTE_SOURCE, relation=relation))
    return graph


READERS: dict[str, Callable[[Path], ImportedGraph]] = {
    "dbpedia": read_dbpedia_csv,
    "painterpalette": read_painterpalette_csv,
}


# ---- resolution, hubs --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedImport:
    """Artists (one per key, first spelling seen) and edges between keys, ready for `InfluenceGraph.add`."""

    artists: list[ArtistRecord]
    influences: list[NewInfluence]
    removed_hubs: list[tuple[str, int]]
    dropped: Counter[str]


def prepare_import(imported: ImportedGraph, index: ArtistIndex, hubs: int = 0) -> PreparedImport:
    """Resolves names with `index` (the curated artists the graph resolves with), merges spellings, drops
    self-loops and repeated edges, and leaves out the `hubs` highest-degree artists."""
    if hubs < 0:
        raise ValueError(f"--hubs must be >= 0, got {hubs}")
    dropped: Counter[str] = Counter(imported.skipped)
    artists: dict[str, ArtistRecord] = {}
    for artist in imported.artists:
        key = index.key_for(artist.name)
        if key and key not in artists:
            artists[key] = replace(artist, key=key)
    edges: dict[tuple[str, str], NewInfluence] = {}
    for influence in imported.influences:
        pair = (index.key_for(influence.influencer), index.key_for(influence.influenced))
        if not all(pair) or pair[0] == pair[1]:
            dropped["self-loop or blank name"] += 1
            continue
        # The graphs keep one edge per (influencer, influenced): teaching, the more specific fact, wins.
        known = edges.get(pair)
        if known is None or (known.relation, influence.relation) == (RELATION_INFLUENCED, RELATION_TEACHER):
            edges[pair] = replace(influence, influencer=pair[0], influenced=pair[1])
        if known is not None:
            dropped["repeated edge"] += 1
    removed = top_degree_artists(edges, hubs)
    removed_keys = {key for key, _ in removed}
    kept_edges = [edge for pair, edge in edges.items() if not removed_keys & set(pair)]
    dropped["edge of a removed hub"] += len(edges) - len(kept_edges)
    kept_artists = [artist for key, artist in artists.items() if key not in removed_keys]
    return PreparedImport(kept_artists, kept_edges, removed, +dropped)


def top_degree_artists(edges: Iterable[tuple[str, str]], count: int) -> list[tuple[str, int]]:
    """The `count` artists with the most distinct neighbours (influence taken as undirected), with their
    degree; ties go to the alphabetically first key, so the choice is reproducible."""
    neighbours: dict[str, set[str]] = {}
    for first, second in edges:
        neighbours.setdefault(first, set()).add(second)
        neighbours.setdefault(second, set()).add(first)
    ranked = sorted(neighbours.items(), key=lambda item: (-len(item[1]), item[0]))
    return [(key, len(linked)) for key, linked in ranked[:count]]


async def import_into(
    graph: InfluenceGraph, prepared: PreparedImport, batch_size: int = DEFAULT_BATCH_SIZE
) -> AddResult:
    """Adds artists first, then edges, in batches (an edge's endpoints are known by the time it is added)."""
    artists_added = influences_added = 0
    for start in range(0, len(prepared.artists), batch_size):
        added = await graph.add(prepared.artists[start : start + batch_size], [])
        artists_added += added.artists_added
    for start in range(0, len(prepared.influences), batch_size):
        added = await graph.add([], prepared.influences[start : start + batch_size])
        artists_added += added.artists_added
        influences_added += added.influences_added
    return AddResult(artists_added, influences_added)


# ---- the command -------------------------------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Adds `import-influences` to a command's subparsers (the `artsearch` CLI calls this)."""
    command = subparsers.add_parser(
        "import-influences",
        help="import an influence CSV (DBpedia or PainterPalette) into the influence graph",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("format", choices=sorted(READERS), help="what kind of file FILE is")
    command.add_argument("file", type=Path, metavar="FILE")
    command.add_argument("--hubs", type=int, default=0, help="leave out the N highest-degree artists")
    command.add_argument(
        "--neo4j-uri",
        default=None,
        help="import into Neo4j here (default $NEO4J_URI; NEO4J_USER/PASSWORD/DATABASE/DIALECT apply)",
    )
    command.add_argument(
        "--state-dir",
        default=None,
        help="else import into the embedded graph's additions kept here (default $INFLUENCE_STATE_DIR)",
    )
    command.add_argument("--data-dir", default=None, help="the curated data (default $INFLUENCE_DATA_DIR)")
    command.add_argument("--dry-run", action="store_true", help="read and resolve only; write nothing")
    command.set_defaults(run=run_import_command)


def _target_config(args: argparse.Namespace) -> InfluenceConfig:
    """The service's configuration from the environment, with the command's options on top."""
    from services.influence.config import InfluenceConfig  # here: keeps `artsearch --help` light

    environ = dict(os.environ)
    neo4j_uri = args.neo4j_uri or IMPORT_NEO4J_URI.read(Env(environ))
    if neo4j_uri:
        # One load, no background refresh: the command ends when the import does.
        environ.update({"NEO4J_URI": neo4j_uri, "NEO4J_REFRESH_S": "0"})
    else:
        environ.pop("NEO4J_URI", None)
    if args.data_dir:
        environ["INFLUENCE_DATA_DIR"] = args.data_dir
    config = InfluenceConfig.from_env(Env(environ))
    state_dir_given = args.state_dir or IMPORT_STATE_DIR.read(Env(environ))
    state_dir = Path(state_dir_given) if state_dir_given and config.neo4j is None else None
    if config.neo4j is None and state_dir is None and not args.dry_run:
        raise ConfigError("nothing would keep the import: give --neo4j-uri (or NEO4J_URI) or --state-dir")
    return replace(config, state_dir=state_dir)


async def _run_import(args: argparse.Namespace) -> dict[str, object]:
    from services.influence.backend_factory import open_influence_graph
    from services.influence.curated import load_curated

    config = _target_config(args)
    imported = READERS[args.format](args.file)
    index = ArtistIndex.from_records(load_curated(config.data_dir).artists)
    prepared = prepare_import(imported, index, args.hubs)
    summary: dict[str, object] = {
        "format": args.format,
        "file": str(args.file),
        "rows": imported.rows,
        "artists": len(prepared.artists),
        "influences": len(prepared.influences),
        "removed_hubs": [{"key": key, "degree": degree} for key, degree in prepared.removed_hubs],
        "dropped": dict(prepared.dropped),
    }
    if args.dry_run:
        return summary
    graph = await open_influence_graph(config)
    try:
        added = await import_into(graph, prepared)
        stats = await graph.stats()
    finally:
        await graph.close()
    summary.update(
        target=config.backend,
        artists_added=added.artists_added,
        influences_added=added.influences_added,
        graph={"artists": stats.artists, "influences": stats.influences},
    )
    return summary


def run_import_command(args: argparse.Namespace) -> int:
    try:
        summary = asyncio.run(_run_import(args))
    except ConfigError as error:
        print(f"import-influences: {error}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m artsearch_tools.influence.importers")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (FileNotFoundError, ValueError) as error:
        print(f"import-influences: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
