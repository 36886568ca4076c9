"""`artsearch reindex` and the model aliases (artsearch/model_aliases.py): the migration of a collection
named like the alias (`--replace-collection`), an old collection whose model is given or unknown, and a
rollback. Real encoder, search and influence services in-process; the reindex uses the running encoder (the
same model as the ingest: a migration copy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from gateway_support import catalogue_subset, encoder_model_version, in_process_services, ingest_targets

from artsearch.grpc_client import open_channel
from artsearch.model_aliases import alias_map, model_alias
from artsearch.v1 import search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue
from artsearch_tools.ingest import ingest_catalogue
from artsearch_tools.training.reindex import ReindexSettings, reindex, rollback

pytestmark = pytest.mark.slow

IDS = ["van-gogh-bedroom-in-arles", "hokusai-the-great-wave-off-kanagawa", "degas-the-dance-class"]


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return catalogue_subset(gcompris_catalogue, IDS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    """The services in-process; the paintings ingested into the default collection `artworks`, and copied
    (without any model alias) into `plain`."""
    async with in_process_services(model_path, tmp_path_factory.mktemp("reindex")) as addresses:
        assert (await ingest_catalogue(catalogue, ingest_targets(addresses))).added == len(IDS)
        async with open_channel(addresses["SEARCH_ADDR"]) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            found = await stub.Get(search_pb2.GetRequest(ids=IDS, with_embeddings=True), timeout=10)
            await stub.Upsert(search_pb2.UpsertRequest(collection="plain", items=found.items), timeout=10)
        yield addresses


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def version(services: dict[str, str]) -> str:
    """The version of the real encoder's model."""
    return await encoder_model_version(services)


async def aliases(address: str) -> dict[str, str]:
    async with open_channel(address) as channel:
        reply = await search_pb2_grpc.SearchServiceStub(channel).ListAliases(
            search_pb2.ListAliasesRequest(), timeout=10
        )
    return alias_map(reply)


def settings(services: dict[str, str], catalogue: Catalogue, **fields: object) -> ReindexSettings:
    return ReindexSettings(
        search_addr=services["SEARCH_ADDR"],
        encoder_addr=services["ENCODER_ADDR"],
        catalogues={catalogue.name: catalogue.root},
        **fields,  # type: ignore[arg-type]
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_the_migration_of_a_collection_named_like_the_alias_moves_its_model_alias(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    address = services["SEARCH_ADDR"]
    assert await aliases(address) == {model_alias("artworks", version): "artworks"}  # set by the ingest
    report = await reindex(
        settings(
            services,
            catalogue,
            source="artworks",
            target="artworks-1",
            alias="artworks",
            replace_collection=True,
        )
    )
    assert report.switched and report.previous_collection == "artworks", report.summary()
    assert report.source_model_versions == [version] and report.model_version == version
    assert await aliases(address) == {
        "artworks": "artworks-1",
        model_alias("artworks", version): "artworks-1",
        model_alias("artworks-1", version): "artworks-1",
    }
    assert any("removed" in note for note in report.notes), report.summary()


@pytest.mark.asyncio(loop_scope="session")
async def test_the_old_model_given_points_its_alias_at_the_old_collection_and_a_rollback_keeps_it(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    address = services["SEARCH_ADDR"]
    report = await reindex(
        settings(
            services,
            catalogue,
            source="plain",
            target="plain-2",
            alias="gallery",
            source_model_version="old-model",
        )
    )
    assert report.switched and report.source_collection == "plain" and not report.notes, report.summary()
    expected = {
        "gallery": "plain-2",
        model_alias("gallery", "old-model"): "plain",
        model_alias("gallery", version): "plain-2",
        model_alias("plain-2", version): "plain-2",
    }
    assert {name: (await aliases(address))[name] for name in expected} == expected

    back = await rollback(address, "gallery", "plain")
    assert back.previous_collection == "plain-2" and back.model_aliases == {}  # already consistent
    assert {name: (await aliases(address))[name] for name in expected} == {**expected, "gallery": "plain"}

    # Forward again after the old model's alias was moved by hand: the collection's record wins.
    async with open_channel(address) as channel:
        await search_pb2_grpc.SearchServiceStub(channel).SetAlias(
            search_pb2.SetAliasRequest(alias=model_alias("gallery", version), collection="plain"), timeout=10
        )
    forward = await rollback(address, "gallery", "plain-2")
    assert forward.model_aliases == {model_alias("gallery", version): "plain-2"}, forward.summary()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_old_collection_of_unknown_model_is_reported(
    services: dict[str, str], catalogue: Catalogue, version: str
) -> None:
    report = await reindex(settings(services, catalogue, source="plain", target="plain-3", alias="gallery2"))
    assert report.switched and report.source_model_versions == []
    assert any("--source-model-version" in note for note in report.notes), report.summary()
    listed = await aliases(services["SEARCH_ADDR"])
    assert listed["gallery2"] == "plain-3" and listed[model_alias("gallery2", version)] == "plain-3"
    assert not any(name.startswith("gallery2__") and target == "plain" for name, target in listed.items())
