"""SearchService over a real gRPC channel, against an in-process server on the embedded default engine
(qdrant-edge), and the configuration that picks the engine."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from artsearch.config import DEFAULT_PORTS, ConfigError, Env
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.search.backend_factory import open_artwork_store
from services.search.config import SearchConfig
from services.search.edge_store import EdgeArtworkStore
from services.search.qdrant_store import QdrantArtworkStore, QdrantServerSettings
from services.search.server import SERVICE_NAME, SearchService, search_registration
from services.search.store import ArtworkRecord, IndexedArtwork

DIM = 8
REPO_ROOT = Path(__file__).resolve().parents[2]


def basis(index: int, scale: float = 1.0) -> list[float]:
    vector = [0.0] * DIM
    vector[index] = scale
    return vector


def indexed(artwork_id: str, values: list[float], **fields: object) -> search_pb2.IndexedArtwork:
    return search_pb2.IndexedArtwork(
        artwork=common_pb2.Artwork(id=artwork_id, **fields), embedding=common_pb2.Embedding(values=values)
    )


CATALOGUE = [
    indexed("wave", basis(0), title="The Great Wave", artist="Katsushika Hokusai", style="Ukiyo-e",
            genre="landscape", year=1831, image_uri="wave.png", catalogue="demo", extra={"licence": "PD"}),
    indexed("shower", basis(1), title="Sudden Shower", artist="Utagawa Hiroshige", style="Ukiyo-e",
            genre="landscape", year=1857),
    indexed("irises", basis(2), title="Irises", artist="Vincent van Gogh", style="Post-Impressionism",
            genre="flower painting", year=1889),
    indexed("bridge", basis(3), title="Bridge in the Rain", artist="Vincent van Gogh",
            style="Post-Impressionism", genre="landscape", year=1887),
]  # fmt: skip


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def address(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    store = await EdgeArtworkStore.open(tmp_path_factory.mktemp("search") / "edge")
    server = GrpcServiceServer([search_registration(SearchService(store))])
    port = await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)
    await store.close()


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def stub(address: str) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    async with open_channel(address) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def catalogue(stub: search_pb2_grpc.SearchServiceStub) -> str:
    """The demo catalogue in its own collection; returns the collection's name."""
    reply = await stub.Upsert(search_pb2.UpsertRequest(collection="demo", items=CATALOGUE), timeout=10)
    assert reply.upserted == len(CATALOGUE)
    return "demo"


def hit_ids(reply: search_pb2.SearchResponse) -> list[str]:
    return [hit.artwork.id for hit in reply.hits]


# --- health -----------------------------------------------------------------------------------------


async def test_health_is_serving(address: str) -> None:
    async with open_channel(address) as channel:
        assert await is_serving(channel)
        assert await is_serving(channel, SERVICE_NAME)
    assert SERVICE_NAME == "artsearch.v1.SearchService"


# --- each RPC ---------------------------------------------------------------------------------------


async def test_search_returns_ranked_hits_with_every_field(stub, catalogue: str) -> None:
    query = common_pb2.Embedding(values=[0.9, 0.1, 0, 0, 0, 0, 0, 0])
    reply = await stub.Search(search_pb2.SearchRequest(collection=catalogue, query=query, limit=4), timeout=5)
    assert hit_ids(reply)[:2] == ["wave", "shower"]
    assert reply.hits[0].score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-3)
    assert [hit.score for hit in reply.hits] == sorted((hit.score for hit in reply.hits), reverse=True)
    assert reply.hits[0].artwork == CATALOGUE[0].artwork


def parts_of(*spans: tuple[int, int]) -> list[search_pb2.VectorPart]:
    return [search_pb2.VectorPart(offset=offset, length=length) for offset, length in spans]


