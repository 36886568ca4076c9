"""End-to-end load test: the gateway with all four services on embedded defaults and ~10k artworks.

`python -m bench.loadtest` (what `make loadtest` runs), loopback only, bounded in time:
1. starts encoder, search, influence and gateway as processes on 127.0.0.1 (artsearch_tools.launcher), ingests
   the GCompris paintings through the encoder, then fills the collection to --artworks with synthetic
   artworks: each descriptor a random blend of two real paintings' descriptors plus noise, by one of the
   real artists (so the influence re-rank has work to do), upserted straight into the search service,
   and waits until the search service has indexed them (its background build); the in-process yardstick
   (bench/in_process.py: the same components in one process, no gRPC or HTTP hop between them) is filled
   with the same ingest and the same synthetic artworks;
2. drives POST /v1/search (multipart JPEG of a real painting at 640-1600 px, k=25, pool 100, influence
   re-rank on) from one asyncio HTTP client at each concurrency level for a fixed time, the stack then the
   in-process yardstick at each level (noise hits both): QPS, p50/p95/p99, errors (any answer but 200);
3. measures the raw yardstick in the same run, between the levels: raw onnxruntime throughput of the
   served model at batch 32 on pre-decoded pixels (bench.encoder's RawYardstick) and, when another variant
   is served (--model of the int8 model), of the fp32 model (`fp32_raw_images_per_s`, the fixed yardstick);
   reports QPS / raw, QPS / fp32 raw, and the stack against the in-process yardstick.
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
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

from artsearch.grpc_client import open_channel
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from artsearch_tools.launcher import SERVICES, ServiceStack, StackSettings, free_ports
from bench.encoder import (
    DEFAULT_MODEL,
    RAW_BATCH,
    REPO_ROOT,
    RawYardstick,
    add_level_arguments,
    build_query_jpegs,
    check_level_arguments,
    decode_batch,
    machine,
    model_variant,
    ort_providers_from_env,
    percentile,
    process_cpu_seconds,
)
from services.encoder.backends import EmbeddingModelInfo
from services.search.edge_store import EdgeSettings

DEFAULT_OUTPUT = REPO_ROOT / "bench/results/loadtest.json"
TARGET_RATIO = 0.8
# Issue 16: the stack against the same components in one process (bench/in_process.py), same client, same run.
TARGET_RATIO_TO_IN_PROCESS = 0.9
TARGET_P50_RATIO_TO_IN_PROCESS = 1.25
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
    fp32_model_path: Path = DEFAULT_MODEL
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


def stack_targets(stack: ServiceStack) -> IngestTargets:
    address = stack.settings.address
    return IngestTargets(address("encoder"), address("search"), address("influence"))


async def fill_collection(targets: IngestTargets, settings: LoadSettings) -> dict[str, int]:
    """Real paintings through the encoder, then synthetic artworks up to `settings.artworks` (the same ones
    for every target: a fixed seed)."""
    catalogue = load_catalogue(settings.catalogue_dir)
    report = await ingest_catalogue(catalogue, targets)
    async with open_channel(targets.search_addr) as channel:
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
    while child_pids(search_pid) or not _quiet(search_pid):
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"the search service's index build took more than {timeout_s:.0f} s")
        time.sleep(0.5)
    return round(time.monotonic() - started, 1)


def _quiet(pid: int, window_s: float = 1.0, busy_share: float = 0.05) -> bool:
    """Whether the process used under `busy_share` of a core over `window_s`: once the build child has
    ended, the service still swaps the built shard in (loads it, syncs it to disk, removes the old copy),
    a second or more of CPU that would otherwise fall into the first level."""
    before = process_cpu_seconds(pid)
    time.sleep(window_s)
    return process_cpu_seconds(pid) - before < busy_share * window_s


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
    processes: dict[str, int],
    client: httpx.AsyncClient,
    queries: Sequence[bytes],
    settings: LoadSettings,
    concurrency: int,
) -> LevelRecord:
    """One level against one target (the stack, or the in-process yardstick); `processes`: name -> pid of
    the processes whose CPU time the level is charged."""
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

    cpu_before = _cpu_seconds(processes)
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    record.service_cpu_s = {name: _cpu_seconds(processes)[name] - cpu_before[name] for name in cpu_before}
    return record


def _cpu_seconds(processes: dict[str, int]) -> dict[str, float]:
    return {name: process_cpu_seconds(pid) for name, pid in processes.items()}


@dataclass(frozen=True)
class Target:
    """What a level is driven against: a base URL, and the processes serving it."""

    name: str
    url: str
    processes: dict[str, int]


async def measure(
    targets: Sequence[Target],
    settings: LoadSettings,
    queries: Sequence[bytes],
    yardsticks: Sequence[RawYardstick],
) -> tuple[dict[str, list[LevelRecord]], float]:
    """Every level against each target in turn (the stack, then the in-process yardstick: noise hits both),
    with raw yardstick segments between the levels; the client's CPU ms per query (the stack's calls)."""
    limits = httpx.Limits(max_connections=max(settings.concurrencies), max_keepalive_connections=64)
    records: dict[str, list[LevelRecord]] = {target.name: [] for target in targets}
    client_cpu_s, calls = 0.0, 0
    clients = [httpx.AsyncClient(base_url=t.url, timeout=60, limits=limits) for t in targets]
    try:
        for concurrency in settings.concurrencies:
            for target, client in zip(targets, clients, strict=True):
                print(f"  {target.name}: concurrency {concurrency} ...", flush=True)
                cpu_started = time.process_time()
                record = await run_level(target.processes, client, queries, settings, concurrency)
                records[target.name].append(record)
                if target is targets[0]:
                    client_cpu_s += time.process_time() - cpu_started
                    calls += record.calls
            for yardstick in yardsticks:
                yardstick.sample(settings.raw_seconds / (len(settings.concurrencies) + 1))
    finally:
        for client in clients:
            await client.aclose()
    return records, client_cpu_s * 1000.0 / max(1, calls)


# ----------------------------------------------------------------------------------------------- report


def build_report(
    settings: LoadSettings,
    records: Sequence[LevelRecord],
    raw_images_per_s: float,
    collection: dict[str, int],
    client_cpu_ms: float,
    machine_info: dict[str, object],
    *,
    in_process: Sequence[LevelRecord] = (),
    fp32_raw_images_per_s: float | None = None,
    model_variant: str = "fp32",
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
    fp32_raw = fp32_raw_images_per_s or raw_images_per_s
    report["fp32_raw_images_per_s"] = round(fp32_raw, 1)
    report["model_variant"] = model_variant
    report["ratio_to_fp32_raw_at_16"] = round(at_16["qps"] / fp32_raw, 3) if at_16 else None
    if in_process:
        report.update(_in_process_report(levels, single, in_process))
    return report


def _in_process_report(
    levels: dict[str, dict[str, float | int]], single: LevelRecord | None, in_process: Sequence[LevelRecord]
) -> dict[str, object]:
    """The in-process yardstick's levels (bench/in_process.py) and the stack's ratios to it."""
    peer = {str(record.concurrency): record.summary() for record in in_process}
    peer_single = next((r for r in in_process if r.concurrency == 1), None)
    at_16, peer_16 = levels.get("16"), peer.get("16")
    report: dict[str, object] = {
        "in_process_qps": {key: level["qps"] for key, level in peer.items()},
        "in_process": peer,
        "in_process_cpu_ms_per_query": {str(r.concurrency): r.cpu_ms_per_query() for r in in_process},
        "ratio_to_in_process_at_16": (
            round(at_16["qps"] / peer_16["qps"], 3) if at_16 and peer_16 and peer_16["qps"] else None
        ),
        "target_ratio_to_in_process_at_16": TARGET_RATIO_TO_IN_PROCESS,
    }
    if single is not None and peer_single is not None and peer_single.latencies_ms:
        stack_p50 = percentile(single.latencies_ms, 50)
        peer_p50 = percentile(peer_single.latencies_ms, 50)
        report["in_process_single_p50_ms"] = round(peer_p50, 2)
        report["single_p50_ratio_to_in_process"] = round(stack_p50 / peer_p50, 3)
        report["target_single_p50_ratio_to_in_process"] = TARGET_P50_RATIO_TO_IN_PROCESS
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
    if "in_process_qps" in report:
        print(f"in-process yardstick qps: {report['in_process_qps']}")
        print(
            f"stack / in-process at 16: {report['ratio_to_in_process_at_16']} "
            f"(target >= {TARGET_RATIO_TO_IN_PROCESS}); single-query p50 stack / in-process: "
            f"{report.get('single_p50_ratio_to_in_process')} (target <= {TARGET_P50_RATIO_TO_IN_PROCESS})"
        )
    print(
        f"model {report['model_variant']}: qps at 16 / fp32 raw {report['fp32_raw_images_per_s']} images/s = "
        f"{report['ratio_to_fp32_raw_at_16']}"
    )


def run(settings: LoadSettings) -> dict[str, object]:
    machine_info = machine()
    info = EmbeddingModelInfo.from_sidecar(settings.model_path, backend="onnxruntime")
    queries = build_query_jpegs(settings.catalogue_dir, settings.paintings)
    yardsticks = _raw_yardsticks(settings, queries, info)
    with tempfile.TemporaryDirectory(prefix="artsearch-loadtest-") as state:
        stack_settings = StackSettings(
            model_path=settings.model_path,
            state_dir=Path(state) / "stack",
            ports=dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True)),
            # Every query encoded: the load repeats its pictures, which the gateway would answer from its
            # picture cache (services/gateway/query_cache.py) instead of measuring the encoder.
            extra_env={"LOG_LEVEL": "WARNING", "QUERY_CACHE_ENTRIES": "0"},
            image_root=settings.catalogue_dir.resolve().parent,
        )
        with ServiceStack(stack_settings) as stack, InProcessYardstick(settings, Path(state)) as peer:
            stack.wait_ready(timeout=180)
            collection = _fill(stack_targets(stack), stack.processes["search"].pid, settings, "the stack")
            peer.wait_ready(timeout=180)
            _fill(peer.targets, peer.pid, settings, "the in-process yardstick")
            for yardstick in yardsticks:
                yardstick.sample(settings.raw_seconds / (len(settings.concurrencies) + 1))
            print("driving POST /v1/search ...", flush=True)
            stack_target = Target("stack", stack.settings.gateway_url, _pids(stack))
            peer_target = Target("in-process", peer.url, {"in_process": peer.pid})
            records, client_cpu_ms = asyncio.run(
                measure([stack_target, peer_target], settings, queries, yardsticks)
            )
    raw, fp32_raw = (yardstick.result().images_per_s for yardstick in (yardsticks[0], yardsticks[-1]))
    report = build_report(
        settings,
        records["stack"],
        raw,
        collection,
        client_cpu_ms,
        machine_info,
        in_process=records["in-process"],
        fp32_raw_images_per_s=fp32_raw,
        model_variant=model_variant(settings.model_path),
    )
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"written {settings.output}")
    return report


def _raw_yardsticks(
    settings: LoadSettings, queries: Sequence[bytes], info: EmbeddingModelInfo
) -> list[RawYardstick]:
    """The served model's raw speed, and the fp32 model's (the fixed yardstick) when another is served."""
    models = [settings.model_path]
    if settings.fp32_model_path.resolve() != settings.model_path.resolve():
        models.append(settings.fp32_model_path)
    pixels = decode_batch(queries, info.input_size, RAW_BATCH)
    return [RawYardstick(model, info.input_name, pixels, 0, ort_providers_from_env()) for model in models]


def _fill(targets: IngestTargets, search_pid: int, settings: LoadSettings, what: str) -> dict[str, int]:
    print(f"filling {what}'s collection to {settings.artworks} artworks ...", flush=True)
    collection = asyncio.run(fill_collection(targets, settings))
    print(f"  {collection}", flush=True)
    if settings.artworks >= EdgeSettings.index_threshold:  # fewer points are never indexed
        print("waiting for the index build ...", flush=True)
        print(f"  {wait_for_index_build(search_pid)} s", flush=True)
    return collection


def _pids(stack: ServiceStack) -> dict[str, int]:
    return {name: process.pid for name, process in stack.processes.items()}


class InProcessYardstick:
    """bench/in_process.py as a child process: the same components as the stack, in one process."""

    def __init__(self, settings: LoadSettings, state_dir: Path) -> None:
        self._settings = settings
        self._state_dir = state_dir / "in-process"
        self._grpc_port, self._http_port = free_ports(2)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http_port}"

    @property
    def targets(self) -> IngestTargets:
        address = f"127.0.0.1:{self._grpc_port}"
        return IngestTargets(address, address, address)

    def __enter__(self) -> InProcessYardstick:
        self._state_dir.mkdir(parents=True)
        command = [
            sys.executable, "-m", "bench.in_process",
            "--model", str(self._settings.model_path),
            "--state-dir", str(self._state_dir),
            "--grpc-port", str(self._grpc_port),
            "--http-port", str(self._http_port),
            "--image-root", str(self._settings.catalogue_dir.resolve().parent),
        ]  # fmt: skip
        log = (self._state_dir / "in_process.log").open("wb")
        self._process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        return self

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise RuntimeError(f"the in-process yardstick exited: {self._log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            time.sleep(0.5)
        raise TimeoutError(f"the in-process yardstick did not start: {self._log_tail()}")

    def _log_tail(self) -> str:
        return (self._state_dir / "in_process.log").read_text(errors="replace")[-2000:]

    def __exit__(self, *_: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def parse_args(argv: Sequence[str] | None) -> LoadSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.loadtest", description=__doc__.split("\n")[0])
    add_level_arguments(parser, DEFAULT_OUTPUT, raw_seconds=12.0)
    parser.add_argument(
        "--fp32-model",
        type=Path,
        default=DEFAULT_MODEL,
        help="the fp32 model whose raw speed is the yardstick",
    )
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
        fp32_model_path=args.fp32_model.resolve(),
    )


def main(argv: Sequence[str] | None = None) -> int:
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
