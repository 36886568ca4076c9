"""Collection aliases: set, switch, list and remove them on every embedded engine (qdrant-edge, qdrant-client
local mode on disk and in memory), through the store and through SearchService over gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio

from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.search.edge_store import EdgeArtworkStore
from services.search.qdrant_store import QdrantArtworkStore
from services.search.server import SearchService, search_registration
from services.search.store import (
    ArtworkRecord,
    ArtworkStore,
    IndexedArtwork,
    InvalidStoreRequest,
    NotFound,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 4
ENGINES = ("edge", "qdrant-local", "memory")
PERSISTENT = ("edge", "qdrant-local")


def basis(index: int, dimension: int = DIM) -> np.ndarray:
    vector = np.zeros(dimension, dtype=np.float32)
    vector[index] = 1.0
    return vector


def artworks(prefix: str, dimension: int = DIM) -> list[IndexedArtwork]:
    return [IndexedArtwork(ArtworkRecord(id=f"{prefix}-{i}"), basis(i, dimension)) for i in range(3)]


Opener = Callable[[], Awaitable[ArtworkStore]]


def opener(engine: str, folder: Path) -> Opener:
    async def open_store() -> ArtworkStore:
        if engine == "edge":
            return await EdgeArtworkStore.open(folder / "edge")
        if engine == "qdrant-local":
            return await QdrantArtworkStore.open(path=folder / "qdrant")
        return await QdrantArtworkStore.open(location=":memory:")

    return open_store


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture(loop_scope="session")
async def store(engine: str, tmp_path: Path) -> AsyncIterator[ArtworkStore]:
    opened = await opener(engine, tmp_path)()
    await opened.upsert("v1", artworks("old"))
    await opened.upsert("v2", artworks("new", dimension=DIM + 2))  # a retrained model: another dimension
    yield opened
    await opened.close()


async def top_id(store: ArtworkStore, collection: str, dimension: int) -> str:
    hits = await store.search(collection, basis(0, dimension), limit=1)
    return hits[0].artwork.id


async def test_requests_through_an_alias_follow_the_switch(store: ArtworkStore) -> None:
    first = await store.set_alias("live", "v1")
    assert (first.previous_collection, first.replaced_collection) == ("", "")
    assert await top_id(store, "live", DIM) == "old-0"
    assert await store.count("live") == 3

    moved = await store.set_alias("live", "v2")
    assert (moved.collection, moved.previous_collection) == ("v2", "v1")
    assert await top_id(store, "live", DIM + 2) == "new-0"  # the cached dimension followed the alias
    page = await store.scroll("live", limit=10)
    assert sorted(item.artwork.id for item in page.items) == ["new-0", "new-1", "new-2"]
    assert await store.list_aliases() == {"live": "v2"}
    # The old collection stays, by its own name, for a rollback.
    assert await top_id(store, "v1", DIM) == "old-0"


async def test_writes_through_an_alias_land_in_its_collection(store: ArtworkStore) -> None:
    await store.set_alias("live", "v2")
    await store.upsert("live", [IndexedArtwork(ArtworkRecord(id="added"), basis(4, DIM + 2))])
    assert (await store.get("v2", ["added"])).found[0].artwork.id == "added"
    assert await store.delete("live", ["added"]) == 1
    assert await store.count("v2") == 3


async def test_the_default_collection_name_can_be_an_alias(engine: str, tmp_path: Path) -> None:
    store = await opener(engine, tmp_path)()
    try:
        await store.upsert("artworks-2", artworks("new"))
        await store.set_alias("artworks", "artworks-2")
        assert await top_id(store, "", DIM) == "new-0"  # "" is the default collection, "artworks"
    finally:
        await store.close()


async def test_list_and_remove_aliases(store: ArtworkStore) -> None:
    await store.set_alias("b-alias", "v2")
    await store.set_alias("a-alias", "v1")
    assert list((await store.list_aliases()).items()) == [("a-alias", "v1"), ("b-alias", "v2")]
    assert await store.delete_alias("a-alias") == "v1"
    assert await store.list_aliases() == {"b-alias": "v2"}
    assert await store.count("a-alias") == 0  # a name that is nothing now reads as an empty collection
    with pytest.raises(NotFound):
        await store.delete_alias("a-alias")


async def test_unknown_collection_is_not_found(store: ArtworkStore) -> None:
    with pytest.raises(NotFound):
        await store.set_alias("live", "no-such-collection")
    assert await store.list_aliases() == {}


@pytest.mark.parametrize(
    ("alias", "collection", "message"),
    [
        ("bad/name", "v1", "invalid collection name"),
        ("", "v1", "invalid collection name"),
        ("live", "v1.old", "invalid collection name"),
        ("v1", "v1", "itself"),
        ("v1", "v2", "is a collection"),
    ],
)
async def test_bad_aliases_are_rejected(
    store: ArtworkStore, alias: str, collection: str, message: str
) -> None:
    with pytest.raises(InvalidStoreRequest, match=message):
        await store.set_alias(alias, collection)
    assert await store.list_aliases() == {}
    assert await top_id(store, "v1", DIM) == "old-0"


async def test_an_alias_cannot_point_at_an_alias(store: ArtworkStore) -> None:
    await store.set_alias("live", "v1")
    with pytest.raises(InvalidStoreRequest, match="is an alias"):
        await store.set_alias("other", "live")


async def test_replace_collection_puts_the_alias_in_place_of_a_collection(store: ArtworkStore) -> None:
    """A catalogue ingested straight into `v1` before aliases: the alias `v1` takes the name over."""
    change = await store.set_alias("v1", "v2", replace_collection=True)
    assert change.replaced_collection == "v1"
    assert await top_id(store, "v1", DIM + 2) == "new-0"
    assert await store.list_aliases() == {"v1": "v2"}


async def test_a_collection_in_use_by_an_alias_is_not_replaced(store: ArtworkStore) -> None:
    await store.set_alias("live", "v1")
    with pytest.raises(InvalidStoreRequest, match="use it"):
        await store.set_alias("v1", "v2", replace_collection=True)
    assert await top_id(store, "live", DIM) == "old-0"


@pytest.mark.parametrize("engine", PERSISTENT)
async def test_aliases_survive_a_restart(engine: str, tmp_path: Path) -> None:
    open_store = opener(engine, tmp_path)
    store = await open_store()
    await store.upsert("v1", artworks("old"))
    await store.set_alias("live", "v1")
    await store.close()
    store = await open_store()
    try:
        assert await store.list_aliases() == {"live": "v1"}
        assert await top_id(store, "live", DIM) == "old-0"
    finally:
        await store.close()


# --- over gRPC ---------------------------------------------------------------------------------------


@pytest_asyncio.fixture(loop_scope="session")
async def stub(tmp_path: Path) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    store = await EdgeArtworkStore.open(tmp_path / "edge")
    server = GrpcServiceServer([search_registration(SearchService(store))])
    port = await server.start()
    async with open_channel(f"127.0.0.1:{port}") as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)
    await server.stop(0)
    await store.close()


def upsert_request(collection: str, prefix: str) -> search_pb2.UpsertRequest:
    items = [
        search_pb2.IndexedArtwork(
            artwork=common_pb2.Artwork(id=f"{prefix}-{i}"),
            embedding=common_pb2.Embedding(values=basis(i).tolist()),
        )
        for i in range(3)
    ]
    return search_pb2.UpsertRequest(collection=collection, items=items)


def search_request(collection: str) -> search_pb2.SearchRequest:
    return search_pb2.SearchRequest(
        collection=collection, query=common_pb2.Embedding(values=basis(0).tolist()), limit=1
    )


async def test_grpc_alias_switch_under_query_load(stub: search_pb2_grpc.SearchServiceStub) -> None:
    await stub.Upsert(upsert_request("c1", "old"), timeout=10)
    await stub.Upsert(upsert_request("c2", "new"), timeout=10)
    reply = await stub.SetAlias(search_pb2.SetAliasRequest(alias="artworks", collection="c1"), timeout=10)
    assert reply.previous_collection == ""
    seen: list[str] = []
    switched, warmed_up = asyncio.Event(), asyncio.Event()

    async def query_until_switched() -> None:
        while not switched.is_set() or len(seen) < 40:
            answer = await stub.Search(search_request("artworks"), timeout=10)
            seen.append(answer.hits[0].artwork.id)  # never empty: the alias always names a collection
            if len(seen) == 5:
                warmed_up.set()

    load = asyncio.create_task(query_until_switched())
    await warmed_up.wait()  # the old collection answers first
    reply = await stub.SetAlias(search_pb2.SetAliasRequest(alias="artworks", collection="c2"), timeout=10)
    switched.set()
    await load
    assert reply.previous_collection == "c1"
    assert set(seen) <= {"old-0", "new-0"} and seen[0] == "old-0" and seen[-1] == "new-0"
    first_new = seen.index("new-0")
    assert all(hit == "new-0" for hit in seen[first_new:])  # no request goes back to the old collection
    listed = await stub.ListAliases(search_pb2.ListAliasesRequest(), timeout=10)
    assert [(a.alias, a.collection) for a in listed.aliases] == [("artworks", "c2")]


@pytest.mark.parametrize(
    ("request_fields", "code"),
    [
        ({"alias": "bad name", "collection": "c1"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"alias": "", "collection": "c1"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"alias": "ok", "collection": "../c1"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"alias": "c1", "collection": "c1"}, grpc.StatusCode.INVALID_ARGUMENT),
        ({"alias": "ok", "collection": "missing"}, grpc.StatusCode.NOT_FOUND),
        ({"alias": "not-an-alias", "collection": ""}, grpc.StatusCode.NOT_FOUND),
    ],
)
async def test_grpc_bad_alias_requests(
    stub: search_pb2_grpc.SearchServiceStub, request_fields: dict[str, str], code: grpc.StatusCode
) -> None:
    await stub.Upsert(upsert_request("c1", "old"), timeout=10)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.SetAlias(search_pb2.SetAliasRequest(**request_fields), timeout=10)
    assert raised.value.code() == code
    assert raised.value.details()


async def test_grpc_remove_alias(stub: search_pb2_grpc.SearchServiceStub) -> None:
    await stub.Upsert(upsert_request("c1", "old"), timeout=10)
    await stub.SetAlias(search_pb2.SetAliasRequest(alias="live", collection="c1"), timeout=10)
    reply = await stub.SetAlias(search_pb2.SetAliasRequest(alias="live"), timeout=10)
    assert reply.previous_collection == "c1"
    listed = await stub.ListAliases(search_pb2.ListAliasesRequest(), timeout=10)
    assert list(listed.aliases) == []
