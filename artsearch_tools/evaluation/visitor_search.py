"""`artsearch eval photos`: does a visitor's photo of a painting find that painting, through the gateway?

Every visitor photo (`visitor_photos`) of every catalogue painting is sent, one at a time, to the running
gateway's public `POST /v1/search` (multipart field `image`), as a client would; the painting's own artwork
id is looked for in the answer: top-1 and top-5 per kind and overall, and the single-query latency seen by
the client (p50, p90). The index size (the search service's Count) and the query parameters are recorded
beside the numbers.

The photos are made once per (generator source, painting, seed, kind; for a kind that hangs the collection's
other paintings beside the one photographed, those too) and kept as JPEG files under a cache folder, so that
runs against two versions of the stack send exactly the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from artsearch_tools.catalogue.folder import Catalogue, CatalogueEntry, load_catalogue
from artsearch_tools.evaluation import photo_variants, visitor_photos
from artsearch_tools.evaluation.visitor_photos import (
    CLEAN_KINDS,
    DEVELOPMENT_SEEDS,
    HARD_KINDS,
    NEIGHBOUR_KINDS,
    REPORT_SEEDS,
    VISITOR_KINDS,
)

log = logging.getLogger(__name__)

JPEG_QUALITY = 95  # the photos already went through a phone's JPEG; this one only carries them
TOP_K = 5


@dataclass(frozen=True)
class PhotoQuery:
    painting_id: str
    kind: str
    seed: int
    path: Path  # the photo's JPEG file


@dataclass(frozen=True)
class Outcome:
    painting_id: str
    kind: str
    seed: int
    rank: int | None  # 1-based place of the painting in the answer; None: not among the results
    top_id: str | None
    latency_ms: float
    error: str | None = None
    gateway_ms: Mapping[str, float] | None = None  # the answer's timings_ms: the gateway's steps


def generator_digest() -> str:
    """Changes whenever the photo generators change: cached photos of another version are not reused."""
    digest = hashlib.sha256()
    for module in (visitor_photos, photo_variants):
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:12]


def seed_set_name(seeds: Sequence[int]) -> str:
    if tuple(seeds) == REPORT_SEEDS:
        return "report"
    if set(seeds) <= set(DEVELOPMENT_SEEDS):
        return "development"
    if set(seeds) & set(REPORT_SEEDS):
        return "custom (includes report seeds)"
    return "custom"


class PaintingFiles(Sequence[Image.Image]):
    """Paintings read from their files only when taken: a neighbour kind hangs two of the collection's
    others beside the painting photographed, and the other thirty-odd are never decoded."""

    def __init__(self, paths: Sequence[str]) -> None:
        self._paths = tuple(paths)

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, index: int) -> Image.Image:  # one painting at a time: no slices
        with Image.open(self._paths[index]) as opened:
            return opened.convert("RGB")


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _photo_path(
    cache: Path, entry: CatalogueEntry, painting: str, seed: int, kind: str, neighbours: str
) -> Path:
    """Where the photo is cached: by the painting's file digest and, for a kind that hangs the collection's
    other paintings beside it, the digest of those (`_neighbours_digest`)."""
    suffix = f".{neighbours}" if kind in NEIGHBOUR_KINDS else ""
    return cache / str(seed) / kind / f"{entry.id}.{painting}{suffix}.jpg"


def _neighbours_digest(digests: Mapping[str, str], painting_id: str) -> str:
    """Names the other paintings in their order, by content: another catalogue gives other neighbours."""
    others = "".join(f"{key}={value};" for key, value in digests.items() if key != painting_id)
    return hashlib.sha256(others.encode()).hexdigest()[:12]


PhotoJob = tuple[str, str, int, tuple[tuple[str, str], ...], tuple[str, ...]]


def _make_photos(job: PhotoJob) -> int:
    """Writes the missing photos of one painting and seed (a worker process's unit of work): the job is
    (painting file, id, seed, ((kind, photo path), ...), the other paintings' files)."""
    image_path, painting_id, seed, targets, neighbour_paths = job
    with Image.open(image_path) as opened:
        painting = opened.convert("RGB")
    kinds = tuple(kind for kind, _ in targets)
    paths = dict(targets)
    photos = visitor_photos.visitor_photos(
        painting, seed=seed, key=painting_id, kinds=kinds, neighbours=PaintingFiles(neighbour_paths)
    )
    for photo in photos:
        buffer = io.BytesIO()
        photo.image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        path = Path(paths[photo.kind])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(buffer.getvalue())
        partial.replace(path)  # a run stopped half-way never leaves a torn photo in the cache
    return len(kinds)


def prepare_photos(
    catalogue: Catalogue,
    seeds: Sequence[int],
    kinds: Sequence[str],
    cache_dir: Path,
    workers: int = 1,
) -> list[PhotoQuery]:
    """The photo of every (painting, seed, kind), made where the cache lacks it."""
    unknown = [kind for kind in kinds if kind not in VISITOR_KINDS]
    if unknown:
        raise ValueError(f"unknown visitor photo kinds {unknown}; choose from {list(VISITOR_KINDS)}")
    hanging = sorted(NEIGHBOUR_KINDS & set(kinds))
    if hanging and len(catalogue.entries) < 2:
        raise ValueError(f"{', '.join(hanging)} hangs other paintings beside each one: the catalogue has one")
    cache = cache_dir / generator_digest()
    files = {entry.id: catalogue.root / entry.filename for entry in catalogue.entries}
    digests = {painting_id: _file_digest(path) for painting_id, path in files.items()}
    queries: list[PhotoQuery] = []
    jobs: list[PhotoJob] = []
    for entry in catalogue.entries:
        # Only a neighbour kind depends on the other paintings: naming them costs O(catalogue) per painting.
        neighbours = _neighbours_digest(digests, entry.id) if hanging else ""
        for seed in seeds:
            missing = []
            for kind in kinds:
                path = _photo_path(cache, entry, digests[entry.id], seed, kind, neighbours)
                queries.append(PhotoQuery(entry.id, kind, seed, path))
                if not path.is_file():
                    missing.append((kind, str(path)))
            if missing:
                hangs = any(kind in NEIGHBOUR_KINDS for kind, _ in missing)
                others = tuple(str(path) for key, path in files.items() if key != entry.id) if hangs else ()
                jobs.append((str(files[entry.id]), entry.id, seed, tuple(missing), others))
    if jobs:
        started = time.perf_counter()
        log.info("making %d photos in %s (%d workers) ...", sum(len(j[3]) for j in jobs), cache, workers)
        if workers > 1:
            # Spawned, not forked: a worker forked while another thread starts a service would hold that
            # Popen's exec-status pipe open, and the Popen would wait for the worker to end.
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                made = sum(pool.map(_make_photos, jobs))
        else:
            made = sum(map(_make_photos, jobs))
        log.info("made %d photos in %.0f s", made, time.perf_counter() - started)
    return queries


def search_photo(client: httpx.Client, gateway: str, query: PhotoQuery, params: Mapping[str, str]) -> Outcome:
    """One query as a client sends it; the painting's rank in the answer and the client's wall time."""
    data = query.path.read_bytes()
    started = time.perf_counter()
    try:
        reply = client.post(
            f"{gateway}/v1/search", params=dict(params), files={"image": ("photo.jpg", data, "image/jpeg")}
        )
    except httpx.HTTPError as error:
        elapsed = (time.perf_counter() - started) * 1000
        return Outcome(
            query.painting_id, query.kind, query.seed, None, None, elapsed, f"{type(error).__name__}"
        )
    elapsed = (time.perf_counter() - started) * 1000
    if reply.status_code != 200:
        error = f"HTTP {reply.status_code}: {reply.text[:200]}"
        return Outcome(query.painting_id, query.kind, query.seed, None, None, elapsed, error)
    answer = reply.json()
    ids = [result["id"] for result in answer["results"]]
    rank = ids.index(query.painting_id) + 1 if query.painting_id in ids else None
    top = ids[0] if ids else None
    steps = answer.get("timings_ms") or {}
    return Outcome(query.painting_id, query.kind, query.seed, rank, top, elapsed, gateway_ms=steps)


def _rates(outcomes: Sequence[Outcome]) -> dict[str, float | int]:
    count = len(outcomes)
    if not count:
        return {"count": 0, "top1": 0.0, "top5": 0.0, "errors": 0}
    return {
        "count": count,
        "top1": round(sum(o.rank == 1 for o in outcomes) / count, 4),
        "top5": round(sum(o.rank is not None and o.rank <= TOP_K for o in outcomes) / count, 4),
        "errors": sum(o.error is not None for o in outcomes),
    }


def _percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summarise(outcomes: Sequence[Outcome], kinds: Sequence[str]) -> dict[str, Any]:
    """Per kind, overall, hard and clean kinds; latency of the answered queries."""
    latencies = [o.latency_ms for o in outcomes if o.error is None]
    return {
        "per_kind": {kind: _rates([o for o in outcomes if o.kind == kind]) for kind in kinds},
        "overall": _rates(outcomes),
        "hard_kinds": _rates([o for o in outcomes if o.kind in HARD_KINDS]),
        "clean_kinds": _rates([o for o in outcomes if o.kind in CLEAN_KINDS]),
        "latency_ms": {
            "p50": round(statistics.median(latencies), 1) if latencies else None,
            "p90": round(_percentile(latencies, 0.9), 1) if latencies else None,
            "mean": round(statistics.fmean(latencies), 1) if latencies else None,
            "queries": len(latencies),
        },
        "gateway_steps_p50_ms": _step_medians(outcomes),
        "misses": [
            {"painting": o.painting_id, "kind": o.kind, "seed": o.seed, "rank": o.rank, "top": o.top_id}
            | ({"error": o.error} if o.error else {})
            for o in outcomes
            if o.rank != 1
        ],
    }


def _step_medians(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """The median of each step the gateway timed (encode, search, influence, ...): where the time goes."""
    steps: dict[str, list[float]] = {}
    for outcome in outcomes:
        for step, ms in (outcome.gateway_ms or {}).items():
            steps.setdefault(step, []).append(float(ms))
    return {step: round(statistics.median(values), 1) for step, values in steps.items()}


def index_count(search_address: str, collection: str = "") -> int:
    """Points in the search service's collection (its Count RPC; "" is the service's default)."""
    from artsearch.grpc_client import open_channel
    from artsearch.v1 import search_pb2, search_pb2_grpc

    async def count() -> int:
        async with open_channel(search_address) as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            reply = await stub.Count(search_pb2.CountRequest(collection=collection), timeout=10)
            return int(reply.count)

    return asyncio.run(count())


def _answer_context(client: httpx.Client, gateway: str, query: PhotoQuery, params: Mapping[str, str]) -> dict:
    """What the gateway says about how it searched (weights, pool, collection, model), from one answer."""
    data = query.path.read_bytes()
    reply = client.post(
        f"{gateway}/v1/search", params=dict(params), files={"image": ("q.jpg", data, "image/jpeg")}
    )
    reply.raise_for_status()
    answer = reply.json()
    keys = ("weights", "pool", "collection", "model", "degraded")
    return {key: answer.get(key) for key in keys}


def run_photo_evaluation(
    gateway: str,
    catalogue_dir: Path,
    *,
    seeds: Sequence[int] = DEVELOPMENT_SEEDS,
    kinds: Sequence[str] = tuple(VISITOR_KINDS),
    cache_dir: Path = Path(".cache/visitor-photos"),
    params: Mapping[str, str] | None = None,
    search_address: str | None = None,
    paintings: int | None = None,
    workers: int = 1,
    timeout_s: float = 60.0,
    progress: Callable[[str], None] = log.info,
) -> dict[str, Any]:
    """The whole evaluation; the result is what `artsearch eval photos` writes as JSON."""
    gateway = gateway.rstrip("/")
    catalogue = load_catalogue(catalogue_dir)
    if paintings is not None:
        catalogue = replace(catalogue, entries=catalogue.entries[:paintings])
    query_params = {"k": str(TOP_K), **dict(params or {})}
    queries = prepare_photos(catalogue, seeds, kinds, cache_dir, workers)
    with httpx.Client(timeout=timeout_s) as client:
        readiness = client.get(f"{gateway}/readyz").json()
        if not readiness.get("ready"):
            raise RuntimeError(f"the gateway at {gateway} is not ready: {readiness}")
        context = _answer_context(client, gateway, queries[0], query_params)  # also warms the stack up
        outcomes = _run_queries(client, gateway, queries, query_params, progress)
    result: dict[str, Any] = {
        "what": "visitor photos of each catalogue painting sent to POST /v1/search; its own id top-1 / top-5",
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "gateway": gateway,
        "catalogue": {
            "path": str(catalogue_dir),
            "name": catalogue.name,
            "paintings": len(catalogue.entries),
        },
        "seeds": list(seeds),
        "seed_set": seed_set_name(seeds),
        "kinds": list(kinds),
        "generator": generator_digest(),
        "query": {"route": "POST /v1/search (multipart image)", "params": query_params, **context},
        "index": {
            "count": index_count(search_address) if search_address else None,
            "counted_by": f"search Count at {search_address}" if search_address else None,
        },
    }
    result.update(summarise(outcomes, kinds))
    return result


def _run_queries(
    client: httpx.Client,
    gateway: str,
    queries: Iterable[PhotoQuery],
    params: Mapping[str, str],
    progress: Callable[[str], None],
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    queries = list(queries)
    started = time.perf_counter()
    for number, query in enumerate(queries, 1):
        outcome = search_photo(client, gateway, query, params)
        if outcome.error:
            log.warning("%s %s seed %d: %s", query.painting_id, query.kind, query.seed, outcome.error)
        outcomes.append(outcome)
        if number % 100 == 0 or number == len(queries):
            top1 = sum(o.rank == 1 for o in outcomes) / len(outcomes)
            elapsed = time.perf_counter() - started
            progress(f"{number}/{len(queries)} queries, top-1 so far {top1:.3f}, {elapsed:.0f} s")
    return outcomes


def markdown_table(result: Mapping[str, Any]) -> str:
    """Per kind top-1 / top-5, overall, p50 latency: the table of docs/evaluation.md."""
    lines = ["| kind | top-1 | top-5 | photos |", "|---|---|---|---|"]
    for kind, rates in result["per_kind"].items():
        lines.append(f"| {kind} | {rates['top1']:.2f} | {rates['top5']:.2f} | {rates['count']} |")
    for label, key in (
        ("hard kinds", "hard_kinds"),
        ("clean kinds", "clean_kinds"),
        ("**overall**", "overall"),
    ):
        rates = result[key]
        lines.append(f"| {label} | {rates['top1']:.2f} | {rates['top5']:.2f} | {rates['count']} |")
    latency = result["latency_ms"]
    lines.append("")
    lines.append(
        f"single-query latency at the client: p50 {latency['p50']} ms, p90 {latency['p90']} ms; "
        f"index {result['index']['count']} points; seeds {result['seed_set']} {result['seeds']}"
    )
    return "\n".join(lines)


def comparison_table(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """Before and after side by side per kind (top-1, top-5), the summary rows and the p50 latency."""
    lines = [
        "| kind | top-1 before | top-1 after | top-5 before | top-5 after |",
        "|---|---|---|---|---|",
    ]

    def row(label: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
        return f"| {label} | {old['top1']:.2f} | {new['top1']:.2f} | {old['top5']:.2f} | {new['top5']:.2f} |"

    for kind, rates in before["per_kind"].items():
        if kind in after["per_kind"]:
            lines.append(row(kind, rates, after["per_kind"][kind]))
    for label, key in (
        ("hard kinds", "hard_kinds"),
        ("clean kinds", "clean_kinds"),
        ("**overall**", "overall"),
    ):
        lines.append(row(label, before[key], after[key]))
    old, new = before["latency_ms"]["p50"], after["latency_ms"]["p50"]
    ratio = f" ({new / old:.2f} x)" if old and new else ""
    lines.append(f"| single-query p50 latency | {old} ms | {new} ms{ratio} | | |")
    return "\n".join(lines)
