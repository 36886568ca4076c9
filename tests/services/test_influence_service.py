"""The influence service over a real gRPC channel, serving the curated graph in-process."""

from __future__ import annotations

import itertools

import grpc
import pytest
import pytest_asyncio

from artsearch.artists import CURATED_ARTISTS_CSV
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import influence_pb2, influence_pb2_grpc
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import MAX_CANDIDATES, SERVICE_NAME, InfluenceServicer, registration


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def address(tmp_path_factory):
    config = InfluenceConfig(state_dir=tmp_path_factory.mktemp("influence-state"), default_max_hops=10)
    graph = await open_influence_graph(config)
    server = GrpcServiceServer([registration(InfluenceServicer(graph, config.default_max_hops))])
    port = await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)
    await graph.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(address):
    async with open_channel(address) as channel:
        yield influence_pb2_grpc.InfluenceServiceStub(channel)


async def _distances(stub, source, candidates, max_hops=0):
    request = influence_pb2.DistancesRequest(
        source_artist=source, candidate_artists=candidates, max_hops=max_hops
    )
    return await stub.Distances(request, timeout=5)


async def test_health_reports_serving(address):
    async with open_channel(address) as channel:
        assert await is_serving(channel)
        assert await is_serving(channel, SERVICE_NAME)


async def test_distances_with_paths_over_grpc(stub):
    request = influence_pb2.DistancesRequest(
        source_artist="Van Gogh",
        candidate_artists=["Hokusai", "Claude Monet", "Unknown Painter"],
        with_paths=True,
    )
    reply = await stub.Distances(request, timeout=5)
    paths = [list(d.path) for d in reply.distances]
    assert paths[0] == ["Vincent van Gogh", "Katsushika Hokusai"]
    assert len(paths[1]) == 3 and paths[1][0] == "Vincent van Gogh" and paths[1][-1] == "Claude Monet"
    assert paths[2] == []


async def test_distances_from_van_gogh(stub):
    reply = await _distances(stub, "Van Gogh", ["Hokusai", "Paul Gauguin", "Claude Monet", "Unknown Painter"])
    assert reply.source_known and not reply.source_inferred
    assert (reply.source.key, reply.source.name) == ("vincent van gogh", "Vincent van Gogh")
    assert (reply.source.birth_year, reply.source.death_year) == (1853, 1890)
    assert [(d.artist, d.key, d.known, d.hops) for d in reply.distances] == [
        ("Hokusai", "katsushika hokusai", True, 1),
        ("Paul Gauguin", "paul gauguin", True, 1),
        ("Claude Monet", "claude monet", True, 2),
        ("Unknown Painter", "", False, -1),
    ]


async def test_max_hops_limits_and_zero_means_the_default(stub):
    near = await _distances(stub, "Vincent van Gogh", ["Claude Monet", "Paul Gauguin"], max_hops=1)
    assert [d.hops for d in near.distances] == [-1, 1]
    default = await _distances(stub, "Vincent van Gogh", ["Claude Monet"], max_hops=0)
    assert [d.hops for d in default.distances] == [2]


async def test_a_blank_source_is_inferred_from_the_candidates(stub):
    reply = await _distances(stub, "", ["Nobody In Particular", "Hokusai", "Vincent van Gogh", "Monet"])
    assert reply.source_known and reply.source_inferred
    assert reply.source.key == "katsushika hokusai"
    assert [d.hops for d in reply.distances] == [-1, 0, 1, 1]


async def test_an_unknown_source_reaches_nobody(stub):
    reply = await _distances(stub, "Nobody In Particular", ["Hokusai", "Also Nobody"])
    assert not reply.source_known and not reply.source_inferred and not reply.HasField("source")
    assert [(d.key, d.known, d.hops) for d in reply.distances] == [
        ("katsushika hokusai", True, -1),
        ("", False, -1),
    ]


async def test_path_between_two_artists(stub):
    reply = await stub.Path(
        influence_pb2.PathRequest(from_artist="Verrocchio", to_artist="Raphael"), timeout=5
    )
    assert reply.found
    keys = [artist.key for artist in reply.artists]
    assert keys[0] == "andrea del verrocchio" and keys[-1] == "raphael" and len(keys) == 3
    assert [(e.from_key, e.to_key) for e in reply.edges] == list(itertools.pairwise(keys))
    assert all(edge.source for edge in reply.edges)