async def test_search_scores_each_hit_on_each_part_in_request_order(stub, catalogue: str) -> None:
    # Parts [0, 2) and [2, 8), unit directions (0.6, 0.8) and e3: "wave" is e0, "shower" e1, "bridge" e3.
    query = common_pb2.Embedding(values=[3.0, 4.0, 0, 1.0, 0, 0, 0, 0])
    request = search_pb2.SearchRequest(
        collection=catalogue, query=query, limit=4, parts=parts_of((0, 2), (2, 6))
    )
    reply = await stub.Search(request, timeout=5)
    by_id = {hit.artwork.id: list(hit.part_projections) for hit in reply.hits}
    assert set(by_id) == {"wave", "shower", "bridge", "irises"}
    assert by_id["shower"] == pytest.approx([0.8, 0.0], abs=1e-3)
    assert by_id["wave"] == pytest.approx([0.6, 0.0], abs=1e-3)
    assert by_id["bridge"] == pytest.approx([0.0, 1.0], abs=1e-3)
    assert by_id["irises"] == pytest.approx([0.0, 0.0], abs=1e-3)


async def test_search_without_parts_sends_no_projections(stub, catalogue: str) -> None:
    query = common_pb2.Embedding(values=basis(0))
    reply = await stub.Search(search_pb2.SearchRequest(collection=catalogue, query=query, limit=2), timeout=5)
    assert all(len(hit.part_projections) == 0 for hit in reply.hits)


async def test_part_query_gives_the_direction_a_reweighted_query_zeroed(stub, catalogue: str) -> None:
    # The query has nothing in [0, 2) (a zero aspect weight): no direction there, so 0 ...
    query = common_pb2.Embedding(values=[0, 0, 0, 1.0, 0, 0, 0, 0])
    request = search_pb2.SearchRequest(
        collection=catalogue, query=query, limit=4, parts=parts_of((0, 2), (2, 6))
    )
    zeroed = {
        hit.artwork.id: list(hit.part_projections) for hit in (await stub.Search(request, timeout=5)).hits
    }
    assert zeroed["wave"] == pytest.approx([0.0, 0.0], abs=1e-3)
    # ... unless the unweighted vector travels as part_query: same ranking, the part's direction is back.
    request.part_query.values[:] = [1.0, 0, 0, 2.0, 0, 0, 0, 0]
    reply = await stub.Search(request, timeout=5)
    assert hit_ids(reply)[0] == "bridge"
    by_id = {hit.artwork.id: list(hit.part_projections) for hit in reply.hits}
    assert by_id["wave"] == pytest.approx([1.0, 0.0], abs=1e-3)
    assert by_id["bridge"] == pytest.approx([0.0, 1.0], abs=1e-3)


@pytest.mark.parametrize(
    ("parts", "part_query", "message"),
    [
        ([(6, 4)], None, r"parts\[0\] = \[6, 10\) is not inside a vector of 8 values"),
        ([(-1, 2)], None, "not inside"),
        ([(0, 0)], None, "not inside"),
        ([(0, 2)], [1.0] * 4, "part query must be 8 finite values"),
        ([(0, 2)], [float("nan")] * DIM, "part query must be 8 finite values"),
    ],
)
async def test_search_refuses_parts_that_do_not_fit_the_query(
    stub, catalogue: str, parts, part_query, message
) -> None:
    request = search_pb2.SearchRequest(
        collection=catalogue, query=common_pb2.Embedding(values=[1.0] * DIM), limit=2, parts=parts_of(*parts)
    )
    if part_query is not None:
        request.part_query.values[:] = part_query
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Search(request, timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, error.value.details())


async def test_search_with_filter_and_offset(stub, catalogue: str) -> None:
    query = common_pb2.Embedding(values=[1.0] * DIM)
    van_gogh = search_pb2.Filter(artists=["VINCENT VAN GOGH"], year_min=1888)
    reply = await stub.Search(
        search_pb2.SearchRequest(collection=catalogue, query=query, limit=10, filter=van_gogh), timeout=5
    )
    assert hit_ids(reply) == ["irises"]

    landscapes = search_pb2.Filter(genres=["landscape"], exclude_ids=["wave"])
    request = search_pb2.SearchRequest(
        collection=catalogue, query=common_pb2.Embedding(values=[0, 3, 2, 1, 0, 0, 0, 0]), filter=landscapes
    )
    request.limit = 10
    assert hit_ids(await stub.Search(request, timeout=5)) == ["shower", "bridge"]
    request.limit, request.offset = 1, 1
    assert hit_ids(await stub.Search(request, timeout=5)) == ["bridge"]


