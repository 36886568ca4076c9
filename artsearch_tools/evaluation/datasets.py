"""The evaluation sets, as streams of (id, label, pixels) in the encoder's own preprocessing.

* GCompris paintings: the demo catalogue's full paintings (the gallery), every jigsaw piece, cut-out shape
  and detail crop that GCompris made from them (queries), and seeded badly-photographed copies (queries).
* Categories: clip art (Debian ``openclipart-png``) and Tux Paint stamps (``tuxpaint-stamps-default``),
  labelled by their folder (up to two levels: ``animals/birds``). PNGs only: the SVGs of the stamps are
  skipped (no SVG renderer is installed); images over a pixel cap are skipped before decoding.
"""

from __future__ import annotations

import io
import logging
import os
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artsearch_tools.evaluation.photo_variants import VARIANT_KINDS, photo_variants
from services.encoder.images import ImageRejected, decode_image, to_rgb

log = logging.getLogger(__name__)

INPUT_SIZE = 224
# Category images above this are skipped unread: a handful of clip-art PNGs are 170-620 Mpx posters.
CATEGORY_MAX_PIXELS = 4_000_000


@dataclass(frozen=True)
class EvalImage:
    id: str
    label: str
    pixels: np.ndarray  # uint8 [INPUT_SIZE, INPUT_SIZE, 3], as the encoder service would see it
    kind: str = ""  # what sort of query it is (piece kind, variant kind), for per-kind breakdowns


def pixels_from_image(image: Image.Image, size: int = INPUT_SIZE) -> np.ndarray:
    """The service's preprocessing (`decode_image`) applied to an already decoded picture."""
    resized = to_rgb(image).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8).copy()


def pixels_from_file(path: Path, size: int = INPUT_SIZE, max_pixels: int = 50_000_000) -> np.ndarray:
    """Exactly what the service does with an uploaded file. Raises ImageRejected."""
    return decode_image(Path(path).read_bytes(), size=size, max_pixels=max_pixels)


# --------------------------------------------------------------------------------------------------
# GCompris paintings
# --------------------------------------------------------------------------------------------------


def gcompris_catalogue(cache_dir: Path, debs_dir: Path) -> Path:
    """The demo catalogue (full paintings as JPEG + metadata.csv) under `cache_dir`, built once."""
    from artsearch_tools.catalogue.gcompris import build_gcompris_catalogue

    folder = Path(cache_dir) / "gcompris-catalogue"
    if not (folder / "metadata.csv").is_file():
        log.info("building the GCompris catalogue in %s", folder)
        build_gcompris_catalogue(folder, cache_dir=debs_dir)
    return folder


def painting_files(catalogue_dir: Path) -> list[tuple[str, Path]]:
    """(painting id, JPEG path) of every painting in the catalogue, sorted by id."""
    from artsearch_tools.catalogue.folder import load_catalogue

    catalogue = load_catalogue(Path(catalogue_dir))
    return sorted((entry.id, catalogue.path_of(entry)) for entry in catalogue.entries)


def gcompris_paintings(catalogue_dir: Path) -> Iterator[EvalImage]:
    """The gallery: each full painting, decoded from its JPEG as ingest would."""
    for painting_id, path in painting_files(catalogue_dir):
        yield EvalImage(id=painting_id, label=painting_id, pixels=pixels_from_file(path), kind="painting")


def gcompris_pieces(extracted_root: Path) -> Iterator[EvalImage]:
    """Every jigsaw piece, cut-out shape and detail crop, labelled with its painting. Pieces are RGBA;
    the transparent outside of a jigsaw piece becomes white, as it would in an upload."""
    from artsearch_tools.catalogue.gcompris import iter_puzzle_pieces

    for piece in iter_puzzle_pieces(Path(extracted_root)):
        yield EvalImage(
            id=piece.resource, label=piece.painting_id, pixels=pixels_from_image(piece.image), kind=piece.kind
        )


def gcompris_photos(
    catalogue_dir: Path, seed: int, kinds: Sequence[str] = tuple(VARIANT_KINDS)
) -> Iterator[EvalImage]:
    """One badly-photographed copy of each kind per painting, encoded as the phone would (JPEG q90) unless
    the variant already went through JPEG."""
    for painting_id, path in painting_files(catalogue_dir):
        with Image.open(path) as opened:
            painting = opened.convert("RGB")
        for variant in photo_variants(painting, seed=seed, key=painting_id, kinds=kinds):
            yield EvalImage(
                id=f"{painting_id}/{variant.kind}",
                label=painting_id,
                pixels=through_jpeg(variant.image),
                kind=variant.kind,
            )


