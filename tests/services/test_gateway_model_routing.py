"""Per-model routing: a picture encoded by model V is searched in the model alias `artworks__V` when the
search service has it (artsearch/model_aliases.py), else in the configured collection; `artsearch ingest`
records that alias. Real encoder (onnxruntime), embedded search engine and influence graph in-process; the
gateway app driven through httpx."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from gateway_support import (
    encoder_model_version,
    gateway_client,
    gateway_config,
    ingest_targets,
    ingested_services,
)

from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.model_aliases import alias_map, model_alias
from artsearch.v1 import search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from artsearch_tools.ingest import IngestOptions, IngestRun
from services.gateway.alias_cache import AliasCache
from services.gateway.app import create_app
from services.gateway.downstream import Downstream
from services.search.edge_store import EdgeArtworkStore
from services.search.server import SearchService, search_registration

pytestmark = pytest.mark.slow

IDS = ["van-gogh-bedroom-in-arles", "van-gogh-cafe-terrace-at-night", "hokusai-the-great-wave-off-kanagawa",
       "hokusai-poppies", "gauguin-arearea", "degas-the-dance-class"]  # fmt: skip
COPIED = IDS[:3]
DEFAULT = "artworks"  # the gateway's and the search service's default collection
OTHER = "other"
TTL_S = 0.3


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    full = load_catalogue(gcompris_catalogue)
    entries = [entry for entry in full.entries if entry.id in IDS]
    assert sorted(entry.id for entry in entries) == sorted(IDS)
    return dataclasses.replace(full, entries=entries, problems=[])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    """The three services in-process, the paintings ingested into the default collection, three of them
    copied (retitled "copy: ...") into the collection `other`."""
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("routing")) as addresses:
        await copy_artworks(addresses["SEARCH_ADDR"], COPIED, OTHER)
        yield addresses


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def version(services: dict[str, str]) -> str:
    """The version of the real encoder's model."""
    return await encoder_model_version(services)


async def copy_artworks(address: str, ids: list[str], collection: str) -> None:
    async with open_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        found = await stub.Get(search_pb2.GetRequest(ids=ids, with_embeddings=True), timeout=10)
        for item in found.items:
            item.artwork.title = f"copy: {item.artwork.title}"
        await stub.Upsert(search_pb2.UpsertRequest(collection=collection, items=found.items), timeout=10)


async def list_aliases(address: str) -> dict[str, str]:
    async with open_channel(address) as channel:
        reply = await search_pb2_grpc.SearchServiceStub(channel).ListAliases(
            search_pb2.ListAliasesRequest(), timeout=10
        )
    return alias_map(reply)


async def set_alias(address: str, alias: str, collection: str) -> None:
    """Points `alias` at `collection`; "" removes it."""
    async with open_channel(address) as channel:
        await search_pb2_grpc.SearchServiceStub(channel).SetAlias(
            search_pb2.SetAliasRequest(alias=alias, collection=collection), timeout=10
        )


async def search(client: httpx.AsyncClient, catalogue: Catalogue, artwork_id: str = IDS[0]) -> dict:
    entry = next(entry for entry in catalogue.entries if entry.id == artwork_id)
    image = catalogue.path_of(entry).read_bytes()
    reply = await client.post("/v1/search", params={"k": 5}, files={"image": ("q.jpg", image, "image/jpeg")})
    assert reply.status_code == 200, reply.text
    return reply.json()


def titles(answer: dict) -> list[str]:
    return [result["title"] for result in answer["results"]]


# ---- ingest records the model alias ---------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_an_ingest_records_the_model_alias_of_its_collection(
    services: dict[str, str], version: str
) -> None:
    assert (await list_aliases(services["SEARCH_ADDR"]))[model_alias(DEFAULT, version)] == DEFAULT