async def test_path_against_the_direction_of_influence(stub):
    reply = await stub.Path(influence_pb2.PathRequest(from_artist="Van Gogh", to_artist="Millet"), timeout=5)
    assert reply.found and [a.key for a in reply.artists] == ["vincent van gogh", "jean francois millet"]
    assert [(e.from_key, e.to_key) for e in reply.edges] == [("jean francois millet", "vincent van gogh")]


async def test_a_long_path_joins_demo_artists(stub):
    reply = await stub.Path(
        influence_pb2.PathRequest(from_artist="Bosschaert", to_artist="Hokusai"), timeout=5
    )
    assert reply.found and len(reply.edges) == len(reply.artists) - 1 >= 2
    for edge, (first, second) in zip(reply.edges, itertools.pairwise(reply.artists), strict=True):
        assert {edge.from_key, edge.to_key} == {first.key, second.key}


async def test_no_path_when_unknown_or_too_far(stub):
    unknown = await stub.Path(
        influence_pb2.PathRequest(from_artist="Van Gogh", to_artist="Nobody"), timeout=5
    )
    assert not unknown.found and not unknown.artists and not unknown.edges
    too_far = await stub.Path(
        influence_pb2.PathRequest(from_artist="Bosschaert", to_artist="Hokusai", max_hops=1), timeout=5
    )
    assert not too_far.found


async def test_get_artists(stub):
    reply = await stub.GetArtists(
        influence_pb2.GetArtistsRequest(names=["Van Gogh", "vincent van gogh", "Nobody", "Dürer"]), timeout=5
    )
    assert [a.key for a in reply.artists] == ["vincent van gogh", "albrecht durer"]
    assert reply.artists[1].movement == "Northern Renaissance"
    assert list(reply.missing) == ["Nobody"]


async def test_add_artists_and_influences(stub):
    request = influence_pb2.AddArtistsRequest(
        artists=[
            influence_pb2.Artist(name="Service Test Painter", birth_year=1901),
            influence_pb2.Artist(name="Monet"),
        ],
        influences=[
            influence_pb2.NewInfluence(influencer="Hokusai", influenced="Service Test Painter", source="x")
        ],
    )
    reply = await stub.AddArtists(request, timeout=5)
    assert (reply.artists_added, reply.influences_added) == (1, 1)
    assert (await stub.AddArtists(request, timeout=5)).artists_added == 0
    distances = await _distances(stub, "service test painter", ["Hokusai", "Van Gogh"])
    assert [d.hops for d in distances.distances] == [1, 2]
    assert distances.source.birth_year == 1901


async def test_path_edges_carry_their_relation(stub):
    reply = await stub.Path(influence_pb2.PathRequest(from_artist="Cimabue", to_artist="Giotto"), timeout=5)
    assert [(e.from_key, e.to_key, e.relation) for e in reply.edges] == [
        ("cimabue", "giotto di bondone", "teacher")
    ]


async def test_list_artists_pages_by_prefix(stub):
    first = await stub.ListArtists(influence_pb2.ListArtistsRequest(prefix="Van", limit=2), timeout=5)
    assert len(first.artists) == 2 and first.next_cursor == first.artists[-1].key
    keys = [a.key for a in first.artists]
    cursor = first.next_cursor
    while cursor:
        page = await stub.ListArtists(
            influence_pb2.ListArtistsRequest(prefix="Van", limit=2, cursor=cursor), timeout=5
        )
        keys += [a.key for a in page.artists]
        cursor = page.next_cursor
    assert "vincent van gogh" in keys and keys == sorted(keys) and len(keys) == len(set(keys))
    curated = [line.split(",", 1)[0] for line in CURATED_ARTISTS_CSV.read_text().splitlines()[1:]]
    assert {key for key in curated if " van" in f" {key}"} <= set(keys)  # aliases may add more
    default = await stub.ListArtists(influence_pb2.ListArtistsRequest(), timeout=5)
    assert len(default.artists) == 100 and default.next_cursor == default.artists[-1].key
    gogh = await stub.ListArtists(influence_pb2.ListArtistsRequest(prefix="gogh"), timeout=5)
    assert [(a.key, a.birth_year) for a in gogh.artists] == [("vincent van gogh", 1853)]


