"""The in-memory influence graph on hand-built graphs, beyond the contract every backend passes
(tests/services/test_influence_contract.py): shortest routes, components, inference, path edge cases,
additions and their persistence, plus the backend factory and configuration."""

from __future__ import annotations

import itertools
import json

import pytest

from artsearch.artists import ArtistRecord
from artsearch.config import ConfigError, Env
from services.influence.additions_log import LOG_FILE, AdditionsLog
from services.influence.backend_factory import open_influence_graph
from services.influence.bolt_store import Neo4jSettings
from services.influence.config import DEFAULT_MAX_HOPS, InfluenceConfig
from services.influence.curated import DEFAULT_DATA_DIR, CuratedData, check_consistency
from services.influence.graph import (
    Influence,
    InfluenceGraph,
    InvalidGraphInput,
    NewInfluence,
)
from services.influence.memory_graph import InMemoryInfluenceGraph

# Chain Anna -> Bert -> Cleo -> Dora -> Emil, a separate pair Xavi -> Yuki, and Zoe alone.
NAMES = [
    "Anna Alpha",
    "Bert Beta",
    "Cleo Gamma",
    "Dora Delta",
    "Emil Epsilon",
    "Xavi Chi",
    "Yuki Psi",
    "Zoe Omega",
]
CHAIN = ["anna alpha", "bert beta", "cleo gamma", "dora delta", "emil epsilon"]


def _curated(*extra_edges: tuple[str, str]) -> CuratedData:
    artists = [
        ArtistRecord.named(name, aliases=("Bee",) if name == "Bert Beta" else (), birth_year=1800 + i)
        for i, name in enumerate(NAMES)
    ]
    pairs = [*itertools.pairwise(CHAIN), ("xavi chi", "yuki psi"), *extra_edges]
    edges = [Influence(a, b, "influenced", f"ref {a} -> {b}") for a, b in pairs]
    data = CuratedData(artists, edges)
    check_consistency(data)
    return data


@pytest.fixture
def graph() -> InMemoryInfluenceGraph:
    return InMemoryInfluenceGraph(_curated())


async def _hops(graph, source, candidates, max_hops=10):
    result = await graph.distances(source, candidates, max_hops)
    return [d.hops for d in result.distances]


async def test_other_components_and_lonely_artists_are_known_but_unreachable(graph):
    result = await graph.distances("Anna Alpha", ["Xavi Chi", "Zoe Omega"], 50)
    assert [(d.known, d.hops) for d in result.distances] == [(True, -1), (True, -1)]
    assert await _hops(graph, "Xavi Chi", ["Yuki Psi", "Anna Alpha"]) == [1, -1]
    assert await _hops(graph, "Zoe Omega", ["Zoe Omega", "Anna Alpha"]) == [0, -1]


async def test_the_shortest_route_wins():
    graph = InMemoryInfluenceGraph(_curated(("emil epsilon", "anna alpha")))
    assert await _hops(graph, "Anna Alpha", NAMES[:5]) == [0, 1, 2, 2, 1]


async def test_path_walks_the_chain_and_reports_true_edge_directions(graph):
    forward = await graph.path("Anna Alpha", "Dora Delta", 10)
    assert forward is not None and forward.hops == 3
    assert [a.key for a in forward.artists] == CHAIN[:4]
    assert [(e.influencer, e.influenced) for e in forward.edges] == list(itertools.pairwise(CHAIN[:4]))
    assert forward.edges[0].source == "ref anna alpha -> bert beta"
    backward = await graph.path("Dora Delta", "Bee", 10)
    assert backward is not None
    assert [a.key for a in backward.artists] == ["dora delta", "cleo gamma", "bert beta"]
    # Walked against the arrows: each edge still says who influenced whom.
    assert [(e.influencer, e.influenced) for e in backward.edges] == [
        ("cleo gamma", "dora delta"),
        ("bert beta", "cleo gamma"),
    ]


