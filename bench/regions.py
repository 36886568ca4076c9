"""What region descriptors cost and buy (docs/search.md, docs/ingest.md, "Regions"): the encoder, search and
influence services as processes (embedded defaults) on a fresh state folder; the demo catalogue and
distractor catalogue folders ingested twice with `artsearch ingest`, into one collection with the region
grid and into one without (`--regions off`), each timed; the size of each collection (artworks, bytes
on disk); then the evaluation's tiny_detail photos of the demo paintings (its DEVELOPMENT seeds: this
measures, it tunes nothing on the report seeds) searched in each collection with and without region
matching: top-1, top-5 and the search call's latency (p50, p90), through the search service's gRPC.

    .venv/bin/python bench/regions.py --distractors /tmp/openclipart [--distractors DIR ...]

Writes bench/results/regions.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import logging
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image  # noqa: E402

from artsearch.grpc_client import open_channel  # noqa: E402
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc  # noqa: E402
from artsearch_tools.catalogue.folder import load_catalogue  # noqa: E402
from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, visitor_photos  # noqa: E402
from artsearch_tools.launcher import ServiceStack, StackSettings, free_ports  # noqa: E402

log = logging.getLogger("bench.regions")
SERVICES = ("encoder", "search", "influence")
COLLECTIONS = {"whole_only": ["--regions", "off"], "with_regions": []}


def ingest(settings: StackSettings, folder: Path, collection: str, extra: list[str], report: Path) -> dict:
    command = [
        sys.executable, "-m", "artsearch_tools.cli", "ingest", str(folder.resolve()),
        "--collection", collection, "--no-state", "--report", str(report),
        "--encoder", settings.address("encoder"), "--search", settings.address("search"),
        "--influence", settings.address("influence"), *extra,
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO_ROOT, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    summary = json.loads(report.read_text())
    return {
        "folder": folder.name,
        "added": summary["added"],
        "encoded": summary["encoded"],
        "regions_encoded": summary.get("regions_encoded", 0),
        "seconds": round(seconds, 1),
    }


def detail_photos(catalogue_dir: Path) -> tuple[list[bytes], list[str]]:
    catalogue = load_catalogue(catalogue_dir)
    photos, labels = [], []
    for entry in catalogue.entries:
        with Image.open(catalogue.path_of(entry)) as opened:
            painting = opened.convert("RGB")
        for seed in DEVELOPMENT_SEEDS:
            for photo in visitor_photos(painting, seed=seed, key=entry.id, kinds=("tiny_detail",)):
                buffer = io.BytesIO()
                photo.image.save(buffer, "JPEG", quality=92)
                photos.append(buffer.getvalue())
                labels.append(entry.id)
    return photos, labels


async def measure_queries(settings: StackSettings, photos: list[bytes], labels: list[str]) -> dict:
    async with open_channel(settings.address("encoder")) as channel:
        encoder = encoder_pb2_grpc.EncoderServiceStub(channel)
        embeddings = []
        for start in range(0, len(photos), 16):
            reply = await encoder.Encode(
                encoder_pb2.EncodeRequest(images=photos[start : start + 16]), timeout=120
            )
            embeddings.extend(reply.embeddings)
    results: dict[str, Any] = {}
    async with open_channel(settings.address("search")) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        for collection in COLLECTIONS:
            for match_regions in (False, True):
                latencies, top1, top5 = [], 0, 0
                for embedding, label in zip(embeddings, labels, strict=True):
                    request = search_pb2.SearchRequest(
                        collection=collection, query=embedding, limit=100, match_regions=match_regions
                    )
                    started = time.perf_counter()
                    reply = await search.Search(request, timeout=30)
                    latencies.append((time.perf_counter() - started) * 1000)
                    found = [hit.artwork.id for hit in reply.hits]
                    top1 += found[:1] == [label]
                    top5 += label in found[:5]
                latencies.sort()
                results[f"{collection}/match_regions={match_regions}"] = {
                    "queries": len(labels),
                    "top1": round(top1 / len(labels), 3),
                    "top5": round(top5 / len(labels), 3),
                    "search_ms_p50": round(statistics.median(latencies), 2),
                    "search_ms_p90": round(latencies[int(0.9 * (len(latencies) - 1))], 2),
                }
                log.info(
                    "%s match_regions=%s: %s",
                    collection,
                    match_regions,
                    results[f"{collection}/match_regions={match_regions}"],
                )
    return results


def bytes_on_disk(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


async def collection_sizes(settings: StackSettings) -> dict:
    sizes = {}
    async with open_channel(settings.address("search")) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        for collection in COLLECTIONS:
            count = await search.Count(search_pb2.CountRequest(collection=collection), timeout=30)
            folder = settings.state_dir / "search" / "edge" / collection
            sizes[collection] = {"artworks": count.count, "bytes_on_disk": bytes_on_disk(folder)}
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalogue", type=Path, default=REPO_ROOT / "data/catalogues/gcompris")
    parser.add_argument("--distractors", type=Path, action="append", default=[])
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--state-dir", type=Path, default=REPO_ROOT / "var/bench-regions")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/regions.json")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    state = args.state_dir.resolve()
    shutil.rmtree(state, ignore_errors=True)
    state.mkdir(parents=True)
    ports = dict(zip(("encoder", "search", "influence", "gateway"), free_ports(4), strict=True))
    settings = StackSettings(model_path=args.model.resolve(), state_dir=state, ports=ports)
    stack = ServiceStack(settings)
    photos, labels = detail_photos(args.catalogue)
    result: dict[str, Any] = {"catalogues": [args.catalogue.name, *(d.name for d in args.distractors)]}
    try:
        stack.start(SERVICES)
        time.sleep(8)  # the encoder loads its model; ingest retries until it answers anyway
        ingests: dict[str, list] = {}
        for collection, extra in COLLECTIONS.items():
            ingests[collection] = [
                ingest(settings, folder, collection, extra, state / f"{collection}-{folder.name}.json")
                for folder in (args.catalogue, *args.distractors)
            ]
            total = sum(step["seconds"] for step in ingests[collection])
            log.info("ingested %s in %.0f s: %s", collection, total, ingests[collection])
        result["ingest"] = ingests
        result["ingest_seconds"] = {
            c: round(sum(s["seconds"] for s in steps), 1) for c, steps in ingests.items()
        }
        time.sleep(10)  # the background index build after the bulk load
        result["collections"] = asyncio.run(collection_sizes(settings))
        result["tiny_detail_development_seeds"] = asyncio.run(measure_queries(settings, photos, labels))
    finally:
        stack.stop()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