async def test_neighbours_of_van_gogh(stub):
    reply = await stub.Neighbours(influence_pb2.NeighboursRequest(artist="Van Gogh"), timeout=5)
    assert reply.artist.key == "vincent van gogh"
    influencers = {n.artist.key: n for n in reply.influencers}
    influenced = {n.artist.key: n for n in reply.influenced}
    assert influencers["anton mauve"].relation == "teacher"
    assert influencers["katsushika hokusai"].source == "Van Gogh Museum: Van Gogh and Japan"
    assert "henri matisse" in influenced and "henri matisse" not in influencers
    assert "paul gauguin" in influenced and "paul gauguin" in influencers  # mutual
    assert list(influencers) == sorted(influencers)


async def test_neighbours_of_an_unknown_artist_is_not_found(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Neighbours(influence_pb2.NeighboursRequest(artist="Nobody In Particular"), timeout=5)
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "Nobody In Particular" in error.value.details()


async def test_added_teacher_edges_keep_their_relation(stub):
    request = influence_pb2.AddArtistsRequest(
        influences=[
            influence_pb2.NewInfluence(
                influencer="Service Teacher", influenced="Service Pupil", relation="teacher", source="t"
            )
        ]
    )
    assert (await stub.AddArtists(request, timeout=5)).influences_added == 1
    reply = await stub.Neighbours(influence_pb2.NeighboursRequest(artist="service pupil"), timeout=5)
    assert [(n.artist.key, n.relation, n.source) for n in reply.influencers] == [
        ("service teacher", "teacher", "t")
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ("Distances", "candidate artists"),
        ("Distances-hops", "max_hops"),
        ("Distances-long-name", "longer than"),
        ("Path-empty", "both"),
        ("Path-hops", "max_hops"),
        ("AddArtists-self", "itself"),
        ("AddArtists-nameless", "needs a name"),
        ("AddArtists-edge", "both"),
        ("AddArtists-relation", "relation"),
        ("ListArtists-limit", "limit"),
        ("ListArtists-negative", "limit"),
        ("ListArtists-long-prefix", "longer than"),
        ("Neighbours-blank", "needs an artist"),
    ],
)
async def test_bad_input_is_invalid_argument_and_the_service_keeps_answering(stub, call, message):
    requests = {
        "Distances": (stub.Distances, influence_pb2.DistancesRequest(
            source_artist="Van Gogh", candidate_artists=["Monet"] * (MAX_CANDIDATES + 1))),
        "Distances-hops": (stub.Distances, influence_pb2.DistancesRequest(
            source_artist="Van Gogh", candidate_artists=["Monet"], max_hops=-1)),
        "Distances-long-name": (stub.Distances, influence_pb2.DistancesRequest(
            source_artist="Van Gogh", candidate_artists=["x" * 501])),
        "Path-empty": (stub.Path, influence_pb2.PathRequest(from_artist="Van Gogh", to_artist="  ")),
        "Path-hops": (stub.Path, influence_pb2.PathRequest(
            from_artist="Van Gogh", to_artist="Monet", max_hops=-2)),
        "AddArtists-self": (stub.AddArtists, influence_pb2.AddArtistsRequest(
            influences=[influence_pb2.NewInfluence(influencer="Van Gogh", influenced="vincent van gogh")])),
        "AddArtists-nameless": (stub.AddArtists, influence_pb2.AddArtistsRequest(
            artists=[influence_pb2.Artist(name=" ")])),
        "AddArtists-edge": (stub.AddArtists, influence_pb2.AddArtistsRequest(
            influences=[influence_pb2.NewInfluence(influencer="Van Gogh")])),
        "AddArtists-relation": (stub.AddArtists, influence_pb2.AddArtistsRequest(
            influences=[influence_pb2.NewInfluence(influencer="Monet", influenced="X Y", relation="liked")])),
        "ListArtists-limit": (stub.ListArtists, influence_pb2.ListArtistsRequest(limit=1001)),
        "ListArtists-negative": (stub.ListArtists, influence_pb2.ListArtistsRequest(limit=-1)),
        "ListArtists-long-prefix": (stub.ListArtists, influence_pb2.ListArtistsRequest(prefix="p" * 501)),
        "Neighbours-blank": (stub.Neighbours, influence_pb2.NeighboursRequest(artist=" ")),
    }  # fmt: skip
    method, request = requests[call]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await method(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in error.value.details()
    after = await _distances(stub, "Van Gogh", ["Hokusai"])
    assert [d.hops for d in after.distances] == [1]
