"""The influence-graph contract, run unchanged against every backend: the embedded graph, the Neo4j backend
on a real Bolt server (FalkorDB, always here) and on Neo4j 5 (a container, where Docker answers).

Each test gets an empty store and opens the graph on a small hand-built curated table; `reopen` opens a
second graph on the same store, as a restarted service would.
"""

from __future__ import annotations

import importlib.util
import itertools
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import pytest_asyncio

from artsearch.artists import ArtistRecord
from services.influence.additions_log import AdditionsLog
from services.influence.curated import CuratedData, check_consistency
from services.influence.graph import Influence, InfluenceGraph, InvalidGraphInput, NewInfluence
from services.influence.memory_graph import InMemoryInfluenceGraph
from services.influence.neo4j_graph import Neo4jInfluenceGraph


def _fixture_module():  # the Bolt servers' fixtures live beside the integration tests
    name = "falkordb_fixture"
    if name not in sys.modules:
        path = Path(__file__).resolve().parent.parent / "integration" / f"{name}.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        sys.modules[name] = module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return sys.modules[name]


_servers = _fixture_module()
falkordb = _servers.falkordb
neo4j_server = _servers.neo4j_server

# Anna -> Bert -> Cleo -> Dora -> Emil (Bert taught Cleo), a pair Xavi -> Yuki, Zoe alone, and an
# apostrophe and a backslash in names, which FalkorDB's Bolt layer must not choke on.
NAMES = [
    "Anna Alpha",
    "Bert Beta",
    "Cleo Gamma",
    "Dora Delta",
    "Emil Epsilon",
    "Xavi Chi",
    "Yuki Psi",
    "Zoe Omega",
    "Georgia O'Keeffe",
]
CHAIN = ["anna alpha", "bert beta", "cleo gamma", "dora delta", "emil epsilon"]


def curated_table() -> CuratedData:
    artists = [
        ArtistRecord.named(
            name,
            aliases=("Bee",) if name == "Bert Beta" else (),
            birth_year=1800 + i,
            movement="Back\\slash School" if name == "Zoe Omega" else "",
        )
        for i, name in enumerate(NAMES)
    ]
    edges = [
        Influence(a, b, "teacher" if a == "bert beta" else "influenced", f"ref {a} -> {b}")
        for a, b in [*itertools.pairwise(CHAIN), ("xavi chi", "yuki psi"), ("georgia okeeffe", "xavi chi")]
    ]
    data = CuratedData(artists, edges)
    check_consistency(data)
    return data


Opener = Callable[[], Awaitable[InfluenceGraph]]


@pytest.fixture(params=["embedded", "falkordb", "neo4j"])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="session")
async def open_graph(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Opener]:
    """Opens a graph on this test's store (empty at the first call); closes all at the end."""
    opened: list[InfluenceGraph] = []
    if backend == "embedded":

        async def opener() -> InfluenceGraph:
            return InMemoryInfluenceGraph(curated_table(), AdditionsLog(tmp_path))

    else:
        server = request.getfixturevalue(backend if backend == "falkordb" else "neo4j_server")
        store = server.store()
        await _servers.clear_graph(store)
        await store.close()

        async def opener() -> InfluenceGraph:
            return await Neo4jInfluenceGraph.open(server.store(), curated_table(), refresh_seconds=0)

    async def tracked() -> InfluenceGraph:
        graph = await opener()
        opened.append(graph)
        return graph

    yield tracked
    for graph in opened:
        await graph.close()


@pytest_asyncio.fixture(loop_scope="session")
async def graph(open_graph: Opener) -> InfluenceGraph:
    return await open_graph()


async def hops(graph: InfluenceGraph, source: str, candidates: list[str], max_hops: int = 10) -> list[int]:
    return [d.hops for d in (await graph.distances(source, candidates, max_hops)).distances]


# ---- distances --------------------------------------------------------------------------------------------


async def test_distances_along_a_chain_ignore_edge_direction(graph):
    assert await hops(graph, "Anna Alpha", NAMES[:5]) == [0, 1, 2, 3, 4]
    assert await hops(graph, "Emil Epsilon", NAMES[:5]) == [4, 3, 2, 1, 0]


