"""Vectors for the search benchmark: real image descriptors, grown to 10k / 100k artworks.

Random vectors say nothing about an approximate index (every point is about as far from every other one),
so the benchmark starts from real descriptors and keeps their cluster structure:

1. *Real*: the encoder's descriptors of real images — the demo catalogue's paintings and a seeded,
   category-stratified sample of Debian ``openclipart-png`` clip art — encoded in-process with the same
   preprocessing (`decode_image`), ONNX model and descriptor assembly
   (`services.encoder.aspect_builder.DescriptorAssembler`: content, style and colour aspects) as the encoder
   service; with a model or a tree that has no assembler yet, the L2-normalised global features alone.
   Each image's label is its clip-art category (the demo paintings are labelled ``painting``).
2. *Held out*: a seeded sample of the real descriptors is kept apart as queries; the catalogue never holds
   them, nor anything synthesised from them.
3. *Grown*: each synthetic artwork is a random convex combination ``t*a + (1-t)*b`` of a real descriptor
   ``a`` and one of its 10 nearest real neighbours ``b`` (``t`` uniform in [0, 1]), plus Gaussian noise of
   standard deviation ``NOISE / sqrt(d)`` per component (about NOISE in norm), renormalised. It inherits
   the label of the nearer parent. Years are uniform in [1400, 2020].

Everything is seeded and cached under ``.cache/bench/`` (keyed by the model's hash and the settings), so
a second run reads it back in a second.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from artsearch.config import ConfigError
from artsearch_tools.catalogue.debian import fetch_deb_package
from services.encoder.images import ImageRejected, decode_image

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
CACHE_DIR = REPO_ROOT / ".cache/bench"
DEBS_DIR = REPO_ROOT / ".cache/debs"
CLIPART_PACKAGE = "openclipart-png"
CLIPART_DIR = "usr/share/openclipart/png"
# Clip-art files over this are skipped unread (a few are posters of hundreds of megapixels).
MAX_FILE_PIXELS = 4_000_000
ENCODE_BATCH = 32
NEIGHBOURS = 10
NOISE = 0.05
YEARS = (1400, 2020)


@dataclass(frozen=True)
class RealDescriptors:
    vectors: np.ndarray  # float32 [N, D], unit rows
    labels: list[str]
    sources: list[str]  # file name of each image, relative to its collection


@dataclass(frozen=True)
class BenchVectors:
    """A synthetic catalogue of `len(vectors)` artworks and held-out real queries."""

    vectors: np.ndarray  # float32 [n, D], unit rows
    styles: np.ndarray  # str label of each artwork
    years: np.ndarray  # int32
    queries: np.ndarray  # float32 [q, D], unit rows: real descriptors the catalogue does not contain


# --- real descriptors --------------------------------------------------------------------------------


def clipart_files(root: Path, count: int, seed: int) -> list[tuple[Path, str]]:
    """A seeded sample of `count` clip-art PNGs, stratified by top-level category: (path, category)."""
    by_label: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*.png")):
        by_label[path.relative_to(root).parts[0]].append(path)
    total = sum(len(paths) for paths in by_label.values())
    rng = np.random.default_rng(seed)
    chosen: list[tuple[Path, str]] = []
    for label in sorted(by_label):
        paths = by_label[label]
        take = min(len(paths), max(1, round(count * len(paths) / total)))
        picked = rng.choice(len(paths), size=take, replace=False)
        chosen.extend((paths[i], label) for i in sorted(picked))
    return chosen[:count] if len(chosen) > count else chosen


def _decode(path: Path) -> np.ndarray | None:
    try:
        return decode_image(path.read_bytes(), size=224, max_pixels=MAX_FILE_PIXELS)
    except (ImageRejected, OSError) as error:
        log.debug("skipped %s: %s", path, error)
        return None


DescriptorFunction = Callable[[dict[str, np.ndarray], np.ndarray], np.ndarray]


def descriptor_function(model_path: Path) -> tuple[DescriptorFunction, str]:
    """(outputs, pixels) -> unit descriptors, as the encoder service stores them, and its version."""
    from services.encoder.backends import EmbeddingModelInfo

    info = EmbeddingModelInfo.from_sidecar(model_path, backend="onnxruntime")
    try:
        from services.encoder.aspect_builder import DescriptorAssembler

        assembler = DescriptorAssembler(info)
    except (ImportError, ConfigError):  # a model (or tree) from before the aspects: content alone

        def content(outputs: dict[str, np.ndarray], pixels: np.ndarray) -> np.ndarray:
            features = outputs[info.features_output].astype(np.float32)
            return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)

        return content, f"{info.version}-content"
    return assembler, assembler.version


async def _encode(model_path: Path, files: list[tuple[Path, str]]) -> RealDescriptors:
    from services.encoder.backends import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend(model_path)
    describe, _ = descriptor_function(model_path)
    vectors: list[np.ndarray] = []
    labels: list[str] = []
    sources: list[str] = []
    started = time.perf_counter()
    # Decoding the next batch on a thread overlaps the model run on the current one.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode") as decoder:
        batches = [files[i : i + ENCODE_BATCH] for i in range(0, len(files), ENCODE_BATCH)]
        pending = decoder.submit(lambda batch=batches[0]: [_decode(p) for p, _ in batch]) if batches else None
        for index, batch in enumerate(batches):
            assert pending is not None
            decoded = pending.result()
            if index + 1 < len(batches):
                following = batches[index + 1]
                pending = decoder.submit(lambda batch=following: [_decode(p) for p, _ in batch])
            kept = [
                (pixels, entry) for pixels, entry in zip(decoded, batch, strict=True) if pixels is not None
            ]
            if not kept:
                continue
            pixels = np.stack([pixels for pixels, _ in kept])
            vectors.append(describe(await backend.embed(pixels), pixels).astype(np.float32))
            labels.extend(label for _, (_, label) in kept)
            sources.extend(path.name for _, (path, _) in kept)
            if index % 20 == 0:
                rate = len(labels) / (time.perf_counter() - started)
                log.info("encoded %d / %d images (%.0f img/s)", len(labels), len(files), rate)
    await backend.close()
    return RealDescriptors(np.concatenate(vectors), labels, sources)


def real_descriptors(
    model_path: Path, catalogue_dir: Path, clipart_images: int, seed: int
) -> RealDescriptors:
    """The real descriptors, from the cache when the same model and settings made them before."""
    model_hash = json.loads(model_path.with_name("model.json").read_text())["onnx_sha256"][:12]
    version = re.sub(r"[^A-Za-z0-9_.-]", "_", descriptor_function(model_path)[1])
    cache = CACHE_DIR / f"real-{model_hash}-{version}-{clipart_images}-{seed}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            vectors = stored["vectors"].astype(np.float32)
            return RealDescriptors(vectors, stored["labels"].tolist(), stored["sources"].tolist())
    paintings = [(path, "painting") for path in sorted(Path(catalogue_dir).glob("*.jpg"))]
    clipart_root = fetch_deb_package(CLIPART_PACKAGE, DEBS_DIR) / CLIPART_DIR
    files = paintings + clipart_files(clipart_root, clipart_images, seed)
    log.info("encoding %d real images with %s (cached afterwards in %s)", len(files), model_path, cache)
    real = asyncio.run(_encode(model_path, files))
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, vectors=real.vectors, labels=np.array(real.labels), sources=np.array(real.sources))
    partial.rename(cache)
    return real


# --- growing them ------------------------------------------------------------------------------------


def split_queries(real: RealDescriptors, queries: int, seed: int) -> tuple[RealDescriptors, np.ndarray]:
    """(the real descriptors the catalogue grows from, the held-out query descriptors)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real.labels))
    held, kept = np.sort(order[:queries]), np.sort(order[queries:])
    base = RealDescriptors(
        real.vectors[kept], [real.labels[i] for i in kept], [real.sources[i] for i in kept]
    )
    return base, real.vectors[held].astype(np.float32)


