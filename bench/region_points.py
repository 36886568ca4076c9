"""Region matching at scale on a synthetic collection, through the real `EdgeArtworkStore` API: the
region-points layout of this checkout against the MaxSim-multivector layout it replaced (services/search
at the commit given by --old-commit, unpacked with `git archive` into a temporary folder and run in a
child process with the same code below).

The collection: --artworks artworks of --regions regions each, --dimension-d, stored as float16 (the
store's default), vectors clustered like real descriptors (200 centres; an artwork's whole vector and each
region near one centre, regions near other centres than the whole). Queries: half "details" (near one
region of a random artwork), half "whole pictures" (near a random artwork's whole vector), with noise.

Measured per layout: ingest time (upserts, then the HNSW build of everything, timed apart), bytes on disk
of the collection, search p50/p90 with match_regions (margin 0.06) and without, at limit 10 and 100 (the
gateway's candidate pool), and recall: the share of queries whose top-1, and whose top-10/100 (as a set),
equal the exact ones computed by numpy on the same float16-rounded unit vectors (best of whole and best
region less the margin), and recall@limit.

    .venv/bin/python bench/region_points.py [--artworks 3000] [--queries 200] [--old-commit HEAD]

Writes bench/results/region_points.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
MARGIN = 0.06
LIMITS = (10, 100)  # a page; the gateway's candidate pool
CENTRES = 200
NOISE = 0.7
QUERY_NOISE = 0.5


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=-1, keepdims=True)


def collection(artworks: int, regions: int, dimension: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(whole vectors (n, d), region vectors (n, r, d)), float32, clustered around shared centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CENTRES, dimension)).astype(np.float32)
    whole = np.empty((artworks, dimension), dtype=np.float32)
    parts = np.empty((artworks, regions, dimension), dtype=np.float32)
    for i in range(artworks):
        whole[i] = centres[i % CENTRES] + NOISE * rng.normal(size=dimension)
        parts[i] = centres[(i * 7 + np.arange(regions)) % CENTRES] + NOISE * rng.normal(
            size=(regions, dimension)
        )
    return whole, parts


def queries(whole: np.ndarray, parts: np.ndarray, count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed + 1)
    rows = []
    for k in range(count):
        artwork = int(rng.integers(len(whole)))
        near = parts[artwork, int(rng.integers(parts.shape[1]))] if k % 2 == 0 else whole[artwork]
        rows.append(unit(near) + QUERY_NOISE * unit(rng.normal(size=near.shape[0]).astype(np.float32)))
    return unit(np.stack(rows)).astype(np.float32)


def as_stored(rows: np.ndarray) -> np.ndarray:
    """Unit vectors rounded to float16, as the engine stores them."""
    return unit(rows).astype(np.float16).astype(np.float32)


def exact_top(stored_whole: np.ndarray, stored_parts: np.ndarray, query: np.ndarray, limit: int) -> list[int]:
    """The exact top-`limit` artworks by max(whole cosine, best region cosine - margin)."""
    scores = np.maximum(stored_whole @ query, (stored_parts @ query).max(axis=1) - MARGIN)
    return [int(i) for i in np.argsort(-scores)[:limit]]


async def searched(store: Any, asked: np.ndarray, exact: list[list[int]], limit: int, regions: bool) -> dict:
    """Search latency (p50, p90 of the store's `search` call) and, with `regions`, recall against `exact`:
    the share of queries whose top-1 is the exact top-1, whose top-`limit` is the exact one as a set, and
    the mean share of the exact top-`limit` found."""
    for query in asked[:5]:  # warm-up
        await store.search("", query, limit=limit, match_regions=regions, region_margin=MARGIN)
    times, top1, whole_page, overlap = [], 0, 0, 0.0
    for query, truth in zip(asked, exact, strict=True):
        begun = time.perf_counter()
        hits = await store.search("", query, limit=limit, match_regions=regions, region_margin=MARGIN)
        times.append((time.perf_counter() - begun) * 1e3)
        found = [int(hit.artwork.id[1:]) for hit in hits]
        top1 += bool(found) and found[0] == truth[0]
        whole_page += set(found) == set(truth[:limit])
        overlap += len(set(found) & set(truth[:limit])) / limit
    times.sort()
    result: dict[str, Any] = {
        "p50_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))], 2),
    }
    if regions:
        result["recall_top1"] = round(top1 / len(asked), 3)
        result[f"recall_top{limit}_set"] = round(whole_page / len(asked), 3)
        result[f"recall_at_{limit}"] = round(overlap / len(asked), 4)
    return result


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Runs in the checkout whose `services` is first on sys.path."""
    from services.search.edge_store import EdgeArtworkStore, EdgeSettings
    from services.search.store import ArtworkRecord, IndexedArtwork

    whole, parts = collection(args.artworks, args.regions, args.dimension, args.seed)
    asked = queries(whole, parts, args.queries, args.seed)
    folder = Path(tempfile.mkdtemp(prefix="region_points_"))
    settings = EdgeSettings(index_delay_s=3600.0)  # no background build: the build is timed below
    store = await EdgeArtworkStore.open(folder, settings=settings, default_collection="bench")
    result: dict[str, Any] = {}
    try:
        started = time.perf_counter()
        for first in range(0, args.artworks, 100):
            batch = [
                IndexedArtwork(ArtworkRecord(id=f"a{i}", artist=f"artist {i % 50}"), whole[i], parts[i])
                for i in range(first, min(args.artworks, first + 100))
            ]
            await store.upsert("", batch)
        upserted = time.perf_counter()
        await store.build_index("")
        built = time.perf_counter()
        points, indexed = await store.index_status("")
        result["ingest"] = {
            "upsert_s": round(upserted - started, 1),
            "index_build_s": round(built - upserted, 1),
            "engine_points": points,
            "indexed_vectors": indexed,
        }
        result["disk_bytes"] = sum(
            (Path(dirpath) / name).stat().st_blocks * 512
            for dirpath, _, names in os.walk(folder / "bench")
            for name in names
        )
        result["artworks_counted"] = await store.count("")
        stored_whole, stored_parts = as_stored(whole), as_stored(parts)
        exact = [exact_top(stored_whole, stored_parts, query, max(LIMITS)) for query in asked]
        for limit in LIMITS:
            for flag in (True, False):
                key = f"{'match_regions' if flag else 'whole_only'}_limit_{limit}"
                result[key] = await searched(store, asked, exact, limit, flag)
    finally:
        await store.close()
        shutil.rmtree(folder, ignore_errors=True)
    return result


def run_layout(source: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`measure` in a child process importing `services` from `source`."""
    command = [
        sys.executable, str(Path(__file__).resolve()), "--measure", "--source", str(source),
        "--artworks", str(args.artworks), "--regions", str(args.regions), "--dimension", str(args.dimension),
        "--queries", str(args.queries), "--seed", str(args.seed),
    ]  # fmt: skip
    done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=source)
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--artworks", type=int, default=3000)
    parser.add_argument("--regions", type=int, default=20)
    parser.add_argument("--dimension", type=int, default=2664)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--old-commit", default="", help="the multivector layout's commit (none: skip)")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--source", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        sys.path.insert(0, str(args.source))
        print(json.dumps(asyncio.run(measure(args))))
        return
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    changed = subprocess.run(
        ["git", "status", "--porcelain", "services/search"], cwd=REPO_ROOT, capture_output=True, text=True
    ).stdout.strip()
    commit += "+uncommitted services/search changes" if changed else ""
    report: dict[str, Any] = {
        "setup": {
            "artworks": args.artworks,
            "regions_per_artwork": args.regions,
            "dimension": args.dimension,
            "datatype": "float16",
            "queries": args.queries,
            "limits": list(LIMITS),
            "margin": MARGIN,
            "machine": f"{os.cpu_count()} cores",
            "commit": commit,
        },
        "region_points": run_layout(REPO_ROOT, args),
    }
    if args.old_commit:
        with tempfile.TemporaryDirectory(prefix="region_points_old_") as old:
            archive = subprocess.run(
                ["git", "archive", args.old_commit, "services", "artsearch"],
                cwd=REPO_ROOT, capture_output=True, check=True,
            )  # fmt: skip
            subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
            report["multivector"] = {"commit": args.old_commit, **run_layout(Path(old), args)}
    out = REPO_ROOT / "bench" / "results" / "region_points.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