@pytest.mark.asyncio(loop_scope="session")
async def test_an_ingest_into_an_alias_records_the_collection_it_names(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    address = services["SEARCH_ADDR"]
    await copy_artworks(address, IDS[:1], "gallery-1")
    await set_alias(address, "gallery", "gallery-1")
    one = dataclasses.replace(catalogue, entries=[e for e in catalogue.entries if e.id == IDS[4]])
    run = IngestRun(one, dataclasses.replace(ingest_targets(services), collection="gallery"), IngestOptions())
    assert (await run.run()).added == 1
    name = model_alias("gallery", version)
    assert run.model_alias == name
    assert (await list_aliases(address))[name] == "gallery-1"

    # Set already (elsewhere): left as it is. Nothing encoded: nothing recorded.
    await set_alias(address, name, OTHER)
    again = IngestRun(one, run.targets, IngestOptions(reencode=True))
    assert (await again.run()).updated == 1 and again.model_alias == ""
    assert (await list_aliases(address))[name] == OTHER
    skipped = IngestRun(one, dataclasses.replace(run.targets, collection="gallery-1"), IngestOptions())
    assert (await skipped.run()).skipped == 1 and skipped.model_alias == ""
    assert model_alias("gallery-1", version) not in await list_aliases(address)


# ---- the gateway searches the query's model collection --------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_a_search_answers_from_the_collection_of_its_model(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    address, name = services["SEARCH_ADDR"], model_alias(DEFAULT, version)
    app = create_app(gateway_config(services, MODEL_ALIAS_TTL_S=str(TTL_S)))
    async with gateway_client(app) as client:
        try:
            # After the ingest the model alias names the default collection.
            answer = await search(client, catalogue)
            assert answer["collection"] == name and answer["model"]["version"] == version
            assert len(answer["results"]) == 5 and not any(t.startswith("copy: ") for t in titles(answer))

            # Moved to `other` (and another model's alias set too): the next search after the TTL uses it.
            await set_alias(address, name, OTHER)
            await set_alias(address, model_alias(DEFAULT, "another-model"), DEFAULT)
            await asyncio.sleep(TTL_S)
            answer = await search(client, catalogue)
            assert answer["collection"] == name
            assert len(answer["results"]) == len(COPIED), titles(answer)
            assert all(t.startswith("copy: ") for t in titles(answer)), titles(answer)

            style = await client.post(
                "/v1/predict-style", files={"image": ("q.jpg", image_bytes(catalogue), "image/jpeg")}
            )
            assert style.status_code == 200 and style.json()["collection"] == name
            assert all(n["title"].startswith("copy: ") for n in style.json()["neighbours"])

            # From a stored descriptor: the configured collection (the vector came from it).
            similar = await client.get(f"/v1/artworks/{IDS[3]}/similar", params={"k": 5})
            assert similar.status_code == 200, similar.text
            assert similar.json()["collection"] == DEFAULT
            assert not any(t.startswith("copy: ") for t in titles(similar.json()))

            # Removed: after the TTL, the configured collection again.
            await set_alias(address, name, "")
            await asyncio.sleep(TTL_S)
            answer = await search(client, catalogue)
            assert answer["collection"] == DEFAULT
            assert len(answer["results"]) == 5 and not any(t.startswith("copy: ") for t in titles(answer))
        finally:
            await set_alias(address, name, DEFAULT)
            await set_alias(address, model_alias(DEFAULT, "another-model"), "")


def image_bytes(catalogue: Catalogue, artwork_id: str = IDS[0]) -> bytes:
    return catalogue.path_of(next(e for e in catalogue.entries if e.id == artwork_id)).read_bytes()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_removed_model_alias_is_noticed_at_once_whatever_the_ttl(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    address, name = services["SEARCH_ADDR"], model_alias(DEFAULT, version)
    await set_alias(address, name, OTHER)
    app = create_app(gateway_config(services, MODEL_ALIAS_TTL_S="3600"))
    async with gateway_client(app) as client:
        try:
            assert (await search(client, catalogue))["collection"] == name
            # The alias is gone but still listed in the gateway's cache: the search of the vanished name
            # finds nothing, the aliases are listed again, and the default collection answers.
            await set_alias(address, name, "")
            answer = await search(client, catalogue)
            assert answer["collection"] == DEFAULT and len(answer["results"]) == 5
        finally:
            await set_alias(address, name, DEFAULT)


# ---- the alias list failing -----------------------------------------------------------------------------


class AliasesUnavailable(SearchService):
    """The real search service with one injected fault: ListAliases answers UNAVAILABLE."""

    async def ListAliases(
        self, request: search_pb2.ListAliasesRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ListAliasesResponse:
        await context.abort(grpc.StatusCode.UNAVAILABLE, "injected fault: aliases unavailable")
        raise AssertionError("unreachable")


@pytest.mark.asyncio(loop_scope="session")
async def test_a_failing_alias_list_falls_back_to_the_configured_collection(
    services: dict[str, str],
    catalogue: Catalogue,
    version: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await EdgeArtworkStore.open(tmp_path / "search")
    server = GrpcServiceServer([search_registration(AliasesUnavailable(store))])
    faulty = f"127.0.0.1:{await server.start()}"
    try:
        async with open_channel(services["SEARCH_ADDR"]) as source, open_channel(faulty) as target:
            found = await search_pb2_grpc.SearchServiceStub(source).Get(
                search_pb2.GetRequest(ids=IDS, with_embeddings=True), timeout=10
            )
            await search_pb2_grpc.SearchServiceStub(target).Upsert(
                search_pb2.UpsertRequest(collection=DEFAULT, items=found.items), timeout=10
            )
        await copy_artworks(faulty, COPIED, OTHER)
        await set_alias(faulty, model_alias(DEFAULT, version), OTHER)  # there, but cannot be listed
        app = create_app(gateway_config({**services, "SEARCH_ADDR": faulty}))
        async with gateway_client(app) as client:
            with caplog.at_level(logging.WARNING, logger="services.gateway.downstream"):
                answer = await search(client, catalogue)
        assert answer["collection"] == DEFAULT and len(answer["results"]) == 5
        assert "cannot list the search aliases" in caplog.text
    finally:
        await server.stop(0)
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_stopped_search_service_gives_the_configured_collection(
    services: dict[str, str], version: str, tmp_path: Path
) -> None:
    store = await EdgeArtworkStore.open(tmp_path / "search")
    server = GrpcServiceServer([search_registration(SearchService(store))])
    stopped = f"127.0.0.1:{await server.start()}"
    await server.stop(0)
    await store.close()
    downstream = Downstream(gateway_config({**services, "SEARCH_ADDR": stopped, "SEARCH_TIMEOUT_S": "1"}))
    try:
        started = time.monotonic()
        assert await downstream.model_collection(version) == DEFAULT
        assert await downstream.model_collection(version) == DEFAULT  # asked again, not cached
        assert time.monotonic() - started < 5
    finally:
        await downstream.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_alias_cache_asks_once_per_ttl_and_again_when_expired(services: dict[str, str]) -> None:
    questions: list[str] = []
    now = [0.0]
    async with open_channel(services["SEARCH_ADDR"]) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)

        async def fetch(request_id: str) -> dict[str, str]:
            questions.append(request_id)
            reply = await stub.ListAliases(search_pb2.ListAliasesRequest(), timeout=10)
            return alias_map(reply)

        cache = AliasCache(fetch, ttl_s=5.0, clock=lambda: now[0])
        answers = await asyncio.gather(*(cache.get(f"r{i}") for i in range(5)))
        assert len(questions) == 1 and all(answer == answers[0] for answer in answers)
        assert answers[0] == await list_aliases(services["SEARCH_ADDR"])
        now[0] = 4.9
        await cache.get()
        assert len(questions) == 1
        now[0] = 5.0
        await cache.get()
        assert len(questions) == 2
        cache.expire()
        await cache.get()
        assert len(questions) == 3
