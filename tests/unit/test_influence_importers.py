"""The influence importers on small hand-written files (and the real PainterPalette file where ../shared
has it): parsing, name resolution, hub removal, the import command into the embedded graph."""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path

import pytest

from artsearch.artists import ArtistIndex, ArtistRecord
from artsearch_tools.influence import importers
from artsearch_tools.influence.importers import (
    ImportedGraph,
    import_into,
    prepare_import,
    read_dbpedia_csv,
    read_painterpalette_csv,
    top_degree_artists,
)
from services.influence.curated import DEFAULT_DATA_DIR, load_curated
from services.influence.graph import NewInfluence
from services.influence.memory_graph import InMemoryInfluenceGraph

REPO_ROOT = Path(__file__).resolve().parents[2]
PAINTERPALETTE_CSV = REPO_ROOT.parent / "shared" / "data" / "painterpalette" / "PainterPalette.csv"
PAINTERPALETTE_COLUMNS = [
    *("artist", "Nationality", "movement", "birth_year", "death_year"),
    *("Influencedby", "Influencedon", "Pupils", "Teachers"),
]


@pytest.fixture(scope="module")
def curated_index() -> ArtistIndex:
    return ArtistIndex.from_records(load_curated(DEFAULT_DATA_DIR).artists)


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_painterpalette(path: Path) -> Path:
    rows = [
        ["Jane  Doe", "French,Jewish", "Fauvism", "1901.0", "1970.0", "Claude Monet,Surrealism,", "", "", ""],
        ["Claude Monet", "French", "Impressionism", "1840.0", "1926.0", "", "Jane Doe,", "", ""],
        ["Tom Teacher", "", "", "", "", "", "", "Jane Doe,Artists2/x/y 1900.jpg,", ""],
        # A shifted row: tags and museums in the list columns, nothing of it a listed painter.
        [
            "Shifted Row",
            "",
            "",
            "",
            "",
            "allegories-and-symbols,boats,",
            "Louvre, Paris, France,",
            "",
            "Ilya X,",
        ],
        ["Ann Pupil", "", "", "1950", "", "", "", "", "Tom Teacher,jane doe,"],
    ]
    return write_csv(path, PAINTERPALETTE_COLUMNS, rows)


def test_dbpedia_lists_are_read_safely(tmp_path):
    path = write_csv(
        tmp_path / "dbpedia.csv",
        ["Artist", "Influence"],
        [
            ["Vincent van Gogh", "['Jean-François Millet', \"Katsushika  Hokusai\"]"],
            ["Jane Doe", "'Claude_Monet'"],
            ["No One", "[]"],
            ["Evil", "__import__('os').system('false')"],
            ["Numbers", "[1, 2]"],
            ["", "['Claude Monet']"],
        ],
    )
    graph = read_dbpedia_csv(path)
    assert graph.rows == 6 and graph.skipped == {"unreadable row": 3}
    assert [(i.influencer, i.influenced) for i in graph.influences] == [
        ("Jean-François Millet", "Vincent van Gogh"),
        ("Katsushika Hokusai", "Vincent van Gogh"),
        ("Claude_Monet", "Jane Doe"),
    ]
    assert {i.relation for i in graph.influences} == {"influenced"}
    with pytest.raises(ValueError, match="Artist,Influence"):
        read_dbpedia_csv(write_csv(tmp_path / "bad.csv", ["Name", "Influence"], [["x", "[]"]]))


def test_painterpalette_keeps_listed_painters_only_and_teachers_as_their_own_relation(tmp_path):
    graph = read_painterpalette_csv(write_painterpalette(tmp_path / "pp.csv"))
    assert graph.rows == 5
    jane = graph.artists[0]
    assert (jane.name, jane.key, jane.birth_year, jane.death_year, jane.movement, jane.nationality) == (
        "Jane Doe",
        "jane doe",
        1901,
        1970,
        "Fauvism",
        "French",
    )
    assert sorted((i.influencer, i.influenced, i.relation) for i in graph.influences) == [
        ("Claude Monet", "Jane Doe", "influenced"),
        ("Claude Monet", "Jane Doe", "influenced"),
        ("Tom Teacher", "Ann Pupil", "teacher"),
        ("Tom Teacher", "Jane Doe", "teacher"),
        ("jane doe", "Ann Pupil", "teacher"),
    ]
    assert graph.skipped["Influencedby: not a listed painter"] == 3
    assert graph.skipped["Teachers: not a listed painter"] == 1


def test_prepare_resolves_names_merges_spellings_and_drops_loops(curated_index):
    imported = ImportedGraph(
        "test",
        artists=[ArtistRecord.named(n) for n in ["Van Gogh", "Gogh, Vincent van", "Jane Doe", "DOE, Jane"]],
        influences=[
            NewInfluence("Hokusai", "Van Gogh"),
            NewInfluence("Katsushika Hokusai", "vincent van gogh"),  # the same edge, spelled otherwise
            NewInfluence("Van Gogh", "Vincent van Gogh"),  # a self-loop once resolved
            NewInfluence("Jane Doe", "Van Gogh"),
            NewInfluence("doe, jane", "Van Gogh", relation="teacher"),  # teaching wins over influence
        ],
    )
    prepared = prepare_import(imported, curated_index)
    assert [a.key for a in prepared.artists] == ["vincent van gogh", "jane doe"]
    assert (prepared.artists[0].name, prepared.artists[1].name) == ("Van Gogh", "Jane Doe")
    assert [(i.influencer, i.influenced, i.relation) for i in prepared.influences] == [
        ("katsushika hokusai", "vincent van gogh", "influenced"),
        ("jane doe", "vincent van gogh", "teacher"),
    ]
    assert prepared.dropped == {"repeated edge": 2, "self-loop or blank name": 1}


