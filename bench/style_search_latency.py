"""What the style vote's second search (art-style neighbours, services/gateway/query.py) costs a search.

In-process: the real encoder (onnxruntime), the embedded search engine and the curated influence graph on
their own gRPC servers, the demo catalogue ingested, plus 8,000 distractor points declared
`category` (random unit vectors: only their number and their label kind matter here). Two gateway apps over
the same services, STYLE_MIN_ART_NEIGHBOURS=0 (never searches again) and 11 (always does), are called in
turn with the same queries (60 % crops of 12 paintings, 6 rounds), so machine noise hits both alike.

    .venv/bin/python -m bench.style_search_latency
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from artsearch.grpc_client import open_channel
from artsearch.style_vote import CATEGORY, STYLE_LABELS_KEY
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.cli import sample_query_image
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from services.gateway.app import create_app

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/services"))
from gateway_support import gateway_client, gateway_config, in_process_services  # noqa: E402

DISTRACTORS = 8000
ROUNDS = 6


async def add_distractors(address: str, dimension: int, count: int) -> None:
    rng = np.random.default_rng(0)
    async with open_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        for start in range(0, count, 500):
            vectors = rng.standard_normal((min(500, count - start), dimension)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            items = [
                search_pb2.IndexedArtwork(
                    artwork=common_pb2.Artwork(
                        id=f"distractor-{start + i}",
                        style="computer/icons",
                        extra={STYLE_LABELS_KEY: CATEGORY},
                    ),
                    embedding=common_pb2.Embedding(values=vector.tolist()),
                )
                for i, vector in enumerate(vectors)
            ]
            await stub.Upsert(search_pb2.UpsertRequest(items=items), timeout=60)


async def main() -> None:
    catalogue = load_catalogue(ROOT / "data/catalogues/gcompris")
    model = ROOT / "models/efficientnet-lite0/model.onnx"
    with tempfile.TemporaryDirectory() as folder:
        async with in_process_services(model, Path(folder)) as addresses:
            targets = IngestTargets(
                addresses["ENCODER_ADDR"], addresses["SEARCH_ADDR"], addresses["INFLUENCE_ADDR"]
            )
            await ingest_catalogue(catalogue, targets)
            async with open_channel(addresses["SEARCH_ADDR"]) as channel:
                stub = search_pb2_grpc.SearchServiceStub(channel)
                first = await stub.Get(
                    search_pb2.GetRequest(ids=[catalogue.entries[0].id], with_embeddings=True)
                )
            await add_distractors(addresses["SEARCH_ADDR"], len(first.items[0].embedding.values), DISTRACTORS)
            queries = [
                sample_query_image(catalogue.root / entry.filename) for entry in catalogue.entries[:12]
            ]
            # Every round encodes its pictures again (no picture cache): the totals stay comparable.
            no_cache = {"QUERY_CACHE_ENTRIES": "0"}
            never = create_app(gateway_config(addresses, STYLE_MIN_ART_NEIGHBOURS="0", **no_cache))
            always = create_app(gateway_config(addresses, STYLE_MIN_ART_NEIGHBOURS="11", **no_cache))
            async with gateway_client(never) as never_client, gateway_client(always) as always_client:
                clients = {"never": never_client, "always": always_client}
                totals: dict[str, list[float]] = {name: [] for name in clients}
                steps: dict[str, list[float]] = {name: [] for name in clients}
                for _ in range(ROUNDS):
                    for query in queries:
                        for name, client in clients.items():
                            started = time.perf_counter()
                            reply = await client.post("/v1/search", files={"image": query})
                            totals[name].append((time.perf_counter() - started) * 1000)
                            steps[name].append(reply.json()["timings_ms"].get("influence", 0.0))
    for name in clients:
        print(
            f"second search {name}: search p50 {statistics.median(totals[name]):.1f} ms, "
            f"influence step (with the second search beside it) p50 {statistics.median(steps[name]):.1f} ms, "
            f"{len(totals[name])} queries"
        )


if __name__ == "__main__":
    asyncio.run(main())
