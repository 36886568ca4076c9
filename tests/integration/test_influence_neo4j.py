"""The Neo4j influence backend against real Bolt servers: FalkorDB (always; loopback-only, see
artsearch_tools/influence/falkordb_server.py) and Neo4j 5 in a container where Docker answers (the Cypher only
Neo4j runs: the uniqueness constraint and the shortestPath distances query).

The contract shared with the embedded graph is in tests/services/test_influence_contract.py; this module
covers what only a database backend has: the stored model, seeding, snapshot refresh, batching under
FalkorDB's request limit, the importers writing to the database, and the service on top.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import random
import time
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from falkordb_fixture import BoltServer, clear_graph, falkordb, neo4j_server  # noqa: F401 - fixtures

from artsearch.artists import ArtistIndex, ArtistRecord
from artsearch.config import ConfigError, Env
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import influence_pb2, influence_pb2_grpc
from artsearch_tools.influence import importers
from artsearch_tools.influence.falkordb_server import FalkorDBServer
from services.influence.backend_factory import open_influence_graph
from services.influence.bolt_store import BoltGraphStore, Neo4jSettings
from services.influence.config import InfluenceConfig
from services.influence.curated import DEFAULT_DATA_DIR, load_curated
from services.influence.cypher import RequestTooLarge
from services.influence.graph import GraphUnavailable, InfluenceGraph, NewInfluence
from services.influence.memory_graph import InMemoryInfluenceGraph
from services.influence.neo4j_graph import Neo4jInfluenceGraph
from services.influence.server import InfluenceServicer, registration

REPO_ROOT = Path(__file__).resolve().parents[2]
PAINTERPALETTE_CSV = REPO_ROOT.parent / "shared" / "data" / "painterpalette" / "PainterPalette.csv"


@pytest_asyncio.fixture(loop_scope="session")
async def server(falkordb: BoltServer) -> BoltServer:  # noqa: F811
    """FalkorDB with an empty graph."""
    store = falkordb.store()
    await clear_graph(store)
    await store.close()
    return falkordb


async def open_graph(server: BoltServer, **overrides: object) -> Neo4jInfluenceGraph:
    settings = dataclasses.replace(server.settings, **overrides)  # type: ignore[arg-type]
    graph = await open_influence_graph(InfluenceConfig(neo4j=settings))
    assert isinstance(graph, Neo4jInfluenceGraph)
    return graph


# ---- the stored model, seeding, the factory ----------------------------------------------------------------


async def test_the_factory_seeds_the_curated_graph_once_and_serves_it(server):
    first = await open_graph(server)
    second = await open_graph(server)  # seeding again changes nothing
    embedded = await open_influence_graph(InfluenceConfig())
    try:
        stats, expected = await second.stats(), await embedded.stats()
        assert stats.backend == "neo4j" and expected.backend == "memory"
        assert (stats.artists, stats.influences, stats.curated_artists, stats.curated_influences) == (
            expected.artists,
            expected.influences,
            expected.curated_artists,
            expected.curated_influences,
        )
        assert await second.store.counts() == (expected.artists, expected.influences)
        keys = [artist.key for artist in load_curated(DEFAULT_DATA_DIR).artists]
        rng = random.Random(3)
        for source in rng.sample(keys, 15):
            candidates = rng.sample(keys, 40)
            assert await first.distances(source, candidates, 10) == await embedded.distances(
                source, candidates, 10
            )
        rows = await first.store.run(
            "MATCH (a:Artist {key: $key})-[r]->(b:Artist) RETURN type(r) AS type, b.key AS pupil, "
            "r.source AS source, r.curated AS curated, a.name AS name, a.aliases AS aliases",
            {"key": "cimabue"},
        )
        assert rows == [
            {
                "type": "TAUGHT",
                "pupil": "giotto di bondone",
                "source": "Vasari, Lives of the Artists (1568): Giotto",
                "curated": True,
                "name": "Cimabue",
                "aliases": ["Cenni di Pepo"],
            }
        ]
        indexes = await first.store.run("CALL db.indexes() YIELD label, properties RETURN label, properties")
        assert {"label": "Artist", "properties": ["key"]} in indexes
    finally:
        for graph in (first, second, embedded):
            await graph.close()


async def test_the_service_answers_from_the_neo4j_backend(server):
    graph = await open_graph(server)
    grpc_server = GrpcServiceServer([registration(InfluenceServicer(graph, default_max_hops=10))])
    port = await grpc_server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = influence_pb2_grpc.InfluenceServiceStub(channel)
            reply = await stub.Distances(
                influence_pb2.DistancesRequest(
                    source_artist="Van Gogh", candidate_artists=["Hokusai", "Claude Monet", "Unknown Painter"]
                ),
                timeout=5,
            )
            assert [(d.key, d.hops) for d in reply.distances] == [
                ("katsushika hokusai", 1),
                ("claude monet", 2),
                ("", -1),
            ]
            added = await stub.AddArtists(
                influence_pb2.AddArtistsRequest(
                    influences=[influence_pb2.NewInfluence(influencer="Hokusai", influenced="Nami O'Hara")]
                ),
                timeout=5,
            )
            assert (added.artists_added, added.influences_added) == (1, 1)
        stored = await graph.store.run("MATCH (a:Artist {key: 'nami ohara'}) RETURN a.name AS name")
        assert stored == [{"name": "Nami O'Hara"}]
    finally:
        await grpc_server.stop(0)
        await graph.close()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"uri": "bolt://127.0.0.1:9"}, "cannot open the influence graph in Neo4j at bolt://127.0.0.1:9"),
        ({"dialect": "neo4j"}, "set NEO4J_DIALECT=falkordb"),
    ],
)
async def test_a_graph_that_cannot_be_opened_is_a_config_error(server, overrides, message):
    with pytest.raises(ConfigError, match=message):
        await open_graph(server, **overrides)


def test_neo4j_settings_from_the_environment():
    env = {"NEO4J_URI": "bolt://db:7687", "NEO4J_USER": "neo4j", "NEO4J_PASSWORD": "s3cret"}
    config = InfluenceConfig.from_env(Env({**env, "NEO4J_DIALECT": "falkordb", "NEO4J_REFRESH_S": "2"}))
    assert config.neo4j is not None and config.neo4j_uri == "bolt://db:7687"
    assert (config.neo4j.user, config.neo4j.password, config.neo4j.database) == ("neo4j", "s3cret", None)
    assert (config.neo4j.dialect, config.neo4j.refresh_seconds) == ("falkordb", 2.0)
    assert "s3cret" not in repr(config) and "s3cret" not in config.backend
    assert InfluenceConfig.from_env(Env({})).neo4j is None
    with pytest.raises(ConfigError, match="both NEO4J_USER and NEO4J_PASSWORD"):
        InfluenceConfig.from_env(Env({"NEO4J_URI": "bolt://db:7687", "NEO4J_USER": "neo4j"}))
    with pytest.raises(ConfigError, match="NEO4J_DIALECT"):
        InfluenceConfig.from_env(Env({"NEO4J_URI": "bolt://db:7687", "NEO4J_DIALECT": "gremlin"}))


# ---- the snapshot: own writes at once, other writers by refresh, served while the database is down --------


async def test_other_writers_show_after_a_refresh(server):
    reader, writer = await open_graph(server), await open_graph(server)
    try:
        assert await writer.add([], [NewInfluence("Hokusai", "Nami Other")]) == (1, 1)
        assert await writer.distances("Hokusai", ["Nami Other"], 3) != await reader.distances(
            "Hokusai", ["Nami Other"], 3
        )
        assert await reader.refresh() is True
        assert [d.hops for d in (await reader.distances("Van Gogh", ["Nami Other"], 3)).distances] == [2]
        assert await reader.refresh() is False  # nothing changed since
        assert await writer.refresh() is False  # its own write is already in its snapshot
    finally:
        await reader.close()
        await writer.close()


async def test_the_periodic_refresh_picks_up_other_writers(server):
    reader = await open_graph(server, refresh_seconds=0.1)
    writer = await open_graph(server)
    try:
        await writer.add([ArtistRecord.named("Periodic Painter")], [])
        for _ in range(50):
            if not (await reader.get_artists(["Periodic Painter"])).missing:
                break
            await asyncio.sleep(0.1)
        assert (await reader.get_artists(["Periodic Painter"])).found[0].key == "periodic painter"
    finally:
        await reader.close()
        await writer.close()


async def test_queries_are_answered_while_the_database_is_down():
    with FalkorDBServer() as own:
        graph = await open_influence_graph(
            InfluenceConfig(neo4j=Neo4jSettings(own.bolt_uri, dialect="falkordb", refresh_seconds=0.05))
        )
        own.stop()
        try:
            await asyncio.sleep(0.2)  # failed refreshes are logged and the snapshot kept
            result = await graph.distances("Van Gogh", ["Hokusai", "Claude Monet"], 10)
            assert [d.hops for d in result.distances] == [1, 2]
            # UNAVAILABLE (retry later), not INTERNAL (a 502 at the gateway, seen in the fault run)
            with pytest.raises(GraphUnavailable, match=r"(?i)out of reach.*(connect|defunct|closed)"):
                await graph.add([ArtistRecord.named("Unwritten Painter")], [])
            assert (await graph.get_artists(["Unwritten Painter"])).missing == ["Unwritten Painter"]
        finally:
            await graph.close()


async def test_a_hung_database_costs_a_write_its_timeout_and_never_holds_the_write_lock():
    """A database that stops answering (frozen, partitioned) used to hang a write, and a reload holding the
    write lock, for ever: every write after it waited too. Writes now fail UNAVAILABLE after
    NEO4J_QUERY_TIMEOUT_S, a reload after NEO4J_REFRESH_TIMEOUT_S, queries keep being answered from the
    snapshot, and the graph takes writes again once the database answers."""
    with FalkorDBServer() as own:
        settings = Neo4jSettings(
            own.bolt_uri, dialect="falkordb", refresh_seconds=0, query_timeout=0.5, refresh_timeout=1.5
        )
        graph = await open_influence_graph(InfluenceConfig(neo4j=settings))
        try:
            with own.frozen():
                started = time.monotonic()
                with pytest.raises(GraphUnavailable, match=r"did not answer within 0\.5 s"):
                    await asyncio.wait_for(graph.add([ArtistRecord.named("Frozen Painter")], []), 10)
                assert time.monotonic() - started < 3
                reload = asyncio.create_task(asyncio.wait_for(graph.refresh(force=True), 10))
                await asyncio.sleep(0.1)  # the reload holds the write lock, waiting on the database
                started = time.monotonic()
                with pytest.raises(GraphUnavailable, match="busy with another write or a reload"):
                    await asyncio.wait_for(graph.add([ArtistRecord.named("Queued Painter")], []), 10)
                assert time.monotonic() - started < 3
                with pytest.raises(GraphUnavailable):
                    await reload
                result = await graph.distances("Van Gogh", ["Hokusai"], 10)
                assert [d.hops for d in result.distances] == [1]
            # Once the database answers again, writes are taken again: a retry within a bound, since the
            # database first works off what the frozen relay buffered (the timed-out write, the reload): on
            # a loaded machine the first write after the thaw still took longer than 0.5 s once (full run).
            created = await _write_once_answering(graph, ArtistRecord.named("Thawed Painter"), within_s=10)
            assert created in ((1, 0), (0, 0))  # (0, 0): an attempt that timed out had landed after all
            assert (await graph.get_artists(["Thawed Painter"])).missing == []
        finally:
            await graph.close()


async def _write_once_answering(
    graph: InfluenceGraph, artist: ArtistRecord, within_s: float
) -> tuple[int, int]:
    """`graph.add([artist])`, retried while the database is still unavailable, at most `within_s` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await asyncio.wait_for(graph.add([artist], []), within_s)
        except GraphUnavailable:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def _add_once_answering(
    stub: influence_pb2_grpc.InfluenceServiceStub, request: influence_pb2.AddArtistsRequest, within_s: float
) -> influence_pb2.AddArtistsResponse:
    deadline = time.monotonic() + within_s
    while True:
        try:
            return await stub.AddArtists(request, timeout=within_s)
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_the_service_answers_unavailable_while_the_database_is_hung():
    with FalkorDBServer() as own:
        settings = Neo4jSettings(own.bolt_uri, dialect="falkordb", refresh_seconds=0, query_timeout=0.5)
        graph = await open_influence_graph(InfluenceConfig(neo4j=settings))
        grpc_server = GrpcServiceServer([registration(InfluenceServicer(graph, default_max_hops=10))])
        port = await grpc_server.start()
        try:
            async with open_channel(f"127.0.0.1:{port}") as channel:
                stub = influence_pb2_grpc.InfluenceServiceStub(channel)
                request = influence_pb2.AddArtistsRequest(
                    influences=[influence_pb2.NewInfluence(influencer="Hokusai", influenced="Hung Painter")]
                )
                with own.frozen():
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.AddArtists(request, timeout=10)
                    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
                    assert "did not answer within 0.5 s" in (refused.value.details() or "")
                # Taken again once the database answers (retried while it works off what the frozen relay
                # buffered, as above); 0 added when the refused attempt landed after the thaw after all.
                added = await _add_once_answering(stub, request, within_s=10)
                assert added.influences_added in (0, 1)
                result = await graph.distances("Hokusai", ["Hung Painter"], 10)
                assert [d.hops for d in result.distances] == [1]
        finally:
            await grpc_server.stop(0)
            await graph.close()


