"""Encoder speed: the service from JPEG bytes over gRPC against raw onnxruntime, in one run.

`python -m bench.encoder` (what `make bench` runs):
1. yardstick: an onnxruntime session on the same ONNX file, batches of 32 pre-decoded uint8 images;
2. the real encoder service as its own process (`python -m services.encoder`), driven by one asyncio gRPC
   client process at concurrency 1, 4, 16 and 64, one JPEG per request (the gateway's pattern);
3. latency of one image at concurrency 1 (p50, p99);
4. the service's resident memory after the run.
The yardstick runs in segments before and between the service levels; noisy neighbours are damped by
taking medians over batches and time windows. Client and service share the machine's cores: the client's
CPU time is reported.
Results go to bench/results/encoder.json; see docs/performance.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import io
import itertools
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from PIL import Image

from artsearch.grpc_client import is_serving, open_channel
from artsearch.v1 import encoder_pb2
from artsearch_tools.launcher import free_ports
from services.encoder.backends import EmbeddingModelInfo
from services.encoder.config import DEFAULT_BATCH_MAX_IMAGES, DEFAULT_BATCH_MAX_WAIT_MS
from services.encoder.images import decode_image, to_rgb
from services.encoder.ort_providers import check_session_providers, parse_providers, session_providers

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = REPO_ROOT / "models/efficientnet-lite0/model.onnx"
DEFAULT_CATALOGUE = REPO_ROOT / "data/catalogues/gcompris"
DEFAULT_OUTPUT = REPO_ROOT / "bench/results/encoder.json"
ENCODE_METHOD = "/artsearch.v1.EncoderService/Encode"
RAW_BATCH = 32
# Longest side of the query JPEGs: phone photos and web images of artworks, re-encoded at quality 90.
QUERY_SIDES = (640, 1024, 1600)
TARGET_RATIO = 0.85
# Completions closer together than this belong to one batch's burst of responses.
BURST_GAP_S = 0.002


@dataclass(frozen=True)
class BenchSettings:
    model_path: Path
    catalogue_dir: Path
    output: Path
    concurrencies: tuple[int, ...] = (1, 4, 16, 64)
    seconds_per_level: float = 10.0
    warmup_seconds: float = 2.0
    raw_seconds: float = 15.0
    windows_per_level: int = 5
    paintings: int = 12
    # The fixed yardstick of every variant: the fp32 model's raw throughput, measured in the same run.
    fp32_model_path: Path = DEFAULT_MODEL


@dataclass(frozen=True)
class RawResult:
    images_per_s: float
    batch_seconds: tuple[float, ...]
    cpu_ms_per_image: float
    setting: str
    images_per_s_by_setting: dict[str, float]


@dataclass
class LevelResult:
    concurrency: int
    images_per_s: float
    mean_images_per_s: float
    window_images_per_s: list[float]
    latencies_ms: list[float]
    client_cpu_ms_per_image: float
    service_cpu_ms_per_image: float


@dataclass
class LoadRecorder:
    """When every call ended, and the latencies of the calls made entirely inside the measured period."""

    measure_from: float
    measure_until: float
    completions: list[float] = field(default_factory=list)
    latencies_ms: list[float] = field(default_factory=list)

    def record(self, started: float, finished: float) -> None:
        self.completions.append(finished)
        if self.measure_from <= started and finished <= self.measure_until:
            self.latencies_ms.append((finished - started) * 1000.0)

    def completed_in_window(self) -> int:
        return sum(self.measure_from <= t <= self.measure_until for t in self.completions)


# ---------------------------------------------------------------------------------------------- inputs


def build_query_jpegs(catalogue_dir: Path, paintings: int) -> list[bytes]:
    """Real paintings re-encoded as JPEGs of several sizes, so the service pays a realistic decode."""
    sources = sorted(catalogue_dir.glob("*.jpg"))[:paintings]
    if not sources:
        raise SystemExit(f"no *.jpg in {catalogue_dir}: run `make catalogue`")
    queries = []
    for path in sources:
        with Image.open(path) as opened:
            painting = to_rgb(opened)
            painting.load()
        for side in QUERY_SIDES:
            scale = side / max(painting.size)
            size = (round(painting.width * scale), round(painting.height * scale))
            buffer = io.BytesIO()
            painting.resize(size, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=90)
            queries.append(buffer.getvalue())
    return queries


def decode_batch(queries: Sequence[bytes], size: int, count: int) -> np.ndarray:
    pixels = [decode_image(queries[i % len(queries)], size=size, max_pixels=50_000_000) for i in range(count)]
    return np.stack(pixels)


def decode_ms_per_image(queries: Sequence[bytes], size: int) -> float:
    """One core's decode + resize cost per query image (the service's share of work raw does not do)."""
    timings = []
    for _ in range(3):
        started = time.process_time()  # CPU time: a neighbour taking the core does not count
        for data in queries:
            decode_image(data, size=size, max_pixels=50_000_000)
        timings.append((time.process_time() - started) / len(queries))
    return statistics.median(timings) * 1000.0


# ------------------------------------------------------------------------------------------- yardstick


class RawYardstick:
    """Plain onnxruntime sessions on the same ONNX file, with the embedded backend's options, batches of
    pre-decoded pixels. Two thread-pool settings are tried (idle threads spinning, onnxruntime's default,
    and sleeping) and the faster one is the yardstick, so the service is compared with the best raw run.
    Sampled in short segments spread over the whole bench, so a noisy neighbour weighs on both sides."""

    def __init__(
        self,
        model_path: Path,
        input_name: str,
        pixels: np.ndarray,
        intra_op_threads: int,
        providers: tuple[str, ...] = ("cpu",),
    ) -> None:
        self._input = {input_name: pixels}
        self._images = len(pixels)
        self._sessions = {
            "spinning": _raw_session(model_path, intra_op_threads, providers, spinning=True),
            "sleeping": _raw_session(model_path, intra_op_threads, providers, spinning=False),
        }
        self._batch_seconds: dict[str, list[float]] = {name: [] for name in self._sessions}
        self._cpu_seconds = dict.fromkeys(self._sessions, 0.0)
        for session in self._sessions.values():
            for _ in range(2):  # warm-up: first runs allocate the arena and pick kernels
                session.run(None, self._input)

    def sample(self, seconds: float) -> None:
        """Back-to-back batches for about `seconds`, split between the settings."""
        for name, session in self._sessions.items():
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            timings = self._batch_seconds[name]
            taken = 0
            while time.perf_counter() - wall_started < seconds / len(self._sessions) or taken < 2:
                started = time.perf_counter()
                session.run(None, self._input)
                timings.append(time.perf_counter() - started)
                taken += 1
            self._cpu_seconds[name] += time.process_time() - cpu_started

    def result(self) -> RawResult:
        """The faster setting's images/s from its median batch time (a disturbed batch does not count)."""
        rates = {
            name: self._images / statistics.median(timings) for name, timings in self._batch_seconds.items()
        }
        best = max(rates, key=lambda name: rates[name])
        timings = self._batch_seconds[best]
        cpu_ms = self._cpu_seconds[best] * 1000.0 / (len(timings) * self._images)
        return RawResult(rates[best], tuple(timings), cpu_ms, best, rates)


