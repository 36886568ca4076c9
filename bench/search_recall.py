"""How many HNSW candidates (`SEARCH_HNSW_EF`) the search needs on real visitor-photo queries: for each
engine shard of a collection the visitor-photo evaluation built (6,066 artworks and their 121,320 region
points, float16), the share of queries whose top-1, and the share of the exact top-`limit` (recall), that the
graph search finds at each ef, with its p50 time, against the exact search measured in the same run.

The queries are the whole-photo descriptors of a sample of the evaluation's visitor photos (every kind),
made by the exported model as the encoder makes them (no re-weighting). Limits: 100 and 10 on the artworks
(the gateway's candidate pool, a page), 64 on the region points (`region_scores.REGION_LIST_MAX`).

    python -m bench.visitor_photos --state-dir var/eval-photos/state --keep-state   # once: the index
    python -m bench.search_recall --state-dir var/eval-photos/state [--photos 240]

Writes bench/results/search_recall.json. Opens the shards read-only in this process: stop any service
using that state first.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from artsearch_tools.evaluation.visitor_search import generator_digest
from bench.visitor_photos import REPO_ROOT, code_version

EFS = (100, 200, 300, 400, 600, 800)
# (engine shard, limit): the artworks' at the gateway's pool and a page; the region points' list.
SEARCHES = (("artworks", 100), ("artworks", 10), ("regions", 64))
BATCH = 16


def photo_descriptors(cache: Path, count: int, model: Path) -> np.ndarray:
    """The whole-photo descriptors of `count` visitor photos drawn (seeded) from the evaluation's cache, made
    by the encoder service's own backend and descriptor code, in process."""
    from services.encoder.aspect_builder import DescriptorAssembler
    from services.encoder.backends import OnnxRuntimeBackend
    from services.encoder.images import open_image

    photos = sorted(cache.glob("*/*/*.jpg"))
    if not photos:
        raise SystemExit(f"no visitor photos in {cache}: run `python -m bench.visitor_photos` first")
    random.Random(1).shuffle(photos)
    backend = OnnxRuntimeBackend(model)
    assemble = DescriptorAssembler(backend.info)
    size = backend.info.input_size
    rows: list[np.ndarray] = []
    chosen = photos[:count]
    for start in range(0, len(chosen), BATCH):
        batch = chosen[start : start + BATCH]
        pixels = np.stack(
            [open_image(path.read_bytes(), size=size, max_pixels=50_000_000).decode() for path in batch]
        )
        rows.extend(assemble(asyncio.run(backend.embed(pixels)), pixels))
    return np.stack(rows)


def timed_searches(shard: Any, queries: np.ndarray, limit: int, params: Any) -> tuple[list[list[str]], float]:
    """Each query's ids, best first, and the p50 time of one search (ms)."""
    import qdrant_edge as edge

    found, times = [], []
    for query in queries:
        request = edge.QueryRequest(
            limit=limit, query=edge.Query.Nearest(query.tolist()), with_payload=False, params=params
        )
        started = time.perf_counter()
        points = shard.query(request)
        times.append((time.perf_counter() - started) * 1000)
        found.append([str(point.id) for point in points])
    return found, statistics.median(times)


def measure_shard(folder: Path, queries: np.ndarray, limit: int) -> dict[str, Any]:
    import qdrant_edge as edge

    shard = edge.EdgeShard.load(str(folder))
    try:
        exact_params = edge.SearchParams(exact=True)
        timed_searches(shard, queries[:BATCH], limit, exact_params)  # pages the vectors in
        exact, exact_ms = timed_searches(shard, queries, limit, exact_params)
        curve = []
        for ef in EFS:
            found, ms = timed_searches(shard, queries, limit, edge.SearchParams(hnsw_ef=ef))
            pairs = list(zip(found, exact, strict=True))
            curve.append(
                {
                    "ef": ef,
                    "p50_ms": round(ms, 2),
                    "top1_equals_exact": round(float(np.mean([f[:1] == e[:1] for f, e in pairs])), 3),
                    f"recall_at_{limit}": round(
                        float(np.mean([len(set(f) & set(e)) / max(1, len(e)) for f, e in pairs])), 4
                    ),
                }
            )
        return {
            "points": int(shard.info().points_count),
            "limit": limit,
            "exact_p50_ms": round(exact_ms, 2),
            "hnsw": curve,
        }
    finally:
        shard.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--state-dir", type=Path, required=True, help="a bench.visitor_photos --keep-state folder"
    )
    parser.add_argument("--collection", default="artworks")
    parser.add_argument("--photos", type=int, default=240)
    parser.add_argument("--cache-dir", type=Path, default=REPO_ROOT / ".cache/visitor-photos")
    parser.add_argument("--model", type=Path, default=REPO_ROOT / "models/efficientnet-lite0/model.onnx")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "bench/results/search_recall.json")
    args = parser.parse_args(argv)
    shard_folder = args.state_dir / "search" / "edge" / args.collection / "shard"
    if not (shard_folder / "regions").is_dir():
        raise SystemExit(f"{shard_folder} has no region shard: build the state with this checkout")
    queries = photo_descriptors(args.cache_dir / generator_digest(), args.photos, args.model)
    report: dict[str, Any] = {
        "what": "HNSW search against exact search on real visitor-photo descriptors, per engine shard and ef",
        "code": code_version(REPO_ROOT),
        "queries": len(queries),
        "machine": f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.1f}",
    }
    for name, limit in SEARCHES:
        report[f"{name}_limit_{limit}"] = measure_shard(shard_folder / name, queries, limit)
        print(json.dumps({name: report[f"{name}_limit_{limit}"]}), flush=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
