"""Labelled catalogues from Debian's clip art (``openclipart-png``) and Tux Paint stamps
(``tuxpaint-stamps-default``), labelled by their category folder (two levels: ``animals/birds``).

Only PNGs are taken (the stamps' SVGs would need an SVG renderer); symbolic links (clip art filed under a
second category) are skipped so that each picture appears once, under its own folder; pictures above a
pixel cap (a few clip-art posters have hundreds of megapixels) are skipped unread. A Tux Paint stamp's title
is the English line of its ``.txt`` description.
"""

from __future__ import annotations

from pathlib import Path

from artsearch_tools.catalogue.debian import extracted_version, fetch_deb_package
from artsearch_tools.catalogue.folder import CatalogueEntry
from artsearch_tools.catalogue.labelled import (
    DatasetInfo,
    LabelledImage,
    image_pixels,
    sample_by_label,
    title_from_stem,
    write_labelled_catalogue,
)
from artsearch_tools.evaluation.datasets import (
    CATEGORY_MAX_PIXELS,
    CATEGORY_SOURCES,
    CategorySource,
    category_label,
)

GENRES = {"openclipart": "clip art", "tuxpaint": "stamp"}


def list_category_images(
    images_dir: Path, levels: int = 2, max_pixels: int = CATEGORY_MAX_PIXELS
) -> list[LabelledImage]:
    """Every PNG file (not a link) under `images_dir` within the pixel cap, labelled by its folder."""
    images: list[LabelledImage] = []
    for path in sorted(Path(images_dir).rglob("*.png")):
        if path.is_symlink() or not path.is_file():
            continue
        pixels = image_pixels(path)
        if pixels is None or pixels > max_pixels:
            continue
        relative = path.relative_to(images_dir)
        images.append(
            LabelledImage(
                relative=relative.as_posix(),
                label=category_label(relative, levels),
                title=stamp_title(path) or title_from_stem(path.stem),
                source=path,
            )
        )
    return images


def stamp_title(png: Path) -> str:
    """The first line of a Tux Paint stamp's ``<name>.txt`` (its English description), or ""."""
    description = png.with_suffix(".txt")
    if not description.is_file():
        return ""
    lines = description.read_text(encoding="utf-8", errors="replace").splitlines()
    first = lines[0].strip() if lines else ""
    return "" if "=" in first.split(" ", 1)[0] else first


def build_category_catalogue(
    name: str, output: Path, cache_dir: Path, limit: int | None, seed: int = 0
) -> list[CatalogueEntry]:
    """Downloads (once) and extracts the set's package, then writes a sample of at most `limit` images."""
    source = CATEGORY_SOURCES[name]
    extracted = fetch_deb_package(source.package, Path(cache_dir))
    return category_catalogue_from_tree(source, extracted, output, limit, seed)


def category_catalogue_from_tree(
    source: CategorySource, extracted: Path, output: Path, limit: int | None, seed: int = 0
) -> list[CatalogueEntry]:
    """The catalogue from an extracted package tree (what `build_category_catalogue` downloads)."""
    images_dir = Path(extracted) / source.images_dir
    if not images_dir.is_dir():
        raise FileNotFoundError(f"{images_dir} is missing: is {extracted} the {source.package} package?")
    version = extracted_version(extracted, source.package) or "unknown version"
    dataset = DatasetInfo(
        name=source.name,
        genre=GENRES.get(source.name, "image"),
        license=source.licence,
        source=f"Debian {source.package} {version}",
    )
    chosen = sample_by_label(list_category_images(images_dir), limit, seed)
    return write_labelled_catalogue(output, dataset, chosen)