def _raw_session(
    model_path: Path, intra_op_threads: int, providers: tuple[str, ...], *, spinning: bool
) -> object:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = ort.InferenceSession(str(model_path), options, providers=session_providers(providers))
    check_session_providers(session, providers)
    return session


# ----------------------------------------------------------------------------------- service process


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class EncoderProcess:
    """`python -m services.encoder` on a free loopback port, with the caller's BATCH_*/ORT_* settings."""

    def __init__(self, model_path: Path, log_path: Path) -> None:
        self.port = free_ports(1)[0]
        self.address = f"127.0.0.1:{self.port}"
        self._log_path = log_path
        env = {
            **os.environ,
            "MODEL_PATH": str(model_path),
            "ARTSEARCH_HOST": "127.0.0.1",
            "ARTSEARCH_PORT": str(self.port),
            "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
            "PYTHONUNBUFFERED": "1",
        }
        env.pop("METRICS_PORT", None)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.encoder"],
                cwd=REPO_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    async def wait_until_serving(self, channel: grpc.aio.Channel, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"encoder service exited ({self.process.returncode}):\n{self.log_tail()}")
            if await is_serving(channel):
                return
            await asyncio.sleep(0.2)
        raise SystemExit(f"encoder service not SERVING after {timeout_s:.0f} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the service process, all its threads."""
        return process_cpu_seconds(self.process.pid)

    def memory_mb(self) -> dict[str, float]:
        """VmRSS (resident now) and VmHWM (peak resident) in MB."""
        status = Path(f"/proc/{self.process.pid}/status").read_text().splitlines()
        values = {line.split(":")[0]: int(line.split()[1]) for line in status if line.startswith("Vm")}
        return {"rss_mb": values["VmRSS"] / 1024.0, "peak_rss_mb": values["VmHWM"] / 1024.0}

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self._log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def encoder_process(model_path: Path, log_path: Path) -> Iterator[EncoderProcess]:
    service = EncoderProcess(model_path, log_path)
    try:
        yield service
    finally:
        service.stop()


# ----------------------------------------------------------------------------------------------- load


async def drive(
    encode: grpc.aio.UnaryUnaryMultiCallable,
    requests: Sequence[bytes],
    concurrency: int,
    warmup_s: float,
    seconds: float,
) -> LoadRecorder:
    """`concurrency` callers, each sending the next pre-serialised one-image request as soon as its
    previous answer arrives, until the measured window closes."""
    now = time.perf_counter()
    recorder = LoadRecorder(measure_from=now + warmup_s, measure_until=now + warmup_s + seconds)
    next_request = iter(range(sys.maxsize))

    async def caller() -> None:
        while (started := time.perf_counter()) < recorder.measure_until:
            await encode(requests[next(next_request) % len(requests)], timeout=60)
            recorder.record(started, time.perf_counter())

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return recorder


def windowed_rates(completions: Sequence[float], start: float, end: float, windows: int) -> list[float]:
    """Images/s in `windows` consecutive slices of [start, end]. Slice edges snap to the end of a burst of
    completions (one batch's answers), so no slice counts part of a batch."""
    times = sorted(completions)
    edges = [_burst_end_before(times, start + (end - start) * i / windows) for i in range(windows + 1)]
    rates = []
    for left, right in itertools.pairwise(edges):
        if left is None or right is None or right[1] <= left[1]:
            continue
        rates.append((right[0] - left[0]) / (right[1] - left[1]))
    return rates


def _burst_end_before(times: Sequence[float], moment: float) -> tuple[int, float] | None:
    """(completions up to and including the edge, the edge's time): the last completion at or before
    `moment` that ends its burst."""
    index = bisect.bisect_right(times, moment) - 1
    while 0 <= index < len(times) - 1 and times[index + 1] - times[index] < BURST_GAP_S:
        index -= 1
    if index < 0:
        return None
    return index + 1, times[index]


async def measure_level(
    encode: grpc.aio.UnaryUnaryMultiCallable,
    requests: Sequence[bytes],
    concurrency: int,
    service: EncoderProcess,
    settings: BenchSettings,
) -> LevelResult:
    cpu_client, cpu_service = time.process_time(), service.cpu_seconds()
    recorder = await drive(encode, requests, concurrency, settings.warmup_seconds, settings.seconds_per_level)
    cpu_client = time.process_time() - cpu_client
    cpu_service = service.cpu_seconds() - cpu_service
    overall = recorder.completed_in_window() / settings.seconds_per_level
    rates = windowed_rates(
        recorder.completions, recorder.measure_from, recorder.measure_until, settings.windows_per_level
    )
    calls = max(len(recorder.completions), 1)  # the CPU time covers warm-up and tail too
    return LevelResult(
        concurrency=concurrency,
        images_per_s=statistics.median(rates) if rates else overall,
        mean_images_per_s=overall,
        window_images_per_s=rates,
        latencies_ms=recorder.latencies_ms,
        client_cpu_ms_per_image=cpu_client * 1000.0 / calls,
        service_cpu_ms_per_image=cpu_service * 1000.0 / calls,
    )


async def check_answer(encode: grpc.aio.UnaryUnaryMultiCallable, request: bytes) -> encoder_pb2.ModelInfo:
    """One real call parsed in full: the bench measures a working service, not error replies."""
    reply = encoder_pb2.EncodeResponse.FromString(await encode(request, timeout=120))
    if len(reply.embeddings) != 1 or not reply.embeddings[0].values:
        raise SystemExit(f"unexpected answer from the encoder: {len(reply.embeddings)} embeddings")
    return reply.model


async def measure_service(
    settings: BenchSettings, queries: Sequence[bytes], yardsticks: Sequence[RawYardstick]
) -> tuple[list[LevelResult], dict[str, float], encoder_pb2.ModelInfo]:
    """Every concurrency level against one service process; a segment of each yardstick runs after each
    level, while the service idles."""
    requests = [encoder_pb2.EncodeRequest(images=[jpeg]).SerializeToString() for jpeg in queries]
    raw_segment_s = settings.raw_seconds / (len(settings.concurrencies) + 1)
    log_path = REPO_ROOT / "var/bench/encoder.log"
    with encoder_process(settings.model_path, log_path) as service:
        channel = open_channel(service.address)
        try:
            await service.wait_until_serving(channel)
            # No (de)serialisers: requests go as pre-built bytes and answers stay bytes (least client CPU).
            encode = channel.unary_unary(ENCODE_METHOD)
            model = await check_answer(encode, requests[0])
            await drive(encode, requests, 16, 0.0, settings.warmup_seconds)  # every batch size seen once
            levels = []
            for concurrency in settings.concurrencies:
                level = await measure_level(encode, requests, concurrency, service, settings)
                print(
                    f"  concurrency {concurrency:>3}: {level.images_per_s:7.1f} images/s "
                    f"(windows {', '.join(f'{r:.0f}' for r in level.window_images_per_s)})",
                    flush=True,
                )
                levels.append(level)
                for yardstick in yardsticks:
                    yardstick.sample(raw_segment_s)
            memory = service.memory_mb()
        finally:
            await channel.close()
    return levels, memory, model


# -------------------------------------------------------------------------------------------- report


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q))


