"""Retrain, re-index and switch, end to end: 20 GCompris paintings ingested into `artworks-1` behind the alias
`artworks`, a head trained on them, every artwork re-encoded by an encoder started on the new model into
`artworks-2`, the alias switched — while the gateway keeps answering queries through the alias. The gateway's
encoder stays on the old model throughout (an encoder rollout not yet done): its queries go to the model alias
`artworks__<old version>`, which names `artworks-1` before, during and after the switch."""

from __future__ import annotations

import asyncio
import csv
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from artsearch.grpc_client import open_channel
from artsearch.model_aliases import alias_map, model_alias
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from artsearch_tools.training.features import ViewSettings
from artsearch_tools.training.head import HeadSettings
from artsearch_tools.training.reindex import ReindexSettings, reindex, rollback, switch_alias
from artsearch_tools.training.retrain import RetrainSettings, retrain

pytestmark = pytest.mark.slow

PAINTINGS = 20


def small_catalogue(source: Path, folder: Path) -> Path:
    """The first PAINTINGS rows of the GCompris catalogue, in a folder also named `gcompris`."""
    folder.mkdir(parents=True)
    with (source / "metadata.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))[:PAINTINGS]
    with (folder / "metadata.csv").open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        shutil.copyfile(source / row["filename"], folder / row["filename"])
    return folder


async def stored_vector(search_addr: str, collection: str, artwork_id: str) -> np.ndarray:
    async with open_channel(search_addr) as channel:
        reply = await search_pb2_grpc.SearchServiceStub(channel).Get(
            search_pb2.GetRequest(collection=collection, ids=[artwork_id], with_embeddings=True), timeout=10
        )
    return np.asarray(reply.items[0].embedding.values, dtype=np.float32)


async def aliases(search_addr: str) -> dict[str, str]:
    async with open_channel(search_addr) as channel:
        reply = await search_pb2_grpc.SearchServiceStub(channel).ListAliases(
            search_pb2.ListAliasesRequest(), timeout=10
        )
    return alias_map(reply)


async def remove_alias(search_addr: str, alias: str) -> None:
    async with open_channel(search_addr) as channel:
        await search_pb2_grpc.SearchServiceStub(channel).SetAlias(
            search_pb2.SetAliasRequest(alias=alias), timeout=10
        )


async def encoder_version(encoder_addr: str) -> str:
    async with open_channel(encoder_addr) as channel:
        info = await encoder_pb2_grpc.EncoderServiceStub(channel).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=30
        )
    return info.version


class QueryLoad(threading.Thread):
    """Queries the gateway without pause until stopped; records each answer's status, result count and the
    collection (or alias) that answered."""

    def __init__(self, gateway_url: str, image: bytes) -> None:
        super().__init__(daemon=True)
        self.gateway_url, self.image = gateway_url, image
        self.answers: list[tuple[int, int, str]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.gateway_url, timeout=60) as client:
            while not self.stop.is_set():
                reply = client.post("/v1/search", params={"k": 5}, files={"image": ("q.jpg", self.image)})
                answer = reply.json() if reply.status_code == 200 else {}
                self.answers.append(
                    (reply.status_code, len(answer.get("results", [])), answer.get("collection", ""))
                )


