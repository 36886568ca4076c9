"""Search speed and quality: the embedded engine (qdrant-edge) against exact search, at 10k and 100k.

`python -m bench.search` (what `make bench` runs after the encoder benchmark):
1. vectors: real image descriptors grown to each catalogue size (see bench/search_vectors.py), queries
   held out; cached under .cache/bench/;
2. yardstick, in this process: exact search, a float32 matrix-vector product and a top-10 selection in
   numpy over the whole catalogue (and the ground truth for recall);
3. embedded, in a worker process of its own so that its memory is the store's: an `EdgeArtworkStore`
   with the service's default settings, loaded through its `upsert` in requests of 256 artworks, its HNSW
   index built (the child process the service would run in the background), then one query at a time:
   unfiltered, a style any-of filter matching ~10 % of the catalogue, a year range matching ~10 %, and
   both together (~1 %);
4. optionally (--with-qdrant-local) the same for qdrant-client's local mode, the previous default.

recall@10 counts a returned artwork as correct when its exact similarity reaches the 10th best exact
similarity (less 1e-6): duplicated images in the real set make exact ties, and any of the tied artworks is
a right answer. Latencies are medians and 99th percentiles over the held-out queries, after a warm-up.
Results go to bench/results/search.json.
"""

from __future__ import annotations

import os

# The exact yardstick runs one query at a time: on 2 shared cores OpenBLAS's threads spin against each
# other and one thread is faster and steadier (measured: 2.6 vs 8.8 ms p50 at 10k x 1280). Set before
# numpy is imported, which reads it once.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import asyncio
import json
import logging
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from bench.search_vectors import CACHE_DIR, NEIGHBOURS, NOISE, BenchVectors, bench_vectors

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models/efficientnet-lite0/model.onnx"
DEFAULT_CATALOGUE = REPO_ROOT / "data/catalogues/gcompris"
DEFAULT_OUTPUT = REPO_ROOT / "bench/results/search.json"
TOP_K = 10
UPSERT_REQUEST = 256
WARMUP_QUERIES = 20
YEAR_RANGE = (1850, 1910)  # ~10 % of the uniform [1400, 2020] years
TARGET_STYLE_SHARE = 0.10

log = logging.getLogger("bench.search")


@dataclass(frozen=True)
class QueryFilter:
    """A filter both as the store takes it and as a mask over the catalogue (for the ground truth)."""

    name: str
    styles: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None

    def mask(self, vectors: BenchVectors) -> np.ndarray:
        keep = np.ones(len(vectors.styles), dtype=bool)
        if self.styles:
            keep &= np.isin(vectors.styles, self.styles)
        if self.year_min is not None:
            keep &= vectors.years >= self.year_min
        if self.year_max is not None:
            keep &= vectors.years <= self.year_max
        return keep


def style_filter_styles(styles: np.ndarray, share: float = TARGET_STYLE_SHARE) -> tuple[str, ...]:
    """Labels whose artworks together make about `share` of the catalogue: the labels closest to `share`
    on their own are taken first, without going past 1.3 x share."""
    labels, counts = np.unique(styles, return_counts=True)
    fractions = dict(zip(labels.tolist(), (counts / counts.sum()).tolist(), strict=True))
    chosen: list[str] = []
    total = 0.0
    for label in sorted(fractions, key=lambda name: abs(fractions[name] - share)):
        if total + fractions[label] <= 1.3 * share:
            chosen.append(label)
            total += fractions[label]
        if total >= 0.8 * share:
            break
    return tuple(sorted(chosen))


def query_filters(vectors: BenchVectors) -> list[QueryFilter]:
    styles = style_filter_styles(vectors.styles)
    return [
        QueryFilter("none"),
        QueryFilter("style", styles=styles),
        QueryFilter("year", year_min=YEAR_RANGE[0], year_max=YEAR_RANGE[1]),
        QueryFilter("style_and_year", styles=styles, year_min=YEAR_RANGE[0], year_max=YEAR_RANGE[1]),
    ]


# --- exact search: yardstick and ground truth --------------------------------------------------------