async def test_distances_report_each_candidate_in_request_order_with_its_key(graph):
    result = await graph.distances("ALPHA, Anna", ["Dora Delta", "Nobody Known", "Bee", "Dora Delta", ""], 10)
    assert result.source is not None and (result.source.key, result.source.birth_year) == ("anna alpha", 1800)
    assert result.source_known and not result.source_inferred
    assert [(d.artist, d.key, d.known, d.hops) for d in result.distances] == [
        ("Dora Delta", "dora delta", True, 3),
        ("Nobody Known", "", False, -1),
        ("Bee", "bert beta", True, 1),
        ("Dora Delta", "dora delta", True, 3),
        ("", "", False, -1),
    ]


async def test_max_hops_and_components_bound_what_is_reached(graph):
    assert await hops(graph, "Anna Alpha", NAMES[:5], max_hops=2) == [0, 1, 2, -1, -1]
    assert await hops(graph, "Anna Alpha", NAMES[:5], max_hops=0) == [0, -1, -1, -1, -1]
    assert await hops(graph, "Anna Alpha", ["Xavi Chi", "Zoe Omega"], max_hops=50) == [-1, -1]
    assert await hops(graph, "Yuki Psi", ["Georgia O'Keeffe", "okeeffe"]) == [2, 2]


async def test_unknown_and_inferred_sources(graph):
    unknown = await graph.distances("Nobody Known", ["Anna Alpha", "Nobody Else"], 10)
    assert unknown.source is None and not unknown.source_known and not unknown.source_inferred
    assert [(d.key, d.known, d.hops) for d in unknown.distances] == [
        ("anna alpha", True, -1),
        ("", False, -1),
    ]
    inferred = await graph.distances("", ["Nobody", "Cleo Gamma", "Anna Alpha", "Xavi Chi"], 10)
    assert inferred.source is not None and inferred.source.key == "cleo gamma" and inferred.source_inferred
    assert [d.hops for d in inferred.distances] == [-1, 0, 2, -1]
    nobody_known = await graph.distances("  ", ["Nobody", "Nobody Else"], 10)
    assert nobody_known.source is None and not nobody_known.source_inferred


async def test_distances_with_paths_give_a_chain_of_names_per_reached_candidate(graph):
    result = await graph.distances("Dora Delta", ["Bee", "Dora Delta", "Xavi Chi", "Nobody"], 10, True)
    assert [d.path for d in result.distances] == [
        ("Dora Delta", "Cleo Gamma", "Bert Beta"),
        ("Dora Delta",),
        (),
        (),
    ]
    assert all(len(d.path) == d.hops + 1 for d in result.distances if d.hops >= 0)
    within = await graph.distances("Anna Alpha", ["Dora Delta", "Cleo Gamma"], 2, True)
    assert [d.path for d in within.distances] == [(), ("Anna Alpha", "Bert Beta", "Cleo Gamma")]
    plain = await graph.distances("Dora Delta", ["Bee"], 10)
    assert plain.distances[0].path == ()


async def test_negative_max_hops_is_invalid(graph):
    with pytest.raises(InvalidGraphInput):
        await graph.distances("Anna Alpha", ["Bert Beta"], -1)
    with pytest.raises(InvalidGraphInput):
        await graph.path("Anna Alpha", "Bert Beta", -1)


# ---- paths and lookups ----------------------------------------------------------------------------------


async def test_paths_report_true_directions_relations_and_sources(graph):
    backward = await graph.path("Dora Delta", "Bee", 10)
    assert backward is not None and [a.key for a in backward.artists] == [
        "dora delta",
        "cleo gamma",
        "bert beta",
    ]
    assert [(e.influencer, e.influenced, e.relation) for e in backward.edges] == [
        ("cleo gamma", "dora delta", "influenced"),
        ("bert beta", "cleo gamma", "teacher"),
    ]
    assert backward.edges[1].source == "ref bert beta -> cleo gamma"
    same = await graph.path("Bee", "Bert Beta", 10)
    assert same is not None and [a.key for a in same.artists] == ["bert beta"] and same.edges == []
    assert await graph.path("Anna Alpha", "Emil Epsilon", 3) is None
    assert (await graph.path("Anna Alpha", "Emil Epsilon", 4)).hops == 4
    assert await graph.path("Anna Alpha", "Xavi Chi", 50) is None
    assert await graph.path("Anna Alpha", "Nobody Known", 10) is None


