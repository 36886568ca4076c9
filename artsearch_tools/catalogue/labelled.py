"""Labelled catalogues from image sets (clip art, stamps, portraits, CIFAR): a bounded, label-stratified
sample copied into a catalogue folder with a metadata.csv whose ``style`` column holds the label.

The label goes in ``style`` so that everything that reads styles (filters, evaluation) works on these sets
unchanged; ``genre`` says what kind of picture it is (clip art, stamp, portrait, photo). The folder's
catalogue.json declares the labels subject categories, not art styles, so they never vote in a style
prediction (artsearch.style_vote).
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from artsearch.style_vote import CATEGORY
from artsearch_tools.catalogue.folder import CatalogueEntry, slugify, write_catalogue_info, write_metadata_csv
from artsearch_tools.evaluation.datasets import stratified_cap

EXTRA_COLUMNS = ("source", "license")


@dataclass(frozen=True)
class LabelledImage:
    relative: str  # where it goes in the catalogue folder, '/'-separated
    label: str
    title: str
    source: Path | None = None  # a file to copy; None when `write` makes the image


@dataclass(frozen=True)
class DatasetInfo:
    name: str  # id prefix and catalogue name
    genre: str
    license: str
    source: str  # where the images came from (package and version)


def sample_by_label(images: Sequence[LabelledImage], limit: int | None, seed: int = 0) -> list[LabelledImage]:
    """All of `images` when they fit in `limit`, else a seeded sample keeping every label: each label keeps
    min(its size, c) images with c the largest cap that fits. Sorted by path."""
    if limit is None or len(images) <= limit:
        return sorted(images, key=lambda image: image.relative)
    by_label: dict[str, list[LabelledImage]] = defaultdict(list)
    for image in sorted(images, key=lambda image: image.relative):
        by_label[image.label].append(image)
    quota = label_quotas({label: len(group) for label, group in by_label.items()}, limit)
    rng = np.random.default_rng(seed)
    chosen: list[LabelledImage] = []
    for label in sorted(by_label):
        group = by_label[label]
        if len(group) > quota[label]:
            group = [group[i] for i in sorted(rng.choice(len(group), size=quota[label], replace=False))]
        chosen.extend(group)
    return sorted(chosen, key=lambda image: image.relative)


def label_quotas(sizes: dict[str, int], limit: int) -> dict[str, int]:
    """Images per label summing to min(limit, total): every label min(size, c) with c the largest cap that
    fits, then the slots left over one each to the largest labels still above c."""
    cap = stratified_cap(sizes, limit)
    quota = {label: min(size, cap) for label, size in sizes.items()}
    left = limit - sum(quota.values())
    for label in sorted(sizes, key=lambda name: (-sizes[name], name)):
        if left <= 0:
            break
        if sizes[label] > quota[label]:
            quota[label] += 1
            left -= 1
    return quota


def image_pixels(path: Path) -> int | None:
    """Width x height from the file's header (nothing decoded), None when it is not a readable image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError):
        return None
    return width * height


def write_labelled_catalogue(
    output: Path,
    dataset: DatasetInfo,
    images: Iterable[LabelledImage],
    write: Callable[[LabelledImage, Path], None] | None = None,
) -> list[CatalogueEntry]:
    """Copies (or `write`s) each image to ``output/<relative>`` and writes ``output/metadata.csv`` and
    ``output/catalogue.json`` (the labels are categories)."""
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    entries: list[CatalogueEntry] = []
    ids: set[str] = set()
    for image in images:
        target = output / image.relative
        target.parent.mkdir(parents=True, exist_ok=True)
        if image.source is not None:
            shutil.copyfile(image.source, target)
        elif write is not None:
            write(image, target)
        else:
            raise ValueError(f"{image.relative}: no source file and no writer")
        entry = entry_for(dataset, image)
        suffix = 2
        while entry.id in ids:  # two paths that slugify alike
            entry = replace(entry, id=f"{entry_for(dataset, image).id}-{suffix}")
            suffix += 1
        ids.add(entry.id)
        entries.append(entry)
    write_metadata_csv(output / "metadata.csv", entries, EXTRA_COLUMNS)
    write_catalogue_info(output, CATEGORY)
    return entries


def entry_for(dataset: DatasetInfo, image: LabelledImage) -> CatalogueEntry:
    stem = image.relative.rsplit(".", 1)[0]
    return CatalogueEntry(
        id=f"{dataset.name}-{slugify(stem)}",
        filename=image.relative,
        title=image.title,
        style=image.label,
        genre=dataset.genre,
        extra={"source": dataset.source, "license": dataset.license},
    )


def title_from_stem(stem: str) -> str:
    """``"chemistry_flask_matthew__02"`` -> ``"chemistry flask matthew 02"``."""
    return " ".join(stem.replace("_", " ").replace("-", " ").split())