@dataclass(frozen=True)
class Truth:
    kth_score: np.ndarray  # [q] the 10th best exact similarity per query
    vectors: np.ndarray  # the catalogue, to score what an engine returns


def exact_top_k(matrix: np.ndarray, query: np.ndarray, k: int = TOP_K) -> np.ndarray:
    scores = matrix @ query
    top = np.argpartition(-scores, k)[:k]
    return top[np.argsort(-scores[top])]


def exact_latency(vectors: np.ndarray, queries: np.ndarray) -> dict[str, float]:
    for query in queries[:WARMUP_QUERIES]:
        exact_top_k(vectors, query)
    timings = []
    for query in queries:
        started = time.perf_counter()
        exact_top_k(vectors, query)
        timings.append(time.perf_counter() - started)
    return latency_summary(timings)


def ground_truth(vectors: BenchVectors, query_filter: QueryFilter) -> Truth:
    mask = query_filter.mask(vectors)
    subset = vectors.vectors[mask]
    kth = np.array([np.sort(subset @ q)[-TOP_K] for q in vectors.queries], dtype=np.float32)
    return Truth(kth, vectors.vectors)


def recall_at_k(truth: Truth, queries: np.ndarray, returned: Sequence[Sequence[int]]) -> float:
    """Share of returned results whose exact similarity reaches the query's 10th best (ties count)."""
    correct = 0
    for index, rows in enumerate(returned):
        if rows:
            scores = truth.vectors[list(rows)] @ queries[index]
            correct += int(np.sum(scores >= truth.kth_score[index] - 1e-6))
    return correct / (TOP_K * len(returned))


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    millis = np.asarray(seconds) * 1000
    return {
        "p50_ms": round(float(np.median(millis)), 3),
        "p99_ms": round(float(np.percentile(millis, 99)), 3),
    }


# --- the embedded engine, in a worker process ---------------------------------------------------------


def memory_mb() -> dict[str, float]:
    """This process's resident memory now and its peak since start (or since `reset_peak_memory`)."""
    status = Path("/proc/self/status").read_text().splitlines()
    fields = {
        line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith(("VmRSS", "VmHWM"))
    }
    return {"rss_mb": round(fields["VmRSS"] / 1024, 1), "peak_rss_mb": round(fields["VmHWM"] / 1024, 1)}


