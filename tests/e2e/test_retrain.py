"""Retrain, re-index and switch, end to end: 20 GCompris paintings ingested into `artworks-1` behind the alias
`artworks`, a head trained on them, every artwork re-encoded by an encoder started on the new model into
`artworks-2`, the alias switched — while the gateway keeps answering queries through the alias."""

from __future__ import annotations

import asyncio
import csv
import shutil
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from artsearch.catalogue.folder import load_catalogue
from artsearch.grpc_client import open_channel
from artsearch.ingest import IngestTargets, ingest_catalogue
from artsearch.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from artsearch.training.features import ViewSettings
from artsearch.training.head import HeadSettings
from artsearch.training.reindex import ReindexSettings, reindex, switch_alias
from artsearch.training.retrain import RetrainSettings, retrain
from artsearch.v1 import search_pb2, search_pb2_grpc

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
    return {alias.alias: alias.collection for alias in reply.aliases}


class QueryLoad(threading.Thread):
    """Queries the gateway without pause until stopped; records each answer's status and result count."""

    def __init__(self, gateway_url: str, image: bytes) -> None:
        super().__init__(daemon=True)
        self.gateway_url, self.image = gateway_url, image
        self.answers: list[tuple[int, int]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.gateway_url, timeout=60) as client:
            while not self.stop.is_set():
                reply = client.post("/v1/search", params={"k": 5}, files={"image": ("q.jpg", self.image)})
                count = len(reply.json().get("results", [])) if reply.status_code == 200 else 0
                self.answers.append((reply.status_code, count))


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
        asyncio.run(switch_alias(search_addr, "artworks", "artworks-1"))

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
        assert result.model_version.startswith(report.sidecar["version"] + "-d")  # + descriptor revision
        assert load.answers and all(answer == (200, 5) for answer in load.answers), load.answers
        assert asyncio.run(aliases(search_addr)) == {"artworks": "artworks-2"}

        some_id = catalogue.entries[3].id
        through_alias = asyncio.run(stored_vector(search_addr, "artworks", some_id))
        np.testing.assert_array_equal(
            through_alias, asyncio.run(stored_vector(search_addr, "artworks-2", some_id))
        )
        old = asyncio.run(stored_vector(search_addr, "artworks-1", some_id))
        assert through_alias.shape == old.shape and not np.allclose(through_alias, old, atol=1e-3)

        # Rollback: one switch back, the old collection was kept.
        assert asyncio.run(switch_alias(search_addr, "artworks", "artworks-1")) == "artworks-2"
        np.testing.assert_array_equal(asyncio.run(stored_vector(search_addr, "artworks", some_id)), old)