def test_retrain_reindex_and_switch_while_serving(
    model_path: Path, gcompris_catalogue: Path, tmp_path: Path
) -> None:
    catalogue = load_catalogue(small_catalogue(gcompris_catalogue, tmp_path / "images" / "gcompris"))
    settings = StackSettings(
        model_path=model_path,
        image_root=tmp_path / "images",
        state_dir=tmp_path / "stack",
        ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
    )
    search_addr = settings.address("search")
    with ServiceStack(settings) as stack:
        stack.wait_ready(timeout=120)
        targets = IngestTargets(
            settings.address("encoder"), search_addr, settings.address("influence"), collection="artworks-1"
        )
        assert asyncio.run(ingest_catalogue(catalogue, targets)).added == PAINTINGS
        old_version = asyncio.run(encoder_version(settings.address("encoder")))
        old_alias = model_alias("artworks", old_version)
        # The ingest recorded artworks-1's model; pointing the alias at it points the model alias too.
        assert asyncio.run(aliases(search_addr)) == {model_alias("artworks-1", old_version): "artworks-1"}
        asyncio.run(switch_alias(search_addr, "artworks", "artworks-1"))
        assert asyncio.run(aliases(search_addr))[old_alias] == "artworks-1"

        new_model = tmp_path / "retrained" / "model.onnx"
        report = retrain(
            RetrainSettings(
                catalogue=catalogue.root,
                base_model=model_path,
                output=new_model,
                labels="none",
                views=ViewSettings(rounds=1, kinds=("crop", "light", "phone_photo")),
                head=HeadSettings(hidden=64, epochs=30),
                cache_dir=None,
            )
        )
        assert report.training.final_loss < report.training.initial_loss

        load = QueryLoad(settings.gateway_url, catalogue.path_of(catalogue.entries[0]).read_bytes())
        load.start()
        try:
            result = asyncio.run(
                reindex(
                    ReindexSettings(
                        search_addr=search_addr,
                        source="artworks",
                        target="artworks-2",
                        alias="artworks",
                        model=new_model,
                        catalogues={catalogue.name: catalogue.root},
                    ),
                    log_dir=stack.log_dir,
                )
            )
            answered_before = len(load.answers)
            while load.is_alive() and len(load.answers) < answered_before + 3:  # some after the switch too
                load.join(0.1)
        finally:
            load.stop.set()
            load.join(60)

        assert result.switched and result.previous_collection == "artworks-1", result.summary()
        assert (result.read, result.stored, result.missing) == (PAINTINGS, PAINTINGS, [])
        new_version = result.model_version
        assert new_version.startswith(report.sidecar["version"] + "-d")  # + descriptor revision
        assert new_version != old_version and result.source_model_versions == [old_version]
        # Every query (all by the old model) searched the old model's collection, before and after the switch.
        assert load.answers and all(answer == (200, 5, old_alias) for answer in load.answers), load.answers
        new_alias = model_alias("artworks", new_version)
        model_aliases = {
            old_alias: "artworks-1",
            new_alias: "artworks-2",
            model_alias("artworks-1", old_version): "artworks-1",
            model_alias("artworks-2", new_version): "artworks-2",
        }
        assert asyncio.run(aliases(search_addr)) == {"artworks": "artworks-2", **model_aliases}

        some_id = catalogue.entries[3].id
        through_alias = asyncio.run(stored_vector(search_addr, "artworks", some_id))
        np.testing.assert_array_equal(
            through_alias, asyncio.run(stored_vector(search_addr, "artworks-2", some_id))
        )
        old = asyncio.run(stored_vector(search_addr, "artworks-1", some_id))
        assert through_alias.shape == old.shape and not np.allclose(through_alias, old, atol=1e-3)

        # Rollback: one switch back, the old collection was kept; each model alias still names its model's
        # collection.
        assert asyncio.run(switch_alias(search_addr, "artworks", "artworks-1")) == "artworks-2"
        np.testing.assert_array_equal(asyncio.run(stored_vector(search_addr, "artworks", some_id)), old)
        assert asyncio.run(aliases(search_addr)) == {"artworks": "artworks-1", **model_aliases}
        np.testing.assert_array_equal(
            asyncio.run(stored_vector(search_addr, new_alias, some_id)), through_alias
        )

        # Forward again (--switch-only --to artworks-2) puts back a model alias removed meanwhile.
        asyncio.run(remove_alias(search_addr, new_alias))
        forward = asyncio.run(rollback(search_addr, "artworks", "artworks-2"))
        assert forward.previous_collection == "artworks-1" and forward.model_aliases == {
            new_alias: "artworks-2"
        }
        assert asyncio.run(aliases(search_addr)) == {"artworks": "artworks-2", **model_aliases}