def folder_bytes(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def reset_peak_memory() -> None:
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM starts again from VmRSS


async def run_engine(engine: str, arrays: Path, folder: Path, filters: list[QueryFilter]) -> dict[str, Any]:
    """Loads the catalogue in `arrays` into a store of `engine`, indexes it and runs the queries."""
    from artsearch.config import Env
    from services.search.config import edge_settings_from_env
    from services.search.edge_store import EdgeArtworkStore
    from services.search.qdrant_store import QdrantArtworkStore

    # The service's settings (its defaults, or the SEARCH_* variables set for this run), except that the
    # bulk load is indexed once, explicitly, at its end.
    store: Any
    if engine == "edge":
        settings = replace(edge_settings_from_env(Env(), upsert_batch=256), index_delay_s=3600.0)
        store = await EdgeArtworkStore.open(folder, settings=settings)
    else:
        store = await QdrantArtworkStore.open(path=folder)
    queries = np.load(arrays / "queries.npy")
    result: dict[str, Any] = await load_catalogue(store, arrays, dimension=queries.shape[1])
    result["load_peak_rss_mb"] = memory_mb()["peak_rss_mb"]
    reset_peak_memory()
    if engine == "edge":
        started = time.perf_counter()
        await store.build_index("")
        result["index_build_s"] = round(time.perf_counter() - started, 1)
        children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        result["index_build_peak_rss_mb"] = round(children / 1024, 1)
        result["indexed_points"] = (await store.index_status(""))[1]
    result.update(await run_queries(store, queries, filters))
    # After the queries: the steady state of a serving store, and its peak since the bulk load.
    result.update(memory_mb())
    result["disk_mb"] = round(await asyncio.to_thread(folder_bytes, folder) / 2**20, 1)
    await store.close()
    return result


async def load_catalogue(store: Any, arrays: Path, dimension: int) -> dict[str, Any]:
    """Upserts the catalogue in requests of UPSERT_REQUEST artworks. The vectors are read from disk one
    request at a time (not mapped), so that none of them count in this process's memory but the store's."""
    from services.search.store import ArtworkRecord, IndexedArtwork

    styles = np.load(arrays / "styles.npy")
    years = np.load(arrays / "years.npy")
    count = len(styles)
    row_bytes = dimension * np.dtype(np.float32).itemsize
    started = time.perf_counter()
    for start in range(0, count, UPSERT_REQUEST):
        rows = min(UPSERT_REQUEST, count - start)
        block = np.fromfile(
            arrays / "vectors.f32", dtype=np.float32, count=rows * dimension, offset=start * row_bytes
        ).reshape(rows, dimension)
        batch = [
            IndexedArtwork(
                ArtworkRecord(id=f"b{i}", style=str(styles[i]), year=int(years[i]), catalogue="bench"),
                block[i - start],
            )
            for i in range(start, start + rows)
        ]
        await store.upsert("", batch)
    return {"upserts_per_s": round(count / (time.perf_counter() - started), 1)}


async def run_queries(store: Any, queries: np.ndarray, filters: list[QueryFilter]) -> dict[str, Any]:
    """One query at a time per filter: latencies and the returned catalogue rows."""
    from services.search.store import ArtworkFilter

    for query in queries[:WARMUP_QUERIES]:
        await store.search("", query, TOP_K)
    measured: dict[str, Any] = {}
    for query_filter in filters:
        artwork_filter = ArtworkFilter(
            styles=query_filter.styles, year_min=query_filter.year_min, year_max=query_filter.year_max
        )
        timings, returned = [], []
        for query in queries:
            began = time.perf_counter()
            hits = await store.search("", query, TOP_K, filter=artwork_filter)
            timings.append(time.perf_counter() - began)
            returned.append([int(hit.artwork.id[1:]) for hit in hits])
        measured[query_filter.name] = {**latency_summary(timings), "returned": returned}
    return measured


def worker_main(engine: str, arrays: Path, filters_json: str) -> int:
    filters = [
        QueryFilter(**{k: tuple(v) if k == "styles" else v for k, v in f.items()})
        for f in json.loads(filters_json)
    ]
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix=f"{engine}-") as folder:
        result = asyncio.run(run_engine(engine, arrays, Path(folder), filters))
    print(json.dumps(result))
    return 0


def measure_engine(engine: str, vectors: BenchVectors, filters: list[QueryFilter]) -> dict[str, Any]:
    """Runs the worker for `engine` on the catalogue; its report, with recall added per filter."""
    with tempfile.TemporaryDirectory(dir=CACHE_DIR, prefix="arrays-") as folder:
        arrays = Path(folder)
        vectors.vectors.astype(np.float32).tofile(arrays / "vectors.f32")
        np.save(arrays / "styles.npy", vectors.styles)
        np.save(arrays / "years.npy", vectors.years)
        np.save(arrays / "queries.npy", vectors.queries)
        completed = subprocess.run(
            [sys.executable, "-m", "bench.search", "--worker", engine, str(arrays),
             json.dumps([asdict(f) for f in filters])],
            cwd=REPO_ROOT, capture_output=True, text=True, check=False,
        )  # fmt: skip
    if completed.returncode != 0:
        raise RuntimeError(f"{engine} worker failed:\n{completed.stderr[-3000:]}")
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    for query_filter in filters:
        measured = report[query_filter.name]
        truth = ground_truth(vectors, query_filter)
        measured["recall_at_10"] = round(recall_at_k(truth, vectors.queries, measured.pop("returned")), 4)
        measured["matching_share"] = round(float(query_filter.mask(vectors).mean()), 4)
    return report


# --- the run ------------------------------------------------------------------------------------------


