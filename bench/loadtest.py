"""End-to-end load test: the gateway with all four services on embedded defaults and ~10k artworks.

`python -m bench.loadtest` (what `make loadtest` runs), loopback only, bounded in time:
1. starts encoder, search, influence and gateway as processes on 127.0.0.1 (artsearch.launcher), ingests
   the GCompris paintings through the encoder, then fills the collection to --artworks with synthetic
   artworks: each descriptor a random blend of two real paintings' descriptors plus noise, by one of the
   real artists (so the influence re-rank has work to do), upserted straight into the search service,
   and waits until the search service has indexed them (its background build);
2. drives POST /v1/search (multipart JPEG of a real painting at 640-1600 px, k=25, pool 100, influence
   re-rank on) from one asyncio HTTP client at each concurrency level for a fixed time: QPS, p50/p95/p99,
   errors (any answer but 200);
3. measures the yardstick in the same run, between the levels: raw onnxruntime throughput of the encoder
   model at batch 32 on pre-decoded pixels (bench.encoder's RawYardstick), and reports QPS / raw.
Client, services and yardstick share the machine's cores; the client's CPU time per query is reported.
Results go to bench/results/loadtest.json; docs/performance.md explains them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from artsearch.catalogue.folder import load_catalogue
from artsearch.grpc_client import open_channel
from artsearch.ingest import IngestTargets, ingest_catalogue
from artsearch.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from bench.encoder import (
    RAW_BATCH,
    REPO_ROOT,
    RawYardstick,
    add_level_arguments,
    build_query_jpegs,
    check_level_arguments,
    decode_batch,
    machine,
    ort_providers_from_env,
    percentile,
    process_cpu_seconds,
)
from services.encoder.backends import EmbeddingModelInfo
from services.search.edge_store import EdgeSettings

DEFAULT_OUTPUT = REPO_ROOT / "bench/results/loadtest.json"
TARGET_RATIO = 0.8
SYNTHETIC_CATALOGUE = "loadtest-synthetic"
UPSERT_BATCH = 250


@dataclass(frozen=True)
class LoadSettings:
    model_path: Path
    catalogue_dir: Path
    output: Path
    artworks: int = 10_000
    concurrencies: tuple[int, ...] = (1, 4, 16, 64)
    seconds_per_level: float = 10.0
    warmup_seconds: float = 2.0
    raw_seconds: float = 12.0
    k: int = 25
    pool: int = 100
    paintings: int = 12


@dataclass
class LevelRecord:
    """Calls of one concurrency level: latencies of those started and finished in the measured window."""

    concurrency: int
    measure_from: float
    measure_until: float
    latencies_ms: list[float] = field(default_factory=list)
    completed: int = 0
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    timings_ms: dict[str, list[float]] = field(default_factory=dict)
    # CPU seconds each service process spent during the level (warm-up included), and calls it answered.
    service_cpu_s: dict[str, float] = field(default_factory=dict)
    calls: int = 0

    def record(self, started: float, finished: float, reply: httpx.Response | Exception) -> None:
        self.calls += 1
        if not (self.measure_from <= started and finished <= self.measure_until):
            return
        self.completed += 1
        self.latencies_ms.append((finished - started) * 1000.0)
        if isinstance(reply, Exception) or reply.status_code != 200:
            self.errors += 1
            if len(self.error_samples) < 5:
                self.error_samples.append(repr(reply) if isinstance(reply, Exception) else reply.text[:200])
            return
        for stage, ms in reply.json().get("timings_ms", {}).items():
            self.timings_ms.setdefault(stage, []).append(float(ms))

    def summary(self) -> dict[str, float | int]:
        window = self.measure_until - self.measure_from
        return {
            "qps": round(self.completed / window, 2),
            "p50_ms": round(percentile(self.latencies_ms, 50), 2),
            "p95_ms": round(percentile(self.latencies_ms, 95), 2),
            "p99_ms": round(percentile(self.latencies_ms, 99), 2),
            "errors": self.errors,
        }

    def cpu_ms_per_query(self) -> dict[str, float]:
        return {name: round(s * 1000.0 / max(1, self.calls), 2) for name, s in self.service_cpu_s.items()}


# ------------------------------------------------------------------------------------------ the catalogue


async def fill_collection(stack: ServiceStack, settings: LoadSettings) -> dict[str, int]:
    """Real paintings through the encoder, then synthetic artworks up to `settings.artworks`."""
    catalogue = load_catalogue(settings.catalogue_dir)
    targets = IngestTargets(
        stack.settings.address("encoder"),
        stack.settings.address("search"),
        stack.settings.address("influence"),
    )
    report = await ingest_catalogue(catalogue, targets)
    async with open_channel(stack.settings.address("search")) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        real = await _stored_artworks(search)
        synthetic = max(0, settings.artworks - len(real))
        rng = np.random.default_rng(20261129)
        for start in range(0, synthetic, UPSERT_BATCH):
            items = [
                _synthetic_artwork(i, real, rng) for i in range(start, min(synthetic, start + UPSERT_BATCH))
            ]
            await search.Upsert(search_pb2.UpsertRequest(items=items), timeout=60)
        count = await search.Count(search_pb2.CountRequest(), timeout=30)
    return {"real": report.added, "synthetic": synthetic, "stored": count.count}


def wait_for_index_build(search_pid: int, timeout_s: float = 600.0) -> float:
    """Seconds waited until the search service has indexed the bulk load: its background HNSW build (a
    child process, started once writes have been quiet for `index_delay_s`) would otherwise share the
    cores with the first levels. TimeoutError past `timeout_s`."""
    started = time.monotonic()
    time.sleep(EdgeSettings.index_delay_s + 2.0)  # long enough for a build to have started
    while child_pids(search_pid):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the search service's index build took more than {timeout_s:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def child_pids(pid: int) -> set[int]:
    """The processes `pid` has started and not yet reaped (Linux /proc)."""
    children: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():  # any of its threads may have started the child
        with contextlib.suppress(OSError):
            children.update(int(child) for child in (task / "children").read_text().split())
    return children


async def _stored_artworks(search: search_pb2_grpc.SearchServiceStub) -> list[search_pb2.IndexedArtwork]:
    items, cursor = [], ""
    while True:
        page = await search.Scroll(
            search_pb2.ScrollRequest(limit=500, cursor=cursor, with_embeddings=True), timeout=30
        )
        items.extend(page.items)
        cursor = page.next_cursor
        if not cursor:
            return items


def _synthetic_artwork(
    index: int, real: Sequence[search_pb2.IndexedArtwork], rng: np.random.Generator
) -> search_pb2.IndexedArtwork:
    first, second = (real[int(i)] for i in rng.integers(0, len(real), 2))
    blend = float(rng.uniform(0.5, 1.0))
    vector = blend * np.asarray(first.embedding.values) + (1 - blend) * np.asarray(second.embedding.values)
    vector += rng.normal(0.0, 0.01, vector.shape)
    vector /= np.linalg.norm(vector)
    artwork = common_pb2.Artwork(
        id=f"synthetic-{index:06d}",
        title=f"{first.artwork.title} (study {index})",
        artist=first.artwork.artist,
        style=first.artwork.style,
        genre=first.artwork.genre,
        year=first.artwork.year,
        catalogue=SYNTHETIC_CATALOGUE,
    )
    embedding = common_pb2.Embedding(values=vector.astype(np.float32).tolist())
    return search_pb2.IndexedArtwork(artwork=artwork, embedding=embedding)


# ------------------------------------------------------------------------------------------------ load


async def run_level(
    stack: ServiceStack,
    client: httpx.AsyncClient,
    queries: Sequence[bytes],
    settings: LoadSettings,
    concurrency: int,
) -> LevelRecord:
    started = time.perf_counter()
    record = LevelRecord(
        concurrency,
        measure_from=started + settings.warmup_seconds,
        measure_until=started + settings.warmup_seconds + settings.seconds_per_level,
    )
    next_query = iter(range(sys.maxsize))
    params = {"k": settings.k, "pool": settings.pool}

    async def caller() -> None:
        while time.perf_counter() < record.measure_until:
            data = queries[next(next_query) % len(queries)]
            began = time.perf_counter()
            try:
                reply: httpx.Response | Exception = await client.post(
                    "/v1/search", params=params, files={"image": ("query.jpg", data, "image/jpeg")}
                )
            except httpx.HTTPError as error:
                reply = error
            record.record(began, time.perf_counter(), reply)

    cpu_before = _service_cpu(stack)
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    record.service_cpu_s = {name: _service_cpu(stack)[name] - cpu_before[name] for name in cpu_before}
    return record


def _service_cpu(stack: ServiceStack) -> dict[str, float]:
    return {name: process_cpu_seconds(process.pid) for name, process in stack.processes.items()}


async def measure(
    stack: ServiceStack, settings: LoadSettings, queries: Sequence[bytes], yardstick: RawYardstick
) -> tuple[list[LevelRecord], float]:
    """Every level, with yardstick segments between them; the client's CPU ms per query."""
    limits = httpx.Limits(max_connections=max(settings.concurrencies), max_keepalive_connections=64)
    records, cpu_started, calls = [], time.process_time(), 0
    async with httpx.AsyncClient(base_url=stack.settings.gateway_url, timeout=60, limits=limits) as client:
        for concurrency in settings.concurrencies:
            print(f"  concurrency {concurrency} ...", flush=True)
            records.append(await run_level(stack, client, queries, settings, concurrency))
            calls += records[-1].completed
            cpu_before_raw = time.process_time()
            yardstick.sample(settings.raw_seconds / (len(settings.concurrencies) + 1))
            cpu_started += time.process_time() - cpu_before_raw  # the yardstick's CPU is not the client's
    client_cpu_ms = (time.process_time() - cpu_started) * 1000.0 / max(1, calls)
    return records, client_cpu_ms