def nearest_neighbours(vectors: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of each row's k most similar other rows (cosine: unit rows)."""
    neighbours = np.empty((len(vectors), k), dtype=np.int64)
    for start in range(0, len(vectors), 1024):
        scores = vectors[start : start + 1024] @ vectors.T
        rows = np.arange(scores.shape[0])
        scores[rows, start + rows] = -np.inf  # not itself
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        neighbours[start : start + len(top)] = top
    return neighbours


def grow(base: RealDescriptors, count: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`count` artworks: the real ones first, then synthetic ones; (vectors, styles, years)."""
    rng = np.random.default_rng(seed)
    real_count = min(count, len(base.labels))
    vectors = np.empty((count, base.vectors.shape[1]), dtype=np.float32)
    labels = np.array(base.labels, dtype=object)
    styles = np.empty(count, dtype=object)
    vectors[:real_count] = base.vectors[:real_count]
    styles[:real_count] = labels[:real_count]
    synthetic = count - real_count
    if synthetic > 0:
        neighbours = nearest_neighbours(base.vectors, NEIGHBOURS)
        dimension = base.vectors.shape[1]
        for start in range(real_count, count, 8192):
            size = min(8192, count - start)
            first = rng.integers(0, len(base.labels), size=size)
            second = neighbours[first, rng.integers(0, NEIGHBOURS, size=size)]
            mix = rng.random(size, dtype=np.float32)[:, None]
            noise = rng.standard_normal((size, dimension), dtype=np.float32) * (NOISE / np.sqrt(dimension))
            block = mix * base.vectors[first] + (1 - mix) * base.vectors[second] + noise
            block /= np.linalg.norm(block, axis=1, keepdims=True)
            vectors[start : start + size] = block
            styles[start : start + size] = np.where(mix[:, 0] >= 0.5, labels[first], labels[second])
    years = rng.integers(YEARS[0], YEARS[1] + 1, size=count).astype(np.int32)
    return vectors, styles.astype(str), years


def bench_vectors(
    model_path: Path, catalogue_dir: Path, count: int, *, clipart_images: int, queries: int, seed: int
) -> BenchVectors:
    """`count` catalogue vectors and the held-out queries, cached under .cache/bench/."""
    real = real_descriptors(model_path, catalogue_dir, clipart_images, seed)
    key = hashlib.sha256(real.vectors.tobytes()).hexdigest()[:12]
    cache = CACHE_DIR / f"grown-{key}-{count}-{queries}-{seed}.npz"
    if cache.is_file():
        with np.load(cache) as stored:
            return BenchVectors(stored["vectors"], stored["styles"], stored["years"], stored["queries"])
    base, held_out = split_queries(real, queries, seed)
    vectors, styles, years = grow(base, count, seed)
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, vectors=vectors, styles=styles, years=years, queries=held_out)
    partial.rename(cache)
    return BenchVectors(vectors, styles, years, held_out)
