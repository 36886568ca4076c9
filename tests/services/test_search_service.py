"""SearchService over a real gRPC channel, against an in-process server on embedded Qdrant storage."""

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
from services.search.config import SearchConfig, open_artwork_store
from services.search.qdrant_store import QdrantArtworkStore
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
    store = await QdrantArtworkStore.open(path=tmp_path_factory.mktemp("search") / "qdrant")
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
    assert reply.hits[0].score == pytest.approx(0.9 / np.hypot(0.9, 0.1), abs=1e-5)
    assert [hit.score for hit in reply.hits] == sorted((hit.score for hit in reply.hits), reverse=True)
    assert reply.hits[0].artwork == CATALOGUE[0].artwork


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
    assert reply.hits[0].score == pytest.approx(1.0, abs=1e-5)

    deleted = await stub.Delete(search_pb2.DeleteRequest(ids=["x", "never-there"]), timeout=5)
    assert deleted.deleted == 1
    assert (await stub.Count(search_pb2.CountRequest(), timeout=5)).count == 0


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
    store = await QdrantArtworkStore.open(url=url, timeout_s=2, check_compatibility=False)
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
    config = SearchConfig.from_env(Env({"SEARCH_DATA_DIR": str(tmp_path), "PORT": "6000", "HOST": "::1"}))
    assert config.data_dir == tmp_path
    assert config.qdrant_url is None
    assert config.collection == "artworks"
    assert config.listen.address == "[::1]:6000"
    assert config.listen.metrics_port is None


def test_config_server_wins_over_data_dir() -> None:
    env = {
        "QDRANT_URL": "http://qdrant:6333",
        "QDRANT_API_KEY": "secret",
        "QDRANT_TIMEOUT_S": "3",
        "SEARCH_DATA_DIR": "/ignored",
        "SEARCH_COLLECTION": "paintings_v2",
        "METRICS_PORT": "9102",
    }
    config = SearchConfig.from_env(Env(env))
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
        ({"SEARCH_DATA_DIR": "/d", "PORT": "http"}, "PORT"),
        ({"QDRANT_URL": "qdrant:6333"}, "must start with http"),
    ],
)
def test_config_rejects_malformed_values(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        SearchConfig.from_env(Env(env))


async def test_factory_opens_embedded_storage_under_the_data_dir(tmp_path: Path) -> None:
    config = SearchConfig.from_env(
        Env({"SEARCH_DATA_DIR": str(tmp_path / "data"), "SEARCH_COLLECTION": "c1"})
    )
    store = await open_artwork_store(config)
    try:
        assert await store.upsert("", [_record("a")]) == 1
        assert await store.count("c1") == 1
    finally:
        await store.close()
    assert (tmp_path / "data" / "qdrant").is_dir()


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
    process = _run_service({"SEARCH_DATA_DIR": str(tmp_path), "PORT": str(port), "HOST": "127.0.0.1"})
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
    assert (tmp_path / "qdrant").is_dir()