async def test_count_with_and_without_filter(stub, catalogue: str) -> None:
    assert (await stub.Count(search_pb2.CountRequest(collection=catalogue), timeout=5)).count == len(
        CATALOGUE
    )
    ukiyo_e = search_pb2.Filter(styles=["Ukiyo-e"], year_max=1850)
    reply = await stub.Count(search_pb2.CountRequest(collection=catalogue, filter=ukiyo_e), timeout=5)
    assert reply.count == 1


async def test_get_with_and_without_embeddings(stub, catalogue: str) -> None:
    reply = await stub.Get(
        search_pb2.GetRequest(collection=catalogue, ids=["irises", "nope", "wave"]), timeout=5
    )
    assert [item.artwork.id for item in reply.items] == ["irises", "wave"]
    assert list(reply.missing_ids) == ["nope"]
    assert all(len(item.embedding.values) == 0 for item in reply.items)

    reply = await stub.Get(
        search_pb2.GetRequest(collection=catalogue, ids=["wave"], with_embeddings=True), timeout=5
    )
    assert list(reply.items[0].embedding.values) == pytest.approx(basis(0))


async def test_upsert_replaces_and_delete_removes_in_the_default_collection(stub) -> None:
    first = await stub.Upsert(search_pb2.UpsertRequest(items=[indexed("x", basis(4, 2.0), title="old")]))
    assert first.upserted == 1
    again = await stub.Upsert(
        search_pb2.UpsertRequest(items=[indexed("x", basis(5), title="new")]), timeout=5
    )
    assert again.upserted == 1
    assert (await stub.Count(search_pb2.CountRequest(), timeout=5)).count == 1
    # The empty name and the configured default are the same collection.
    named = await stub.Count(search_pb2.CountRequest(collection="artworks"), timeout=5)
    assert named.count == 1
    reply = await stub.Search(
        search_pb2.SearchRequest(query=common_pb2.Embedding(values=basis(5)), limit=1), timeout=5
    )
    assert reply.hits[0].artwork.title == "new"
    assert reply.hits[0].score == pytest.approx(1.0, abs=1e-3)

    deleted = await stub.Delete(search_pb2.DeleteRequest(ids=["x", "never-there"]), timeout=5)
    assert deleted.deleted == 1
    assert (await stub.Count(search_pb2.CountRequest(), timeout=5)).count == 0


async def test_update_artwork_sets_the_given_fields_in_place(stub) -> None:
    items = [indexed("e1", basis(6), title="Old", artist="Katsushika Hokusai", style="Ukiyo-e", year=1831,
                     image_uri="e1.png", catalogue="demo", extra={"museum": "Met", "room": "1"}),
             indexed("e2", basis(7), title="Other", artist="Katsushika Hokusai")]  # fmt: skip
    await stub.Upsert(search_pb2.UpsertRequest(collection="edits", items=items), timeout=10)
    request = search_pb2.UpdateArtworkRequest(
        collection="edits",
        id="e1",
        title="New",
        artist="Utagawa Hiroshige",
        style="",  # set to empty: cleared, unlike the fields left unset
        set_extra={"room": "2", "licence": "PD"},
        remove_extra=["museum", "never-there"],
    )
    reply = await stub.UpdateArtwork(request, timeout=5)

    expected = common_pb2.Artwork()
    expected.CopyFrom(items[0].artwork)
    expected.title, expected.artist, expected.style = "New", "Utagawa Hiroshige", ""
    del expected.extra["museum"]
    expected.extra.update({"room": "2", "licence": "PD"})
    assert reply.previous == items[0].artwork
    assert reply.artwork == expected
    got = await stub.Get(
        search_pb2.GetRequest(collection="edits", ids=["e1"], with_embeddings=True), timeout=5
    )
    assert got.items[0].artwork == expected
    assert list(got.items[0].embedding.values) == pytest.approx(basis(6), abs=1e-3)

    def by_artist(name: str) -> search_pb2.SearchRequest:
        query = common_pb2.Embedding(values=basis(6))
        artist = search_pb2.Filter(artists=[name])
        return search_pb2.SearchRequest(collection="edits", query=query, limit=5, filter=artist)

    assert hit_ids(await stub.Search(by_artist("utagawa hiroshige"), timeout=5)) == ["e1"]
    assert hit_ids(await stub.Search(by_artist("Katsushika Hokusai"), timeout=5)) == ["e2"]