async def test_get_artists_finds_each_artist_once_with_its_details(graph):
    lookup = await graph.get_artists(["Bee", "Nobody", "BERT BETA", "Zoe Omega", "O'Keeffe, Georgia", ""])
    assert [a.key for a in lookup.found] == ["bert beta", "zoe omega", "georgia okeeffe"]
    assert lookup.found[0].aliases == ("Bee",) and lookup.found[0].birth_year == 1801
    assert lookup.found[1].movement == "Back\\slash School"
    assert lookup.found[2].name == "Georgia O'Keeffe"
    assert lookup.missing == ["Nobody", ""]


# ---- additions ------------------------------------------------------------------------------------------


async def test_additions_connect_artists_and_create_unknown_endpoints(graph):
    added = await graph.add(
        [ArtistRecord.named("Nora N'Dour", birth_year=1950, movement="Op art")],
        [
            NewInfluence("Emil Epsilon", "Xavi Chi", source="a letter 'quoted' \\ here"),
            NewInfluence("Yuki Psi", "Olga O'Neil"),
            NewInfluence("Olga O'Neil", "Nora N'Dour", relation="teacher"),
        ],
    )
    assert added == (2, 3)
    assert await hops(graph, "Anna Alpha", ["Xavi Chi", "Yuki Psi", "Olga O'Neil", "nora ndour"]) == [
        5,
        6,
        7,
        8,
    ]
    path = await graph.path("Emil Epsilon", "Xavi Chi", 1)
    assert path is not None and path.edges[0].source == "a letter 'quoted' \\ here"
    nora = (await graph.get_artists(["Nora N'Dour"])).found[0]
    assert (nora.key, nora.name, nora.birth_year, nora.movement) == (
        "nora ndour",
        "Nora N'Dour",
        1950,
        "Op art",
    )
    again = await graph.add([ArtistRecord.named("NORA N'DOUR")], [NewInfluence("Emil Epsilon", "Xavi Chi")])
    assert again == (0, 0)
    stats = await graph.stats()
    assert (stats.artists, stats.influences, stats.curated_artists, stats.curated_influences) == (11, 9, 9, 6)


async def test_existing_artists_are_left_as_they_are(graph):
    assert await graph.add(
        [ArtistRecord.named("Anna Alpha", birth_year=1), ArtistRecord.named("Bee")], []
    ) == (
        0,
        0,
    )
    assert (await graph.get_artists(["Anna Alpha"])).found[0].birth_year == 1800


async def test_a_bad_addition_adds_nothing(graph):
    with pytest.raises(InvalidGraphInput, match="itself"):
        await graph.add(
            [ArtistRecord.named("Nora New")],
            [NewInfluence("Anna Alpha", "Zoe Omega"), NewInfluence("Bee", "Bert Beta")],
        )
    with pytest.raises(InvalidGraphInput, match="relation"):
        await graph.add([], [NewInfluence("Anna Alpha", "Zoe Omega", relation="admired")])
    stats = await graph.stats()
    assert (stats.artists, stats.influences) == (9, 6)
    assert (await graph.get_artists(["Nora New"])).missing == ["Nora New"]


async def test_additions_survive_a_restart(open_graph):
    first = await open_graph()
    await first.add(
        [ArtistRecord.named("Nora New", birth_year=1950)], [NewInfluence("Zoe Omega", "Nora New")]
    )
    second = await open_graph()
    assert await second.stats() == await first.stats()
    assert await hops(second, "Zoe Omega", ["Nora New"]) == [1]
    assert (await second.get_artists(["nora new"])).found[0].birth_year == 1950
    assert await second.add([], [NewInfluence("Zoe Omega", "Nora New")]) == (0, 0)