# ----------------------------------------------------------------------------------------------- report


def build_report(
    settings: LoadSettings,
    records: Sequence[LevelRecord],
    raw_images_per_s: float,
    collection: dict[str, int],
    client_cpu_ms: float,
    machine_info: dict[str, object],
) -> dict[str, object]:
    levels = {str(record.concurrency): record.summary() for record in records}
    at_16 = levels.get("16")
    single = next((r for r in records if r.concurrency == 1), None)
    report: dict[str, object] = {
        "concurrency": levels,
        "encoder_raw_images_per_s": round(raw_images_per_s, 1),
        "ratio_at_16": round(at_16["qps"] / raw_images_per_s, 3) if at_16 else None,
        "target_ratio": TARGET_RATIO,
        "errors_total": sum(record.errors for record in records),
        "error_samples": [sample for record in records for sample in record.error_samples],
        "artworks": collection,
        "client_cpu_ms_per_query": round(client_cpu_ms, 2),
        "service_cpu_ms_per_query": {str(r.concurrency): r.cpu_ms_per_query() for r in records},
        "settings": {
            "k": settings.k,
            "pool": settings.pool,
            "seconds_per_level": settings.seconds_per_level,
            "warmup_seconds": settings.warmup_seconds,
            "raw_batch": RAW_BATCH,
            "query_images": settings.paintings * 3,
        },
        "machine": {**machine_info, "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "client": "one asyncio httpx process on the same machine, multipart JPEG uploads, keep-alive",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    if single is not None:
        report["single_query"] = _single_query_breakdown(single)
    return report


def _single_query_breakdown(single: LevelRecord) -> dict[str, float]:
    """At concurrency 1: the gateway's stage timings and the BRIEF's p50 bound, 1.5 x encode + search."""
    medians = {stage: round(statistics.median(ms), 2) for stage, ms in single.timings_ms.items() if ms}
    encode, search = medians.get("encode", 0.0), medians.get("search", 0.0)
    p50 = round(percentile(single.latencies_ms, 50), 2) if single.latencies_ms else 0.0
    bound = round(1.5 * encode + search, 2)
    return {"p50_ms": p50, "stage_p50_ms": medians, "p50_bound_ms": bound, "within_bound": p50 <= bound}


def print_report(report: dict[str, object]) -> None:
    print(f"{'concurrency':>11} {'qps':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8} {'errors':>6}")
    for key, level in report["concurrency"].items():  # type: ignore[union-attr]
        print(
            f"{key:>11} {level['qps']:>8.1f} {level['p50_ms']:>8.1f} {level['p95_ms']:>8.1f} "
            f"{level['p99_ms']:>8.1f} {level['errors']:>6}"
        )
    print(f"encoder raw (onnxruntime, batch {RAW_BATCH}): {report['encoder_raw_images_per_s']} images/s")
    verdict = "meets" if (report["ratio_at_16"] or 0) >= TARGET_RATIO else "misses"
    ratio = report["ratio_at_16"]
    print(f"end-to-end qps / raw at concurrency 16: {ratio} ({verdict} the {TARGET_RATIO} target)")
    if "single_query" in report:
        print(f"single query: {report['single_query']}")


def run(settings: LoadSettings) -> dict[str, object]:
    machine_info = machine()
    info = EmbeddingModelInfo.from_sidecar(settings.model_path, backend="onnxruntime")
    queries = build_query_jpegs(settings.catalogue_dir, settings.paintings)
    yardstick = RawYardstick(
        settings.model_path,
        info.input_name,
        decode_batch(queries, info.input_size, RAW_BATCH),
        0,
        ort_providers_from_env(),
    )
    with tempfile.TemporaryDirectory(prefix="artsearch-loadtest-") as state:
        stack_settings = StackSettings(
            model_path=settings.model_path,
            state_dir=Path(state),
            ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
            # Every query encoded: the load repeats its pictures, which the gateway would answer from its
            # picture cache (services/gateway/query_cache.py) instead of measuring the encoder.
            extra_env={"LOG_LEVEL": "WARNING", "QUERY_CACHE_ENTRIES": "0"},
            image_root=settings.catalogue_dir.resolve().parent,
        )
        with ServiceStack(stack_settings) as stack:
            stack.wait_ready(timeout=180)
            print(f"filling the collection to {settings.artworks} artworks ...", flush=True)
            collection = asyncio.run(fill_collection(stack, settings))
            print(f"  {collection}", flush=True)
            if settings.artworks >= EdgeSettings.index_threshold:  # fewer points are never indexed
                print("waiting for the search service's index build ...", flush=True)
                print(f"  {wait_for_index_build(stack.processes['search'].pid)} s", flush=True)
            yardstick.sample(settings.raw_seconds / (len(settings.concurrencies) + 1))
            print("driving POST /v1/search ...", flush=True)
            records, client_cpu_ms = asyncio.run(measure(stack, settings, queries, yardstick))
    raw = yardstick.result().images_per_s
    report = build_report(settings, records, raw, collection, client_cpu_ms, machine_info)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"written {settings.output}")
    return report


def parse_args(argv: Sequence[str] | None) -> LoadSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n")[0])
    add_level_arguments(parser, DEFAULT_OUTPUT, raw_seconds=12.0)
    parser.add_argument("--artworks", type=int, default=10_000, help="collection size (real + synthetic)")
    args = parser.parse_args(argv)
    check_level_arguments(parser, args)
    if not 1 <= args.artworks <= 1_000_000:
        parser.error("--artworks must be 1..1000000")
    return LoadSettings(
        model_path=args.model.resolve(),
        catalogue_dir=args.catalogue,
        output=args.output,
        artworks=args.artworks,
        concurrencies=tuple(args.concurrency),
        seconds_per_level=args.seconds,
        warmup_seconds=args.warmup,
        raw_seconds=args.raw_seconds,
    )


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