async def test_update_artwork_of_a_missing_or_deleted_id_is_not_found(stub) -> None:
    await stub.Upsert(search_pb2.UpsertRequest(collection="gone", items=[indexed("g", basis(0))]), timeout=10)
    await stub.Delete(search_pb2.DeleteRequest(collection="gone", ids=["g"]), timeout=5)
    for artwork_id in ("g", "never"):
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await stub.UpdateArtwork(
                search_pb2.UpdateArtworkRequest(collection="gone", id=artwork_id, title="back?"), timeout=5
            )
        assert error.value.code() == grpc.StatusCode.NOT_FOUND
        assert artwork_id in error.value.details()
    assert (await stub.Count(search_pb2.CountRequest(collection="gone"), timeout=5)).count == 0


async def test_unknown_collection_is_empty_not_an_error(stub) -> None:
    query = common_pb2.Embedding(values=basis(0))
    search = await stub.Search(
        search_pb2.SearchRequest(collection="nowhere", query=query, limit=5), timeout=5
    )
    assert list(search.hits) == []
    assert (await stub.Count(search_pb2.CountRequest(collection="nowhere"), timeout=5)).count == 0
    get = await stub.Get(search_pb2.GetRequest(collection="nowhere", ids=["a"]), timeout=5)
    assert list(get.missing_ids) == ["a"]
    assert (
        await stub.Delete(search_pb2.DeleteRequest(collection="nowhere", ids=["a"]), timeout=5)
    ).deleted == 0


async def test_scroll_exports_the_collection_page_by_page(stub, catalogue: str) -> None:
    exported: dict[str, search_pb2.IndexedArtwork] = {}
    request = search_pb2.ScrollRequest(collection=catalogue, limit=3, with_embeddings=True)
    while True:
        page = await stub.Scroll(request, timeout=5)
        assert len(page.items) <= 3
        exported.update((entry.artwork.id, entry) for entry in page.items)
        if not page.next_cursor:
            break
        request.cursor = page.next_cursor
    assert set(exported) == {entry.artwork.id for entry in CATALOGUE}
    for original in CATALOGUE:
        assert exported[original.artwork.id].artwork == original.artwork
        assert list(exported[original.artwork.id].embedding.values) == pytest.approx(
            list(original.embedding.values)
        )
    landscapes = search_pb2.ScrollRequest(
        collection=catalogue, limit=10, filter=search_pb2.Filter(genres=["landscape"])
    )
    page = await stub.Scroll(landscapes, timeout=5)
    assert {entry.artwork.id for entry in page.items} == {"wave", "shower", "bridge"}
    assert all(len(entry.embedding.values) == 0 for entry in page.items)


async def test_snapshot_and_restore(stub) -> None:
    items = [indexed("s1", basis(0), title="kept"), indexed("s2", basis(1))]
    await stub.Upsert(search_pb2.UpsertRequest(collection="snapped", items=items), timeout=10)
    snapshot = await stub.CreateSnapshot(search_pb2.CreateSnapshotRequest(collection="snapped"), timeout=30)
    assert snapshot.collection == "snapped"
    assert snapshot.size_bytes > 0
    assert snapshot.name.startswith("snapped-") and snapshot.created_at
    await stub.Delete(search_pb2.DeleteRequest(collection="snapped", ids=["s1"]), timeout=5)

    restored = await stub.RestoreSnapshot(
        search_pb2.RestoreSnapshotRequest(collection="snapped_copy", name=snapshot.name), timeout=30
    )
    assert restored.count == 2
    reply = await stub.Get(search_pb2.GetRequest(collection="snapped_copy", ids=["s1"]), timeout=5)
    assert reply.items[0].artwork.title == "kept"
    count = await stub.Count(search_pb2.CountRequest(collection="snapped"), timeout=5)
    assert count.count == 1