def test_timeouts_from_the_environment():
    timeouts = {"NEO4J_QUERY_TIMEOUT_S": "2.5", "NEO4J_REFRESH_TIMEOUT_S": "90"}
    settings = InfluenceConfig.from_env(Env({"NEO4J_URI": "bolt://db:7687", **timeouts})).neo4j
    assert settings is not None and (settings.query_timeout, settings.refresh_timeout) == (2.5, 90.0)
    defaults = InfluenceConfig.from_env(Env({"NEO4J_URI": "bolt://db:7687"})).neo4j
    assert defaults is not None and (defaults.query_timeout, defaults.refresh_timeout) == (10.0, 60.0)
    with pytest.raises(ConfigError, match="NEO4J_QUERY_TIMEOUT_S"):
        InfluenceConfig.from_env(Env({"NEO4J_URI": "bolt://db:7687", "NEO4J_QUERY_TIMEOUT_S": "0"}))


# ---- FalkorDB's request limit and its unescaped parameters ------------------------------------------------


async def test_large_writes_are_batched_under_the_request_limit(server):
    graph = await open_graph(server)
    try:
        names = [f"Painter {i:04d} " + "Longname-Östberg O'Brien " * 6 for i in range(300)]
        added = await graph.add(
            [ArtistRecord.named(name, movement="Ukiyo-e \\ 'Edo'") for name in names],
            [NewInfluence("Hokusai", name, source="s" * 300) for name in names],
        )
        assert added == (300, 300)
        assert await graph.store.run("RETURN 1 AS alive") == [{"alive": 1}]
        reloaded = await open_graph(server)
        try:
            assert await reloaded.stats() == await graph.stats()
            painter = (await reloaded.get_artists([names[7]])).found[0]
            assert (painter.name, painter.movement) == (names[7].strip(), "Ukiyo-e \\ 'Edo'")
        finally:
            await reloaded.close()
        counts = await graph.store.counts()
        with pytest.raises(RequestTooLarge):
            await graph.add([], [NewInfluence("Hokusai", "Nobody Yet", source="x" * 5000)])
        assert await graph.store.run("RETURN 1 AS alive") == [{"alive": 1}]
        assert await graph.store.counts() == counts  # not even the new endpoint was written
        assert (await graph.get_artists(["Nobody Yet"])).missing == ["Nobody Yet"]
    finally:
        await graph.close()