def through_jpeg(image: Image.Image, quality: int = 90) -> np.ndarray:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return decode_image(buffer.getvalue(), size=INPUT_SIZE, max_pixels=50_000_000)


# --------------------------------------------------------------------------------------------------
# Labelled category sets
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CategorySource:
    name: str
    package: str  # Debian package
    images_dir: str  # inside the extracted package
    licence: str


CATEGORY_SOURCES: dict[str, CategorySource] = {
    "openclipart": CategorySource(
        "openclipart", "openclipart-png", "usr/share/openclipart/png", "public domain"
    ),
    "tuxpaint": CategorySource("tuxpaint", "tuxpaint-stamps-default", "usr/share/tuxpaint/stamps", "GPL-2"),
}


@dataclass(frozen=True)
class CategorySelection:
    """Which files of a category set are evaluated, and why the others are not."""

    files: tuple[tuple[Path, str], ...]  # (path, label), sorted by path
    total_files: int  # PNGs in the package
    categories: int
    dropped_small_categories: int  # categories with fewer than min_per_category files
    sampled: bool


def category_label(relative: Path, levels: int = 2) -> str:
    """The folder of a file, at most `levels` deep: ``animals/birds/owl.png`` -> ``animals/birds``."""
    folders = relative.parts[:-1]
    return "/".join(folders[:levels]) if folders else "."


def select_category_files(
    images_dir: Path,
    *,
    levels: int = 2,
    min_per_category: int = 10,
    max_images: int | None = 2000,
    seed: int = 0,
) -> CategorySelection:
    """Every PNG under `images_dir`, labelled by folder; categories smaller than `min_per_category` are
    dropped (too few relevant items for precision@10 to mean much). Above `max_images`, a seeded sample
    stratified by category: every category keeps min(size, cap) files, with the cap the largest that fits."""
    by_label: dict[str, list[Path]] = defaultdict(list)
    total = 0
    for path in sorted(Path(images_dir).rglob("*.png")):
        total += 1
        by_label[category_label(path.relative_to(images_dir), levels)].append(path)
    kept = {label: paths for label, paths in by_label.items() if len(paths) >= min_per_category}
    sizes = {label: len(paths) for label, paths in kept.items()}
    cap = stratified_cap(sizes, max_images) if max_images is not None else None
    rng = np.random.default_rng(seed)
    files: list[tuple[Path, str]] = []
    for label in sorted(kept):
        paths = kept[label]
        if cap is not None and len(paths) > cap:
            chosen = rng.choice(len(paths), size=cap, replace=False)
            paths = [paths[i] for i in sorted(chosen)]
        files.extend((path, label) for path in paths)
    return CategorySelection(
        files=tuple(sorted(files)),
        total_files=total,
        categories=len(kept),
        dropped_small_categories=len(by_label) - len(kept),
        sampled=cap is not None and any(size > cap for size in sizes.values()),
    )


def stratified_cap(sizes: dict[str, int], max_images: int) -> int:
    """The largest per-category cap c with Σ min(size, c) <= max_images (every size when they all fit)."""
    if not sizes:
        return 0
    if sum(sizes.values()) <= max_images:
        return max(sizes.values())
    low, high = 0, max(sizes.values())
    while low < high:
        middle = (low + high + 1) // 2
        if sum(min(size, middle) for size in sizes.values()) <= max_images:
            low = middle
        else:
            high = middle - 1
    return low


def category_images(
    selection: CategorySelection, images_dir: Path, max_pixels: int = CATEGORY_MAX_PIXELS
) -> Iterator[EvalImage]:
    """The selected files, decoded as the service would; files over `max_pixels` (or broken) are skipped
    with a log line."""
    for path, label in selection.files:
        try:
            pixels = pixels_from_file(path, max_pixels=max_pixels)
        except ImageRejected as rejection:
            log.info("skipping %s: %s", path.relative_to(images_dir), rejection.reason)
            continue
        yield EvalImage(id=os.fspath(path.relative_to(images_dir)), label=label, pixels=pixels)