async def test_snapshots_are_unimplemented_on_qdrant_local_mode(tmp_path: Path) -> None:
    store = await QdrantArtworkStore.open(path=tmp_path / "qdrant")
    server = GrpcServiceServer([search_registration(SearchService(store))])
    port = await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            local_stub = search_pb2_grpc.SearchServiceStub(channel)
            await local_stub.Upsert(_upsert(indexed("a", basis(0)), collection=""), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await local_stub.CreateSnapshot(search_pb2.CreateSnapshotRequest(), timeout=10)
            assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
        await store.close()


# --- bad input --------------------------------------------------------------------------------------


def _search(**fields: object) -> search_pb2.SearchRequest:
    request = search_pb2.SearchRequest(
        collection="demo", query=common_pb2.Embedding(values=basis(0)), limit=5
    )
    for name, value in fields.items():
        if name == "query":
            request.query.CopyFrom(common_pb2.Embedding(values=value))  # type: ignore[arg-type]
        elif name == "filter":
            request.filter.CopyFrom(value)  # type: ignore[arg-type]
        else:
            setattr(request, name, value)
    return request


def _upsert(*items: search_pb2.IndexedArtwork, collection: str = "demo") -> search_pb2.UpsertRequest:
    return search_pb2.UpsertRequest(collection=collection, items=items)


def _edit(**fields: object) -> search_pb2.UpdateArtworkRequest:
    return search_pb2.UpdateArtworkRequest(collection="demo", id="wave", **fields)  # type: ignore[arg-type]


BAD_REQUESTS = [
    ("Upsert", _upsert(indexed("", basis(0))), r"items\[0\] has no artwork id"),
    ("Upsert", _upsert(indexed("ok", basis(0)), indexed("e", [])), r"items\[1\] \(id 'e'\) vector is empty"),
    ("Upsert", _upsert(indexed("n", [float("nan")] + [0.0] * 7)), "NaN or infinite"),
    ("Upsert", _upsert(indexed("i", [float("inf")] + [0.0] * 7)), "NaN or infinite"),
    ("Upsert", _upsert(indexed("z", [0.0] * DIM)), "zero vector"),
    ("Upsert", _upsert(indexed("a", basis(0)), indexed("b", [1.0, 2.0])), r"items\[1\].*dim.* 2.*dim.* 8"),
    ("Upsert", _upsert(indexed("a", [1.0, 2.0, 3.0])), "dimension 3, but collection 'demo' holds 8-d"),
    ("Upsert", _upsert(*[indexed(f"i{n}", [1.0]) for n in range(10_001)]), "too many items: 10001 > 10000"),
    ("Upsert", _upsert(indexed("a", basis(0)), collection="no spaces"), "invalid collection name 'no sp"),
    ("Search", _search(limit=0), "limit must be between 1 and 1000, got 0"),
    ("Search", _search(limit=-3), "limit must be between 1 and 1000, got -3"),
    ("Search", _search(limit=1001), "limit must be between 1 and 1000, got 1001"),
    ("Search", _search(offset=-1), "offset must be between 0 and 10000, got -1"),
    ("Search", _search(query=[]), "query vector is empty"),
    ("Search", _search(query=[float("nan")] * DIM), "query vector contains NaN"),
    ("Search", _search(query=[0.0] * DIM), "query vector is a zero vector"),
    ("Search", _search(query=[1.0] * 5), "query vector has dimension 5, but collection 'demo' holds 8-d"),
    ("Search", _search(collection="x" * 65), "invalid collection name"),
    ("Search", _search(collection="../etc"), "invalid collection name"),
    ("Search", _search(filter=search_pb2.Filter(year_min=1900, year_max=1800)), "year_min .1900. is greater"),
    ("Search", _search(filter=search_pb2.Filter(artists=["Hokusai", " "])), r"filter.artists\[1\] is empty"),
    ("Count", search_pb2.CountRequest(filter=search_pb2.Filter(year_min=2, year_max=1)), "is greater than"),
    ("Count", search_pb2.CountRequest(collection="ünïcode"), "invalid collection name"),
    ("Get", search_pb2.GetRequest(ids=[str(n) for n in range(10_001)]), "too many ids: 10001 > 10000"),
    ("Get", search_pb2.GetRequest(ids=["a", ""]), r"ids\[1\] is empty"),
    ("Delete", search_pb2.DeleteRequest(ids=["a"] * 10_001), "too many ids: 10001 > 10000"),
    ("Delete", search_pb2.DeleteRequest(collection="a/b", ids=["a"]), "invalid collection name"),
    ("Scroll", search_pb2.ScrollRequest(collection="demo", limit=0), "between 1 and 1000, got 0"),
    ("Scroll", search_pb2.ScrollRequest(collection="demo", limit=1001), "limit must be between 1 and 1000"),
    ("Scroll", search_pb2.ScrollRequest(collection="demo", limit=5, cursor="nope"), "invalid scroll cursor"),
    ("Scroll", search_pb2.ScrollRequest(collection="a b", limit=5), "invalid collection name"),
    ("CreateSnapshot", search_pb2.CreateSnapshotRequest(collection="never"), "does not exist"),
    ("RestoreSnapshot", search_pb2.RestoreSnapshotRequest(name=""), "invalid snapshot name"),
    ("RestoreSnapshot", search_pb2.RestoreSnapshotRequest(name="../../etc/passwd"), "invalid snapshot name"),
    ("RestoreSnapshot", search_pb2.RestoreSnapshotRequest(name="demo-20260101T000000Z.snapshot"),
     "no snapshot"),
    ("UpdateArtwork", search_pb2.UpdateArtworkRequest(collection="demo", title="t"), "id is empty"),
    ("UpdateArtwork", _edit(), "changes nothing"),
    ("UpdateArtwork", _edit(set_extra={"": "v"}), "extra key is empty"),
    ("UpdateArtwork", _edit(set_extra={"k": "v"}, remove_extra=["k"]), "'k' is both set and removed"),
    ("UpdateArtwork", _edit(remove_extra=['a"b']), "cannot be removed"),
    ("UpdateArtwork", _edit(remove_extra=["k"] * 1001), "too many extra keys: 1001 > 1000"),
    ("UpdateArtwork", search_pb2.UpdateArtworkRequest(collection="a b", id="wave", title="t"),
     "invalid collection name"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "request_message", "message"),
    BAD_REQUESTS,
    ids=[f"{i}-{method}" for i, (method, _, _) in enumerate(BAD_REQUESTS)],
)
async def test_bad_input_is_invalid_argument_and_the_service_keeps_serving(
    stub, catalogue: str, method: str, request_message: object, message: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await getattr(stub, method)(request_message, timeout=10)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert re.search(message, error.value.details()), error.value.details()
    # Nothing was written and the service still answers.
    reply = await stub.Count(search_pb2.CountRequest(collection=catalogue), timeout=5)
    assert reply.count == len(CATALOGUE)


# --- a storage outage ---------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_qdrant_server_is_unavailable_not_a_crash() -> None:
    url = f"http://127.0.0.1:{_free_port()}"
    store = await QdrantArtworkStore.open(
        url=url,
        timeout_s=2,
        check_compatibility=False,
        settings=QdrantServerSettings(retries=1, retry_backoff_s=0.01),
    )
    server = GrpcServiceServer([search_registration(SearchService(store))])
    port = await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            for _ in range(2):
                with pytest.raises(grpc.aio.AioRpcError) as error:
                    await stub.Count(search_pb2.CountRequest(), timeout=10)
                assert error.value.code() == grpc.StatusCode.UNAVAILABLE
                assert "unreachable" in error.value.details()
            assert await is_serving(channel, SERVICE_NAME)
    finally:
        await server.stop(0)
        await store.close()


# --- configuration ----------------------------------------------------------------------------------


def test_config_needs_a_server_or_a_data_dir() -> None:
    with pytest.raises(ConfigError, match=r"QDRANT_URL .* or SEARCH_DATA_DIR"):
        SearchConfig.from_env(Env({}))


def test_config_embedded(tmp_path: Path) -> None:
    config = SearchConfig.from_env(
        Env({"SEARCH_DATA_DIR": str(tmp_path), "ARTSEARCH_PORT": "6000", "ARTSEARCH_HOST": "::1"})
    )
    assert config.data_dir == tmp_path
    assert config.qdrant_url is None
    assert config.engine == "edge"
    assert config.collection == "artworks"
    assert config.listen.address == "[::1]:6000"
    assert config.listen.metrics_port is None


def test_config_embedded_engine_settings(tmp_path: Path) -> None:
    env = {
        "SEARCH_DATA_DIR": str(tmp_path),
        "SEARCH_ENGINE": "qdrant-local",
        "SEARCH_HNSW_M": "32",
        "SEARCH_HNSW_EF_CONSTRUCT": "200",
        "SEARCH_HNSW_EF": "128",
        "SEARCH_QUANTIZATION": "true",
        "SEARCH_INDEX_THRESHOLD": "5000",
        "SEARCH_INDEX_DELAY_S": "2.5",
        "SEARCH_UPSERT_BATCH": "64",
        "SEARCH_VECTOR_DATATYPE": "float16",
        "SEARCH_VECTORS_ON_DISK": "1",
    }
    config = SearchConfig.from_env(Env(env))
    assert config.engine == "qdrant-local"
    assert (config.edge.vector_datatype, config.edge.vectors_on_disk) == ("float16", True)
    edge = config.edge
    assert (edge.hnsw_m, edge.hnsw_ef_construct, edge.search_ef, edge.quantization) == (32, 200, 128, True)
    assert (edge.index_threshold, edge.index_delay_s, edge.upsert_batch) == (5000, 2.5, 64)
    assert config.edge.search_ef == 128
    defaults = SearchConfig.from_env(Env({"SEARCH_DATA_DIR": "/d"})).edge
    assert (defaults.search_ef, defaults.vector_datatype, defaults.quantization) == (400, "float16", False)
    assert SearchConfig.from_env(Env({"SEARCH_DATA_DIR": "/d", "SEARCH_HNSW_EF": "0"})).edge.search_ef is None


def test_config_server_wins_over_data_dir() -> None:
    env = {
        "QDRANT_URL": "http://qdrant:6333",
        "QDRANT_API_KEY": "secret",
        "QDRANT_TIMEOUT_S": "3",
        "SEARCH_DATA_DIR": "/ignored",
        "SEARCH_COLLECTION": "paintings_v2",
        "METRICS_PORT": "9102",
        "QDRANT_SHARD_NUMBER": "6",
        "QDRANT_REPLICATION_FACTOR": "2",
        "QDRANT_WRITE_CONSISTENCY": "2",
        "QDRANT_QUANTIZATION": "yes",
        "QDRANT_RETRIES": "5",
        "QDRANT_CA_CERT": "/etc/ssl/qdrant-ca.pem",
        "QDRANT_HNSW_EF": "256",
    }
    config = SearchConfig.from_env(Env(env))
    server = config.server
    assert (server.shard_number, server.replication_factor, server.write_consistency_factor) == (6, 2, 2)
    assert (server.quantization, server.retries, server.search_ef) == (True, 5, 256)
    defaults = SearchConfig.from_env(Env({"QDRANT_URL": "http://qdrant:6333"})).server
    assert defaults.search_ef == 400
    assert (
        SearchConfig.from_env(Env({"QDRANT_URL": "http://q:6333", "QDRANT_HNSW_EF": "0"})).server.search_ef
        is None
    )
    assert config.qdrant_ca_cert == "/etc/ssl/qdrant-ca.pem"
    assert (config.qdrant_url, config.qdrant_api_key, config.qdrant_timeout_s) == (
        "http://qdrant:6333",
        "secret",
        3,
    )
    assert config.data_dir is None
    assert config.collection == "paintings_v2"
    assert config.listen.port == DEFAULT_PORTS["search"]
    assert config.listen.metrics_port == 9102
    assert "secret" not in config.backend


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_COLLECTION": "bad name"}, "SEARCH_COLLECTION"),
        ({"QDRANT_URL": "http://q", "QDRANT_TIMEOUT_S": "soon"}, "QDRANT_TIMEOUT_S"),
        ({"QDRANT_URL": "http://q", "QDRANT_TIMEOUT_S": "0"}, "QDRANT_TIMEOUT_S"),
        ({"SEARCH_DATA_DIR": "/d", "ARTSEARCH_PORT": "http"}, "ARTSEARCH_PORT"),
        ({"QDRANT_URL": "qdrant:6333"}, "must start with http"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_ENGINE": "faiss"}, "SEARCH_ENGINE='faiss' must be one of edge"),
        ({"QDRANT_URL": "http://q", "QDRANT_SHARD_NUMBER": "0"}, "QDRANT_SHARD_NUMBER"),
        ({"QDRANT_URL": "http://q", "QDRANT_QUANTIZATION": "maybe"}, "QDRANT_QUANTIZATION"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_INDEX_DELAY_S": "-1"}, "SEARCH_INDEX_DELAY_S"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_UPSERT_BATCH": "0"}, "SEARCH_UPSERT_BATCH"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_REGION_MARGIN": "1.5"}, "SEARCH_REGION_MARGIN"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_REGION_MARGIN": "nan"}, "SEARCH_REGION_MARGIN"),
        ({"SEARCH_DATA_DIR": "/d", "SEARCH_REGION_MARGIN": "wide"}, "SEARCH_REGION_MARGIN"),
        (
            {"SEARCH_DATA_DIR": "/d", "ARTSEARCH_TEST_CRASH_AT": "swap now"},
            "ARTSEARCH_TEST_CRASH_AT='swap now'",
        ),
        (
            {"SEARCH_DATA_DIR": "/d", "SEARCH_VECTOR_DATATYPE": "int4"},
            "SEARCH_VECTOR_DATATYPE='int4' must be",
        ),
    ],
)
def test_config_rejects_malformed_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchConfig.from_env(Env(env))