def test_hubs_are_the_highest_degree_artists_and_leave_with_their_edges(curated_index):
    edges = [("hub", f"spoke {i}") for i in range(4)] + [("second", "spoke 0"), ("second", "x"), ("y", "z")]
    assert top_degree_artists(edges, 2) == [("hub", 4), ("second", 2)]
    assert top_degree_artists([("b", "a")], 5) == [("a", 1), ("b", 1)]
    imported = ImportedGraph(
        "test",
        artists=[ArtistRecord.named(n) for n in {name for pair in edges for name in pair}],
        influences=[NewInfluence(a, b) for a, b in edges],
    )
    prepared = prepare_import(imported, curated_index, hubs=1)
    assert prepared.removed_hubs == [("hub", 4)]
    assert "hub" not in {a.key for a in prepared.artists}
    assert len(prepared.influences) == 3 and prepared.dropped["edge of a removed hub"] == 4
    with pytest.raises(ValueError, match="hubs"):
        prepare_import(imported, curated_index, hubs=-1)


async def test_import_into_the_embedded_graph_is_idempotent(tmp_path, curated_index):
    prepared = prepare_import(
        read_painterpalette_csv(write_painterpalette(tmp_path / "pp.csv")), curated_index
    )
    graph = InMemoryInfluenceGraph.load(DEFAULT_DATA_DIR)
    before = await graph.stats()
    added = await import_into(graph, prepared, batch_size=2)
    assert added == (4, 4)  # Monet is curated; the other four painters are new, with four edges
    assert [d.hops for d in (await graph.distances("Ann Pupil", ["Monet", "Van Gogh"], 10)).distances] == [
        2,
        4,
    ]
    assert await import_into(graph, prepared) == (0, 0)
    after = await graph.stats()
    assert (after.artists - before.artists, after.influences - before.influences) == (4, 4)


async def run_command(argv: list[str]) -> int:
    # The command runs its own event loop, as from a shell: give it a thread of its own.
    return await asyncio.to_thread(importers.main, ["import-influences", *argv])


async def test_the_command_imports_into_the_state_dir_of_the_embedded_graph(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEO4J_URI", raising=False)
    source = write_painterpalette(tmp_path / "pp.csv")
    argv = ["painterpalette", str(source), "--state-dir", str(tmp_path / "state")]
    assert await run_command(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["artists_added"], summary["influences_added"]) == (4, 4)
    assert summary["target"].startswith("in-memory graph")
    reopened = InMemoryInfluenceGraph.load(DEFAULT_DATA_DIR, tmp_path / "state")
    assert [d.hops for d in (await reopened.distances("Ann Pupil", ["Monet"], 10)).distances] == [2]
    assert await run_command([*argv, "--hubs", "1"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["removed_hubs"] == [{"key": "jane doe", "degree": 3}]
    assert (again["artists_added"], again["influences_added"]) == (0, 0)


async def test_the_command_takes_its_state_dir_from_the_environment(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEO4J_URI", raising=False)
    monkeypatch.setenv("INFLUENCE_STATE_DIR", str(tmp_path / "state"))
    source = write_painterpalette(tmp_path / "pp.csv")
    assert await run_command(["painterpalette", str(source)]) == 0
    assert json.loads(capsys.readouterr().out)["artists_added"] == 4
    reopened = InMemoryInfluenceGraph.load(DEFAULT_DATA_DIR, tmp_path / "state")
    assert [d.hops for d in (await reopened.distances("Ann Pupil", ["Monet"], 10)).distances] == [2]


async def test_the_command_refuses_to_import_into_nothing(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NEO4J_URI", raising=False)
    monkeypatch.delenv("INFLUENCE_STATE_DIR", raising=False)
    source = write_painterpalette(tmp_path / "pp.csv")
    assert await run_command(["painterpalette", str(source)]) == 2
    assert "--neo4j-uri" in capsys.readouterr().err
    assert await run_command(["painterpalette", str(source), "--dry-run"]) == 0
    assert json.loads(capsys.readouterr().out)["influences"] == 4
    assert await run_command(["dbpedia", str(tmp_path / "missing.csv"), "--dry-run"]) == 2


def test_the_real_painterpalette_file(curated_index):
    if not PAINTERPALETTE_CSV.is_file():
        pytest.skip(f"{PAINTERPALETTE_CSV} is absent (PainterPalette lives in ../shared/data)")
    imported = read_painterpalette_csv(PAINTERPALETTE_CSV)
    prepared = prepare_import(imported, curated_index, hubs=11)
    assert imported.rows == 10_361
    assert 10_000 < len(prepared.artists) < 10_361
    assert 700 < len(prepared.influences) < 1000
    assert len(prepared.removed_hubs) == 11 and prepared.removed_hubs[0][0] == "pablo picasso"
    assert {edge.relation for edge in prepared.influences} == {"influenced", "teacher"}