async def test_added_artists_are_nodes_without_edges(graph):
    added = await graph.add([ArtistRecord.named("Nora New", birth_year=1950)], [])
    assert added == (1, 0)
    result = await graph.distances("Nora New", ["Nora New", "Anna Alpha"], 10)
    assert [(d.key, d.known, d.hops) for d in result.distances] == [
        ("nora new", True, 0),
        ("anna alpha", True, -1),
    ]
    assert result.source is not None and result.source.birth_year == 1950


async def test_added_influences_connect_artists_and_create_unknown_endpoints(graph):
    added = await graph.add(
        [],
        [NewInfluence("Emil Epsilon", "Xavi Chi", source="a letter"), NewInfluence("Yuki Psi", "Nora New")],
    )
    assert added == (1, 2)
    assert await _hops(graph, "Anna Alpha", ["Xavi Chi", "Yuki Psi", "Nora New"]) == [5, 6, 7]
    path = await graph.path("Emil Epsilon", "Xavi Chi", 1)
    assert path is not None and path.edges[0].source == "a letter"
    again = await graph.add([ArtistRecord.named("Nora New")], [NewInfluence("Emil Epsilon", "Xavi Chi")])
    assert again == (0, 0)
    stats = await graph.stats()
    assert (stats.artists, stats.influences, stats.curated_artists, stats.curated_influences) == (9, 7, 8, 5)


async def test_a_bad_addition_adds_nothing(graph):
    with pytest.raises(InvalidGraphInput, match="itself"):
        await graph.add(
            [ArtistRecord.named("Nora New")],
            [NewInfluence("Anna Alpha", "Zoe Omega"), NewInfluence("Bee", "Bert Beta")],
        )
    with pytest.raises(InvalidGraphInput, match="both"):
        await graph.add([], [NewInfluence("Anna Alpha", " ")])
    with pytest.raises(InvalidGraphInput, match="relation"):
        await graph.add([], [NewInfluence("Anna Alpha", "Zoe Omega", relation="admired")])
    with pytest.raises(InvalidGraphInput, match="letters or digits"):
        await graph.add([ArtistRecord.named("?!")], [])
    stats = await graph.stats()
    assert (stats.artists, stats.influences) == (8, 5)
    assert await _hops(graph, "Anna Alpha", ["Zoe Omega"]) == [-1]


# ---- persistence -----------------------------------------------------------------------------------------


async def test_additions_survive_a_restart(tmp_path):
    first = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    await first.add(
        [ArtistRecord.named("Nora New", birth_year=1950, movement="Op art")],
        [NewInfluence("Emil Epsilon", "Xavi Chi", source="a letter"), NewInfluence("Nora New", "Zoe Omega")],
    )
    second = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    assert await second.stats() == await first.stats()
    assert await _hops(second, "Anna Alpha", ["Xavi Chi", "Zoe Omega", "Nora New"]) == [5, -1, -1]
    nora = (await second.get_artists(["nora new"])).found[0]
    assert (nora.name, nora.birth_year, nora.movement) == ("Nora New", 1950, "Op art")
    assert (await second.path("Emil Epsilon", "Xavi Chi", 1)).edges[0].source == "a letter"
    assert await second.add([ArtistRecord.named("Nora New")], [NewInfluence("Nora New", "Zoe Omega")]) == (
        0,
        0,
    )
    (batch,) = (tmp_path / LOG_FILE).read_text(encoding="utf-8").splitlines()  # one line per batch
    assert [next(iter(entry)) for entry in json.loads(batch)["batch"]] == ["artist", "influence", "influence"]


async def test_without_a_state_dir_additions_are_not_kept(tmp_path):
    first = InMemoryInfluenceGraph(_curated())
    await first.add([ArtistRecord.named("Nora New")], [])
    second = InMemoryInfluenceGraph(_curated())
    assert (await second.get_artists(["Nora New"])).missing == ["Nora New"]
    assert list(tmp_path.iterdir()) == []