# ---- listing and neighbours -------------------------------------------------------------------------------

SORTED_KEYS = sorted([*CHAIN, "xavi chi", "yuki psi", "zoe omega", "georgia okeeffe"])


async def test_listing_pages_through_every_artist_in_key_order(graph):
    seen, cursor, pages = [], "", 0
    while True:
        page = await graph.list_artists("", 4, cursor)
        seen += [artist.key for artist in page.artists]
        pages += 1
        if not page.next_cursor:
            break
        assert page.next_cursor == page.artists[-1].key
        cursor = page.next_cursor
    assert seen == SORTED_KEYS and pages == 3
    exact = await graph.list_artists("", len(SORTED_KEYS), "")
    assert len(exact.artists) == len(SORTED_KEYS) and exact.next_cursor == ""
    after = await graph.list_artists("", 2, "dora delta")
    assert [a.key for a in after.artists] == ["emil epsilon", "georgia okeeffe"]
    assert (await graph.list_artists("", 5, "zzz")).artists == []


async def test_a_prefix_matches_the_start_of_a_word_of_the_key_or_an_alias(graph):
    async def keys(prefix: str, limit: int = 100) -> list[str]:
        return [artist.key for artist in (await graph.list_artists(prefix, limit, "")).artists]

    assert await keys("GAM") == ["cleo gamma"]
    assert await keys("bee") == ["bert beta"]  # alias
    assert await keys("O'Kee") == ["georgia okeeffe"]
    assert await keys("e") == ["emil epsilon"]
    assert await keys("amma") == []  # inside a word, not at its start
    assert await keys("!!!") == []
    page = await graph.list_artists("g", 1, "")
    assert [a.key for a in page.artists] == ["cleo gamma"] and page.next_cursor == "cleo gamma"
    last = await graph.list_artists("g", 1, page.next_cursor)
    assert [a.key for a in last.artists] == ["georgia okeeffe"] and last.next_cursor == ""
    assert (await graph.list_artists("Anna", 10, "")).artists[0].birth_year == 1800


async def test_listing_includes_added_artists_and_rejects_bad_limits(graph):
    await graph.add([ArtistRecord.named("Aaron Aardvark")], [])
    first = await graph.list_artists("", 1, "")
    assert [a.key for a in first.artists] == ["aaron aardvark"]
    for limit in (0, -1, 1001):
        with pytest.raises(InvalidGraphInput, match="limit"):
            await graph.list_artists("", limit, "")


async def test_neighbours_split_influencers_from_influenced_with_relations_and_sources(graph):
    bert = await graph.neighbours("Bee")
    assert bert is not None and bert.artist.key == "bert beta" and bert.artist.aliases == ("Bee",)
    assert [(e.artist.key, e.relation, e.source) for e in bert.influencers] == [
        ("anna alpha", "influenced", "ref anna alpha -> bert beta")
    ]
    assert [(e.artist.key, e.relation, e.source) for e in bert.influenced] == [
        ("cleo gamma", "teacher", "ref bert beta -> cleo gamma")
    ]
    xavi = await graph.neighbours("xavi chi")
    assert [e.artist.key for e in xavi.influencers] == ["georgia okeeffe"]
    assert [e.artist.key for e in xavi.influenced] == ["yuki psi"]
    zoe = await graph.neighbours("Zoe Omega")
    assert zoe is not None and zoe.influencers == [] and zoe.influenced == []
    assert await graph.neighbours("Nobody Known") is None
    assert await graph.neighbours("") is None


async def test_neighbours_show_added_edges_and_mutual_influence_in_both_lists(graph):
    await graph.add(
        [],
        [NewInfluence("Zoe Omega", "Anna Alpha", source="s1"), NewInfluence("Anna Alpha", "Zoe Omega")],
    )
    anna = await graph.neighbours("Anna Alpha")
    assert [(e.artist.key, e.source) for e in anna.influencers] == [("zoe omega", "s1")]
    assert [e.artist.key for e in anna.influenced] == ["bert beta", "zoe omega"]