async def test_the_per_request_distances_query_agrees_with_the_snapshot(server):
    graph = await open_graph(server)
    try:
        keys = [artist.key for artist in load_curated(DEFAULT_DATA_DIR).artists]
        rng = random.Random(5)
        for max_hops in (1, 2, 3):
            for source in rng.sample(keys, 5):
                targets = [*rng.sample(keys, 30), source]
                expected = await graph.distances(source, targets, max_hops)
                found = await graph.store.distances_by_query(source, targets, max_hops)
                assert found == {d.key: d.hops for d in expected.distances if d.hops >= 0}
    finally:
        await graph.close()


# ---- importers into the database ---------------------------------------------------------------------------


def write_dbpedia_sample(path: Path) -> Path:
    rows = [
        ("Vincent van Gogh", "['Jean-François Millet', 'Hokusai', 'Adolphe Monticelli']"),
        ("Adolphe Monticelli", "['Eugène Delacroix']"),
        ("Jane O'Doe", "['Adolphe Monticelli', 'Monticelli, Adolphe', 'Vincent van Gogh']"),
        ("Broken Row", "['unterminated"),
    ]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Artist", "Influence"])
        writer.writerows(rows)
    return path


async def run_import_command(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    # The command runs its own event loop, as from a shell: give it a thread.
    code = await asyncio.to_thread(importers.main, ["import-influences", *argv])
    output = capsys.readouterr()
    assert code == 0, output.err
    return json.loads(output.out)


async def test_the_import_command_writes_dbpedia_into_the_database(server, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NEO4J_DIALECT", "falkordb")
    monkeypatch.delenv("NEO4J_USER", raising=False)
    monkeypatch.delenv("NEO4J_PASSWORD", raising=False)
    sample = write_dbpedia_sample(tmp_path / "dbpedia.csv")
    argv = ["dbpedia", str(sample), "--neo4j-uri", server.settings.uri]
    first = await run_import_command(argv, capsys)
    # Only Jane is new; of the six edges, three are in the curated table already.
    assert (first["rows"], first["artists"], first["influences"]) == (4, 6, 6)
    assert (first["artists_added"], first["influences_added"]) == (1, 3)
    assert first["dropped"] == {"unreadable row": 1, "repeated edge": 1}
    again = await run_import_command(argv, capsys)
    assert (again["artists_added"], again["influences_added"]) == (0, 0)
    graph = await open_graph(server)
    try:
        monticelli = await graph.path("Adolphe Monticelli", "Delacroix", 1)
        assert monticelli is not None and monticelli.edges[0].source == importers.DBPEDIA_SOURCE
        assert [
            d.hops for d in (await graph.distances("Jane O'Doe", ["Millet", "Delacroix"], 5)).distances
        ] == [
            2,
            2,
        ]
        typed = await graph.store.run(
            "MATCH (:Artist {key: 'eugene delacroix'})-[r]->(:Artist {key: 'adolphe monticelli'}) "
            "RETURN type(r) AS type, r.curated AS curated"
        )
        assert typed == [{"type": "INFLUENCED", "curated": None}]
    finally:
        await graph.close()


@pytest.mark.slow
async def test_painterpalette_loads_into_the_database_like_into_the_embedded_graph(server):
    if not PAINTERPALETTE_CSV.is_file():
        pytest.skip(f"{PAINTERPALETTE_CSV} is absent (PainterPalette lives in ../shared/data)")
    index = ArtistIndex.from_records(load_curated(DEFAULT_DATA_DIR).artists)
    prepared = importers.prepare_import(importers.read_painterpalette_csv(PAINTERPALETTE_CSV), index, hubs=11)
    graph = await open_graph(server)
    embedded = InMemoryInfluenceGraph.load(DEFAULT_DATA_DIR)
    try:
        assert await importers.import_into(graph, prepared) == await importers.import_into(embedded, prepared)
        await graph.refresh(force=True)
        stats, expected = await graph.stats(), await embedded.stats()
        assert (stats.artists, stats.influences) == (expected.artists, expected.influences) > (10_000, 1000)
        assert await graph.store.counts() == (stats.artists, stats.influences)
        taught = await graph.store.run("MATCH ()-[r:TAUGHT]->() RETURN count(r) AS count")
        assert taught[0]["count"] > 100
        connected = sorted(
            {key for edge in prepared.influences for key in (edge.influencer, edge.influenced)}
        )
        rng = random.Random(11)
        for _ in range(20):
            source, candidates = rng.choice(connected), rng.sample(connected, 100)
            assert await graph.distances(source, candidates, 10) == await embedded.distances(
                source, candidates, 10
            )
    finally:
        await graph.close()


# ---- Neo4j 5 only (a container; skipped without Docker) ----------------------------------------------------


async def test_neo4j_constraint_and_shortest_path_query(neo4j_server):  # noqa: F811
    store = neo4j_server.store()
    await clear_graph(store)
    graph = await Neo4jInfluenceGraph.open(store, load_curated(DEFAULT_DATA_DIR), refresh_seconds=0)
    try:
        constraints = await store.run("SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties")
        artist_key = next(row for row in constraints if row["name"] == "artist_key")
        # "UNIQUENESS" in Neo4j 5; later versions say "NODE_PROPERTY_UNIQUENESS".
        assert "UNIQUENESS" in artist_key["type"]
        assert (artist_key["labelsOrTypes"], artist_key["properties"]) == (["Artist"], ["key"])
        with pytest.raises(Exception, match="already exists"):
            await store.run("CREATE (:Artist {key: 'cimabue'})")
        keys = [artist.key for artist in load_curated(DEFAULT_DATA_DIR).artists]
        rng = random.Random(2)
        for source in rng.sample(keys, 5):
            targets = rng.sample(keys, 30)
            expected = await graph.distances(source, targets, 6)
            assert await store.distances_by_query(source, targets, 6) == {
                d.key: d.hops for d in expected.distances if d.hops >= 0
            }
    finally:
        await graph.close()


def test_bolt_store_settings_refuse_half_credentials():
    with pytest.raises(ValueError, match="both a user and a password"):
        Neo4jSettings("bolt://db:7687", user="neo4j")
    with pytest.raises(ValueError, match="dialect"):
        BoltGraphStore.connect(Neo4jSettings("bolt://db:7687", dialect="sparql"))