async def test_a_torn_last_line_is_dropped_and_the_log_stays_usable(tmp_path):
    graph = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    await graph.add([ArtistRecord.named("Nora New")], [])
    with (tmp_path / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"artist": {"key": "half wri')
    restarted = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    assert (await restarted.stats()).artists == 9
    await restarted.add([ArtistRecord.named("Olga Other")], [])
    again = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    assert (await again.get_artists(["Nora New", "Olga Other"])).missing == []


async def test_a_partial_line_left_by_a_failed_append_is_cut_off_by_the_next_append(tmp_path):
    """A write that failed half-way in a running service, and whose own clean-up failed too, leaves a line
    without its newline: the next batch must not be glued to it (that would be a corrupt line in the
    middle, which stops the next start)."""
    graph = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    await graph.add([ArtistRecord.named("Nora New")], [])
    with (tmp_path / LOG_FILE).open("a", encoding="utf-8") as handle:
        handle.write('{"batch": [{"artist": {"key": "half wri')
    await graph.add([ArtistRecord.named("Olga Other")], [NewInfluence("Nora New", "Olga Other")])
    restarted = InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))
    assert (await restarted.get_artists(["Nora New", "Olga Other"])).missing == []
    assert await _hops(restarted, "Nora New", ["Olga Other"]) == [1]
    assert "half wri" not in (tmp_path / LOG_FILE).read_text(encoding="utf-8")


def test_a_corrupt_entry_in_the_middle_fails_loudly(tmp_path):
    (tmp_path / LOG_FILE).write_text(
        '{"artist": {"key": "x", "name": "X"}}\nnot json\n{}\n', encoding="utf-8"
    )
    with pytest.raises(ValueError, match=r"additions\.jsonl: line 2 \(byte 38\) is not a batch of additions"):
        InMemoryInfluenceGraph(_curated(), AdditionsLog(tmp_path))


# ---- curated-data checks, configuration, factory ---------------------------------------------------


@pytest.mark.parametrize(
    ("edge", "message"),
    [
        (("anna alpha", "nobody"), "unknown"),
        (("anna alpha", "anna alpha"), "self-loop"),
        (("anna alpha", "bert beta"), "twice"),
    ],
)
def test_broken_curated_data_is_refused(edge, message):
    with pytest.raises(ValueError, match=message):
        _curated(edge)


def test_config_defaults_and_environment(tmp_path):
    default = InfluenceConfig.from_env(Env({}))
    assert (default.listen.port, default.data_dir, default.state_dir, default.neo4j_uri) == (
        50053,
        DEFAULT_DATA_DIR,
        None,
        None,
    )
    assert default.default_max_hops == DEFAULT_MAX_HOPS == 10
    config = InfluenceConfig.from_env(
        Env(
            {
                "ARTSEARCH_HOST": "0.0.0.0",
                "ARTSEARCH_PORT": "6000",
                "INFLUENCE_DATA_DIR": str(tmp_path),
                "INFLUENCE_STATE_DIR": str(tmp_path / "state"),
                "INFLUENCE_MAX_HOPS": "4",
            }
        )
    )
    assert (config.listen.address, config.data_dir, config.state_dir, config.default_max_hops) == (
        "0.0.0.0:6000",
        tmp_path,
        tmp_path / "state",
        4,
    )
    with pytest.raises(ConfigError, match="INFLUENCE_MAX_HOPS"):
        InfluenceConfig.from_env(Env({"INFLUENCE_MAX_HOPS": "0"}))


async def test_factory_opens_the_embedded_graph_by_default(tmp_path):
    graph = await open_influence_graph(InfluenceConfig(state_dir=tmp_path))
    assert isinstance(graph, InfluenceGraph)
    stats = await graph.stats()
    assert stats.backend == "memory" and stats.artists >= 120
    await graph.add([ArtistRecord.named("Nora New")], [])
    reopened = await open_influence_graph(InfluenceConfig(state_dir=tmp_path))
    assert (await reopened.get_artists(["Nora New"])).missing == []
    await graph.close()


async def test_factory_refuses_an_unreachable_neo4j_and_a_missing_data_dir(tmp_path):
    unreachable = Neo4jSettings("bolt://127.0.0.1:9", connect_timeout=1)
    with pytest.raises(ConfigError, match="cannot open the influence graph in Neo4j at"):
        await open_influence_graph(InfluenceConfig(neo4j=unreachable))
    with pytest.raises(ConfigError, match=r"artists\.csv"):
        await open_influence_graph(InfluenceConfig(data_dir=tmp_path))
