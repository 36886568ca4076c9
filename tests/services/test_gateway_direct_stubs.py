"""The load test's in-process yardstick (bench/in_process.py) is the same query work as the stack: the
gateway over the very same servicers, once through gRPC and once through `DirectStub`s, gives the same
answers -- results, scores, explanations and errors."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from gateway_support import catalogue_subset, gateway_client, gateway_config
from PIL import Image

from artsearch.grpc_server import GrpcServiceServer
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from bench.in_process import DirectStub
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.server import EncoderService, encoder_registration
from services.gateway.app import create_app
from services.gateway.downstream import ServiceStubs
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration
from services.search.edge_store import EdgeArtworkStore
from services.search.server import SearchService, search_registration

PAINTINGS = (
    "hokusai-the-great-wave-off-kanagawa",
    "van-gogh-bedroom-in-arles",
    "van-gogh-cafe-terrace-at-night",
    "cassatt-summertime",
    "degas-the-dance-class",
)


def photo_of(path: Path) -> bytes:
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    out = io.BytesIO()
    picture.crop((width // 10, height // 10, width, height)).save(out, "JPEG", quality=80)
    return out.getvalue()


def comparable(answer: dict) -> dict:
    """The answer without what differs between any two calls (timings, request ids, cursor tokens)."""
    different = ("timings_ms", "request_id", "next_cursor")
    return {key: value for key, value in answer.items() if key not in different}


@pytest.mark.asyncio(loop_scope="session")
async def test_the_gateway_gives_the_same_answers_through_direct_stubs_as_through_grpc(
    model_path: Path, gcompris_catalogue: Path, tmp_path: Path
):
    catalogue = catalogue_subset(gcompris_catalogue, PAINTINGS)
    encoder = EncoderService(OnnxRuntimeBackend(model_path), max_batch_images=16, max_image_pixels=50_000_000)
    store = await EdgeArtworkStore.open(tmp_path / "search")
    graph = await open_influence_graph(InfluenceConfig(state_dir=tmp_path / "influence"))
    search, influence = SearchService(store), InfluenceServicer(graph, 10)
    servers = {
        "ENCODER_ADDR": GrpcServiceServer([encoder_registration(encoder)]),
        "SEARCH_ADDR": GrpcServiceServer([search_registration(search)]),
        "INFLUENCE_ADDR": GrpcServiceServer([registration(influence)]),
    }
    try:
        addresses = {name: f"127.0.0.1:{await server.start()}" for name, server in servers.items()}
        targets = IngestTargets(
            addresses["ENCODER_ADDR"], addresses["SEARCH_ADDR"], addresses["INFLUENCE_ADDR"]
        )
        report = await ingest_catalogue(catalogue, targets)
        assert report.added == len(PAINTINGS)
        config = gateway_config(addresses, QUERY_CACHE_ENTRIES="0", IMAGE_ROOT=str(tmp_path))
        direct = ServiceStubs(DirectStub(encoder), DirectStub(search), DirectStub(influence))
        answers = {}
        for name, app in (("grpc", create_app(config)), ("direct", create_app(config, direct))):
            async with gateway_client(app) as client:
                photo = photo_of(catalogue.path_of(catalogue.entries[0]))
                found = await client.post("/v1/search", params={"k": 5}, files={"image": ("p.jpg", photo)})
                first_id = found.json()["results"][0]["id"]
                similar = await client.get(f"/v1/artworks/{first_id}/similar", params={"k": 5})
                missing = await client.get("/v1/artworks/no-such-artwork/similar")
                answers[name] = (found, similar, missing)
    finally:
        for server in servers.values():
            await server.stop(0)
        await encoder.close()
        await store.close()
        await graph.close()
    for grpc_answer, direct_answer in zip(answers["grpc"], answers["direct"], strict=True):
        assert direct_answer.status_code == grpc_answer.status_code
        assert comparable(direct_answer.json()) == comparable(grpc_answer.json())
    assert [answer.status_code for answer in answers["direct"]] == [200, 200, 404]