def engine_entry(report: dict[str, Any]) -> dict[str, Any]:
    """The schema's fields first (unfiltered numbers), then the filtered ones and the extras."""
    unfiltered = report["none"]
    entry = {
        "p50_ms": unfiltered["p50_ms"],
        "p99_ms": unfiltered["p99_ms"],
        "recall_at_10": unfiltered["recall_at_10"],
        "upserts_per_s": report["upserts_per_s"],
        "rss_mb": report["rss_mb"],
        "peak_rss_mb": report["peak_rss_mb"],
        "filtered": {name: report[name] for name in ("style", "year", "style_and_year")},
    }
    for extra in (
        "load_peak_rss_mb",
        "disk_mb",
        "index_build_s",
        "index_build_peak_rss_mb",
        "indexed_points",
    ):
        if extra in report:
            entry[extra] = report[extra]
    return entry


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "engine": f"qdrant-edge {_version('qdrant-edge-py')} (EdgeArtworkStore)",
        "edge_settings": {name: value for name, value in os.environ.items() if name.startswith("SEARCH_")}
        or "defaults",
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "vectors": {},
        "embedded": {},
        "exact": {},
    }
    if args.with_qdrant_local:
        results["qdrant_local"] = {}
    for size in args.sizes:
        started = time.perf_counter()
        vectors = bench_vectors(
            args.model,
            args.catalogue,
            size,
            clipart_images=args.clipart_images,
            queries=args.queries,
            seed=args.seed,
        )
        filters = query_filters(vectors)
        results["vectors"] = {
            "dimension": int(vectors.vectors.shape[1]),
            "queries": len(vectors.queries),
            "clipart_images": args.clipart_images,
            "synthesis": f"convex combination of a real descriptor and one of its {NEIGHBOURS} nearest real "
            f"neighbours + N(0, {NOISE}^2/d) noise, renormalised; seed {args.seed}",
            "style_filter": list(filters[1].styles),
            "year_filter": list(YEAR_RANGE),
        }
        log.info("%d vectors ready in %.0f s", size, time.perf_counter() - started)
        results["exact"][str(size)] = exact_latency(vectors.vectors, vectors.queries)
        log.info("exact %d: %s", size, results["exact"][str(size)])
        results["embedded"][str(size)] = engine_entry(measure_engine("edge", vectors, filters))
        log.info("edge %d: %s", size, json.dumps(results["embedded"][str(size)]))
        if args.with_qdrant_local and size <= args.qdrant_local_max:
            results["qdrant_local"][str(size)] = engine_entry(
                measure_engine("qdrant-local", vectors, filters)
            )
            log.info("qdrant-local %d: %s", size, json.dumps(results["qdrant_local"][str(size)]))
    return results


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def print_summary(results: dict[str, Any]) -> None:
    columns = [("n", 7), ("engine", 12), ("filter", 15), ("p50 ms", 8), ("p99 ms", 8), ("recall", 7)]
    columns += [("upserts/s", 10), ("rss MB", 7)]
    print(" ".join(f"{name:>{width}}" for name, width in columns))
    for size, exact in results["exact"].items():
        print(f"{size:>7} {'exact':>12} {'none':>15} {exact['p50_ms']:>8.2f} {exact['p99_ms']:>8.2f}")
        for engine in ("embedded", "qdrant_local"):
            entry = results.get(engine, {}).get(size)
            if not entry:
                continue
            rows = [("none", entry), *entry["filtered"].items()]
            for name, row in rows:
                print(
                    f"{size:>7} {engine:>12} {name:>15} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
                    f"{row['recall_at_10']:>7.4f} {entry['upserts_per_s']:>10.0f} {entry['rss_mb']:>7.0f}"
                )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200, help="held-out real descriptors used as queries")
    parser.add_argument("--clipart-images", type=int, default=6000, help="real clip-art images to encode")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--with-qdrant-local", action="store_true", help="also measure qdrant-client local mode"
    )
    parser.add_argument("--qdrant-local-max", type=int, default=10_000, help="largest size for local mode")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1], Path(argv[2]), argv[3])
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    results = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n")
    print_summary(results)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