@pytest.mark.parametrize(
    ("engine", "store_type", "folder"),
    [("edge", EdgeArtworkStore, "edge"), ("qdrant-local", QdrantArtworkStore, "qdrant")],
)
async def test_factory_opens_the_embedded_engine_under_the_data_dir(
    tmp_path: Path, engine: str, store_type: type, folder: str
) -> None:
    env = {"SEARCH_DATA_DIR": str(tmp_path / "data"), "SEARCH_COLLECTION": "c1", "SEARCH_ENGINE": engine}
    store = await open_artwork_store(SearchConfig.from_env(Env(env)))
    try:
        assert isinstance(store, store_type)
        assert await store.upsert("", [_record("a")]) == 1
        assert await store.count("c1") == 1
    finally:
        await store.close()
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == [folder]


def _record(artwork_id: str) -> IndexedArtwork:
    return IndexedArtwork(ArtworkRecord(id=artwork_id), np.array(basis(0), dtype=np.float32))


# --- the real process ---------------------------------------------------------------------------------


def _run_service(env: dict[str, str]) -> subprocess.Popen[str]:
    full_env = {k: v for k, v in os.environ.items() if k not in {"QDRANT_URL", "SEARCH_DATA_DIR"}}
    return subprocess.Popen(
        [sys.executable, "-m", "services.search"],
        cwd=REPO_ROOT,
        env={**full_env, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_process_without_storage_settings_fails_fast() -> None:
    process = _run_service({})
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 2
    assert "QDRANT_URL" in stderr and "SEARCH_DATA_DIR" in stderr


async def test_process_serves_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = _free_port()
    process = _run_service(
        {"SEARCH_DATA_DIR": str(tmp_path), "ARTSEARCH_PORT": str(port), "ARTSEARCH_HOST": "127.0.0.1"}
    )
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            for _ in range(100):
                if process.poll() is not None:
                    pytest.fail(f"the search service exited: {process.communicate()[1]}")
                if await is_serving(channel, SERVICE_NAME, timeout=0.5):
                    break
                await asyncio.sleep(0.1)
            else:
                pytest.fail("the search service did not report SERVING")
            stub = search_pb2_grpc.SearchServiceStub(channel)
            assert (
                await stub.Upsert(_upsert(indexed("p", basis(1)), collection=""), timeout=10)
            ).upserted == 1
        process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(process.communicate, timeout=30)
        assert process.returncode == 0, stderr
        assert '"msg": "serving"' in stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert (tmp_path / "edge" / "artworks" / "collection.json").is_file()
