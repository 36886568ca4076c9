"""A labelled catalogue of Battle for Wesnoth's painted unit portraits (Debian ``wesnoth-1.16-data``).

The package holds 238 portraits under ``data/core/images/portraits/<race>/`` (humans, elves, dwarves,
orcs, undead, drakes, monsters, ...): RGBA PNGs of 400-500 px, painted by a handful of artists (GPL-2+).
The race folder is the label. The three tutorial portraits elsewhere carry no race in their path and are
left out.
"""

from __future__ import annotations

from pathlib import Path

from artsearch_tools.catalogue.debian import extracted_version, fetch_deb_package
from artsearch_tools.catalogue.folder import CatalogueEntry
from artsearch_tools.catalogue.labelled import (
    DatasetInfo,
    LabelledImage,
    sample_by_label,
    title_from_stem,
    write_labelled_catalogue,
)

PACKAGE = "wesnoth-1.16-data"
PORTRAITS_DIR = "usr/share/games/wesnoth/1.16/data/core/images/portraits"
LICENSE = "GPL-2+"


def list_portraits(portraits_dir: Path) -> list[LabelledImage]:
    """Every ``<race>/<unit>.png`` portrait, labelled by race (``assassin+female``: "Assassin (female)")."""
    images: list[LabelledImage] = []
    for path in sorted(Path(portraits_dir).glob("*/*.png")):
        if path.is_symlink() or not path.is_file():
            continue
        race = path.parent.name
        unit, _, variant = path.stem.partition("+")
        title = title_from_stem(unit).title() + (f" ({title_from_stem(variant)})" if variant else "")
        images.append(
            LabelledImage(relative=f"{race}/{path.name}", label=race, title=f"{title}, {race}", source=path)
        )
    return images


def build_wesnoth_catalogue(
    output: Path, cache_dir: Path, limit: int | None, seed: int = 0
) -> list[CatalogueEntry]:
    return wesnoth_catalogue_from_tree(fetch_deb_package(PACKAGE, Path(cache_dir)), output, limit, seed)


def wesnoth_catalogue_from_tree(
    extracted: Path, output: Path, limit: int | None, seed: int = 0
) -> list[CatalogueEntry]:
    portraits_dir = Path(extracted) / PORTRAITS_DIR
    if not portraits_dir.is_dir():
        raise FileNotFoundError(f"{portraits_dir} is missing: is {extracted} the {PACKAGE} package?")
    version = extracted_version(extracted, PACKAGE) or "unknown version"
    dataset = DatasetInfo(
        name="wesnoth", genre="portrait", license=LICENSE, source=f"Debian {PACKAGE} {version}"
    )
    chosen = sample_by_label(list_portraits(portraits_dir), limit, seed)
    return write_labelled_catalogue(output, dataset, chosen)