def machine() -> dict[str, object]:
    import onnxruntime

    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "gpu": _gpu_name(),
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "grpcio": grpc.__version__,
        "load_average_at_start": [round(load, 2) for load in os.getloadavg()],
    }


def _gpu_name() -> str | None:
    """The first GPU's name as nvidia-smi reports it; None without one."""
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return listed.stdout.strip().splitlines()[0] if listed.stdout.strip() else None


def ort_providers_from_env() -> tuple[str, ...]:
    return parse_providers(os.environ.get("ORT_PROVIDERS", "cpu"))


def build_report(
    settings: BenchSettings,
    raw: RawResult,
    fp32_raw: RawResult,
    levels: Sequence[LevelResult],
    memory: dict[str, float],
    model: encoder_pb2.ModelInfo,
    decode_ms: float,
    machine_info: dict[str, object],
) -> dict[str, object]:
    by_level = {str(level.concurrency): level for level in levels}
    single = by_level.get("1") or levels[0]
    ratios = {key: round(level.images_per_s / raw.images_per_s, 3) for key, level in by_level.items()}
    return {
        "raw_images_per_s": round(raw.images_per_s, 1),
        "service_images_per_s": {key: round(level.images_per_s, 1) for key, level in by_level.items()},
        "ratio_at_16": ratios.get("16"),
        "fp32_raw_images_per_s": round(fp32_raw.images_per_s, 1),
        "model_variant": model_variant(settings.model_path),
        "ratio_to_fp32_raw_at_16": _ratio(by_level.get("16"), fp32_raw),
        "p50_ms_single": round(percentile(single.latencies_ms, 50), 2),
        "p99_ms_single": round(percentile(single.latencies_ms, 99), 2),
        "rss_mb": round(memory["rss_mb"], 1),
        "ratios": ratios,
        "target_ratio": TARGET_RATIO,
        "peak_rss_mb": round(memory["peak_rss_mb"], 1),
        "raw_setting": raw.setting,
        "raw_images_per_s_by_setting": {k: round(v, 1) for k, v in raw.images_per_s_by_setting.items()},
        "raw_batches_timed": len(raw.batch_seconds),
        "service_mean_images_per_s": {k: round(v.mean_images_per_s, 1) for k, v in by_level.items()},
        "service_window_images_per_s": {
            k: [round(r, 1) for r in v.window_images_per_s] for k, v in by_level.items()
        },
        "single_requests_measured": len(single.latencies_ms),
        "cpu_ms_per_image": {
            "raw": round(raw.cpu_ms_per_image, 2),
            "decode_one_core": round(decode_ms, 2),
            "service": {k: round(v.service_cpu_ms_per_image, 2) for k, v in by_level.items()},
            "client": {k: round(v.client_cpu_ms_per_image, 2) for k, v in by_level.items()},
        },
        "model": {"name": model.name, "version": model.version, "backend": model.backend},
        "settings": {
            "raw_batch": RAW_BATCH,
            "batch_max_images": int(os.environ.get("BATCH_MAX_IMAGES", DEFAULT_BATCH_MAX_IMAGES)),
            "batch_max_wait_ms": float(os.environ.get("BATCH_MAX_WAIT_MS", DEFAULT_BATCH_MAX_WAIT_MS)),
            "ort_threads": int(os.environ.get("ORT_THREADS", "0")),
            # The yardstick and the service run on the same providers (ORT_PROVIDERS reaches both).
            "ort_providers": list(ort_providers_from_env()),
            "query_jpeg_sides": list(QUERY_SIDES),
            "query_images": settings.paintings * len(QUERY_SIDES),
            "seconds_per_level": settings.seconds_per_level,
            "warmup_seconds": settings.warmup_seconds,
        },
        "machine": {**machine_info, "load_average_at_end": [round(load, 2) for load in os.getloadavg()]},
        "client": "one asyncio grpc.aio process on the same machine, one channel, pre-serialised requests",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def model_variant(model_path: Path) -> str:
    """ "int8" for a quantized model (its sidecar says how), else "fp32"."""
    meta = json.loads(model_path.with_name("model.json").read_text())
    return "int8" if "quantization" in meta else "fp32"


def _ratio(level: LevelResult | None, raw: RawResult) -> float | None:
    return None if level is None else round(level.images_per_s / raw.images_per_s, 3)


def print_report(report: dict[str, Any]) -> None:
    raw, cpu, ratios = report["raw_images_per_s"], report["cpu_ms_per_image"], report["ratios"]
    print(f"\nraw onnxruntime, batch {RAW_BATCH}, pre-decoded pixels: {raw:.1f} images/s")
    print(f"{'concurrency':>11} {'images/s':>9} {'service/raw':>11} {'service cpu ms/img':>18} {'client':>7}")
    for key, rate in report["service_images_per_s"].items():
        service_cpu, client_cpu = cpu["service"][key], cpu["client"][key]
        print(f"{key:>11} {rate:>9.1f} {ratios[key]:>11.3f} {service_cpu:>18.2f} {client_cpu:>7.2f}")
    print(f"single image latency: p50 {report['p50_ms_single']} ms, p99 {report['p99_ms_single']} ms")
    print(f"encoder resident memory after the run: {report['rss_mb']} MB (peak {report['peak_rss_mb']} MB)")
    print(f"cpu ms/image: raw {cpu['raw']}, decode on one core {cpu['decode_one_core']}")
    verdict = "meets" if (report["ratio_at_16"] or 0) >= TARGET_RATIO else "misses"
    print(f"service/raw at concurrency 16: {report['ratio_at_16']} ({verdict} the {TARGET_RATIO} target)")
    print(
        f"model variant {report['model_variant']}; fp32 raw {report['fp32_raw_images_per_s']} images/s; "
        f"service at 16 / fp32 raw: {report['ratio_to_fp32_raw_at_16']}"
    )


def run(settings: BenchSettings) -> dict[str, object]:
    info = EmbeddingModelInfo.from_sidecar(settings.model_path, backend="onnxruntime")
    machine_info = machine()
    queries = build_query_jpegs(settings.catalogue_dir, settings.paintings)
    decode_ms = decode_ms_per_image(queries, info.input_size)
    print(f"raw onnxruntime, batch {RAW_BATCH} ...", flush=True)
    yardstick = RawYardstick(
        settings.model_path,
        info.input_name,
        decode_batch(queries, info.input_size, RAW_BATCH),
        int(os.environ.get("ORT_THREADS", "0")),
        ort_providers_from_env(),
    )
    yardsticks = [yardstick]
    if settings.fp32_model_path.resolve() != settings.model_path.resolve():
        fp32_info = EmbeddingModelInfo.from_sidecar(settings.fp32_model_path, backend="onnxruntime")
        yardsticks.append(
            RawYardstick(
                settings.fp32_model_path,
                fp32_info.input_name,
                decode_batch(queries, fp32_info.input_size, RAW_BATCH),
                int(os.environ.get("ORT_THREADS", "0")),
                ort_providers_from_env(),
            )
        )
    for each in yardsticks:
        each.sample(settings.raw_seconds / (len(settings.concurrencies) + 1))
    print(f"encoder service, {len(queries)} query JPEGs, one per request ...", flush=True)
    levels, memory, model = asyncio.run(measure_service(settings, queries, yardsticks))
    raw, fp32_raw = yardstick.result(), yardsticks[-1].result()
    report = build_report(settings, raw, fp32_raw, levels, memory, model, decode_ms, machine_info)
    settings.output.parent.mkdir(parents=True, exist_ok=True)
    settings.output.write_text(json.dumps(report, indent=2) + "\n")
    print_report(report)
    print(f"written {settings.output}")
    return report


def add_level_arguments(parser: argparse.ArgumentParser, output: Path, raw_seconds: float) -> None:
    """The options every bench that drives a service at several concurrency levels takes."""
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--catalogue", type=Path, default=DEFAULT_CATALOGUE)
    parser.add_argument("--output", type=Path, default=output)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per concurrency level")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per level")
    parser.add_argument(
        "--raw-seconds",
        type=float,
        default=raw_seconds,
        help="yardstick seconds, spread before and between levels",
    )


def check_level_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if not args.model.is_file():
        parser.error(f"{args.model} is missing: run `make model`")
    if min(args.concurrency) < 1 or args.seconds <= 0 or args.warmup < 0 or args.raw_seconds <= 0:
        parser.error("--concurrency >= 1, --seconds > 0, --warmup >= 0 and --raw-seconds > 0")


def parse_args(argv: Sequence[str] | None) -> BenchSettings:
    parser = argparse.ArgumentParser(prog="python -m bench.encoder", description=__doc__.split("\n")[0])
    add_level_arguments(parser, DEFAULT_OUTPUT, raw_seconds=15.0)
    parser.add_argument(
        "--fp32-model",
        type=Path,
        default=DEFAULT_MODEL,
        help="the fp32 model whose raw speed is the yardstick",
    )
    args = parser.parse_args(argv)
    check_level_arguments(parser, args)
    return BenchSettings(
        model_path=args.model.resolve(),
        catalogue_dir=args.catalogue,
        output=args.output,
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
