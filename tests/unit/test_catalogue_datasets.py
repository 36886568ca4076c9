"""Dataset commands on small fake package trees laid out like the real Debian packages (the real downloads
are network: `artsearch catalogue <dataset>` fetches them once into --cache-dir), and metadata files named
explicitly (a WikiArt CSV, JSON lines)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from artsearch_tools.catalogue.category_sets import (
    category_catalogue_from_tree,
    list_category_images,
    stamp_title,
)
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.catalogue.labelled import LabelledImage, label_quotas, sample_by_label
from artsearch_tools.catalogue.wesnoth import PORTRAITS_DIR, wesnoth_catalogue_from_tree
from artsearch_tools.cli import main
from artsearch_tools.evaluation.datasets import CATEGORY_SOURCES


def _png(path: Path, size: tuple[int, int] = (40, 30), colour: tuple[int, ...] = (10, 200, 30, 255)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGBA", size, colour).save(path, "PNG")


def _fake_package(cache: Path, package: str, deb: str) -> Path:
    """A tree as `fetch_deb_package` leaves it, so the command finds it cached and downloads nothing."""
    root = cache / package
    root.mkdir(parents=True)
    (root / ".extracted").write_text(deb + "\n")
    return root


@pytest.fixture
def clipart_tree(tmp_path: Path) -> Path:
    root = _fake_package(tmp_path / "debs", "openclipart-png", "openclipart-png_1%3a0.18+dfsg-19_all.deb")
    images = root / CATEGORY_SOURCES["openclipart"].images_dir
    for index in range(4):
        _png(images / "animals/birds" / f"bird_{index}_01.png")
    for index in range(2):
        _png(images / "food" / f"apple-{index}.png")
    _png(images / "signs_and_symbols/arrows/arrow_02.png")
    (images / "food/bird_link.png").symlink_to(images / "animals/birds/bird_0_01.png")  # filed twice
    _png(images / "special/poster.png", size=(2100, 2000))  # over the pixel cap
    (images / "food/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    (images / "food/drawing.svg").write_text("<svg/>")
    return root


def test_clip_art_is_labelled_by_folder_without_links_huge_or_broken_files(
    clipart_tree: Path, tmp_path: Path
):
    source = CATEGORY_SOURCES["openclipart"]
    listed = list_category_images(clipart_tree / source.images_dir)
    assert [image.relative for image in listed] == [
        *(f"animals/birds/bird_{i}_01.png" for i in range(4)),
        "food/apple-0.png",
        "food/apple-1.png",
        "signs_and_symbols/arrows/arrow_02.png",
    ]
    entries = category_catalogue_from_tree(source, clipart_tree, tmp_path / "out", limit=None)
    catalogue = load_catalogue(tmp_path / "out")
    assert not catalogue.problems and len(catalogue.entries) == len(entries) == 7
    bird = catalogue.entries[0]
    assert bird.id == "openclipart-animals-birds-bird-0-01"
    assert (bird.title, bird.style, bird.genre) == ("bird 0 01", "animals/birds", "clip art")
    assert bird.extra == {"source": "Debian openclipart-png 0.18+dfsg", "license": "public domain"}
    # Clip-art folders are subject categories, declared so: they never vote in a style prediction.
    assert catalogue.style_labels == "category"
    assert (
        catalogue.path_of(bird).read_bytes()
        == (clipart_tree / source.images_dir / bird.filename).read_bytes()
    )


def test_the_command_bounds_the_size_and_keeps_every_label(clipart_tree: Path, tmp_path: Path):
    output = tmp_path / "clipart"
    argv = ["catalogue", "openclipart", "--output", str(output), "--cache-dir", str(tmp_path / "debs")]
    assert main([*argv, "--limit", "4"]) == 0
    entries = load_catalogue(output).entries
    assert len(entries) == 4
    assert {entry.style for entry in entries} == {"animals/birds", "food", "signs_and_symbols/arrows"}


def test_tux_paint_stamps_take_their_english_description_as_title(tmp_path: Path):
    root = _fake_package(tmp_path, "tuxpaint-stamps-default", "tuxpaint-stamps-default_2022.06.04-1_all.deb")
    stamps = root / CATEGORY_SOURCES["tuxpaint"].images_dir
    _png(stamps / "animals/birds/owl.png")
    (stamps / "animals/birds/owl.txt").write_text("An owl.\nfr.utf8=Un hibou.\n")
    _png(stamps / "animals/birds/cartoon/duck.png")
    (stamps / "animals/birds/cartoon/duck.txt").write_text("fr.utf8=Un canard.\n")
    _png(stamps / "vehicles/car.png")
    assert stamp_title(stamps / "animals/birds/owl.png") == "An owl."
    entries = category_catalogue_from_tree(CATEGORY_SOURCES["tuxpaint"], root, tmp_path / "out", limit=10)
    by_file = {entry.filename: entry for entry in entries}
    assert by_file["animals/birds/owl.png"].title == "An owl."
    assert by_file["animals/birds/cartoon/duck.png"].title == "duck"
    assert by_file["animals/birds/cartoon/duck.png"].style == "animals/birds"  # two levels
    assert by_file["vehicles/car.png"].style == "vehicles"
    assert {entry.genre for entry in entries} == {"stamp"}


def test_wesnoth_portraits_are_labelled_by_race(tmp_path: Path):
    root = _fake_package(tmp_path, "wesnoth-1.16-data", "wesnoth-1.16-data_1%3a1.16.9-1_all.deb")
    portraits = root / PORTRAITS_DIR
    for race, units in {
        "elves": ["archer", "archer+female"],
        "undead": ["ghost"],
        "humans": ["mage"],
    }.items():
        for unit in units:
            _png(portraits / race / f"{unit}.png", size=(400, 400))
    (portraits / "ARTISTS").write_text("credits\n")
    _png(root / "usr/share/games/wesnoth/1.16/data/campaigns/tutorial/images/portraits/konrad.png")
    entries = wesnoth_catalogue_from_tree(root, tmp_path / "out", limit=None)
    assert [(e.filename, e.style, e.title) for e in entries] == [
        ("elves/archer+female.png", "elves", "Archer (female), elves"),
        ("elves/archer.png", "elves", "Archer, elves"),
        ("humans/mage.png", "humans", "Mage, humans"),
        ("undead/ghost.png", "undead", "Ghost, undead"),
    ]
    catalogue = load_catalogue(tmp_path / "out")
    assert not catalogue.problems and len({entry.id for entry in catalogue.entries}) == 4
    assert {entry.extra["source"] for entry in entries} == {"Debian wesnoth-1.16-data 1.16.9"}


def test_a_missing_package_tree_is_reported(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="portraits"):
        wesnoth_catalogue_from_tree(tmp_path, tmp_path / "out", limit=None)


def test_label_quotas_fill_the_limit_and_spread_over_labels():
    assert label_quotas({"a": 10, "b": 1, "c": 3}, 6) == {"a": 3, "b": 1, "c": 2}
    assert label_quotas({"a": 10, "b": 1, "c": 3}, 100) == {"a": 10, "b": 1, "c": 3}
    assert sum(label_quotas({f"l{i}": 5 for i in range(15)}, 40).values()) == 40
    images = [LabelledImage(f"{label}/{i}.png", label, str(i)) for label in "ab" for i in range(5)]
    sample = sample_by_label(images, 4, seed=1)
    assert len(sample) == 4 and [image.label for image in sample] == ["a", "a", "b", "b"]
    assert sample == sample_by_label(images, 4, seed=1)


def test_a_wikiart_csv_named_explicitly(tmp_path: Path):
    folder = tmp_path / "wikiart"
    _png(folder / "Impressionism/claude-monet_water-lilies.jpg".replace(".jpg", ".png"))
    _png(folder / "Cubism/pablo-picasso_guitar.png")
    metadata = tmp_path / "wikiart_data.csv"
    metadata.write_text(
        "filename,artist,title,style,genre,date\n"
        "Impressionism/claude-monet_water-lilies.png,Claude Monet,Water Lilies,Impressionism,landscape,1906\n"
        "Cubism/pablo-picasso_guitar.png,Pablo Picasso,Guitar,Cubism,still life,c.1913\n"
        "Cubism/missing.png,Pablo Picasso,Missing,Cubism,,\n"
    )
    catalogue = load_catalogue(folder, name="wikiart", metadata=metadata)
    assert [(e.artist, e.style, e.year) for e in catalogue.entries] == [
        ("Claude Monet", "Impressionism", 1906),
        ("Pablo Picasso", "Cubism", 1913),
    ]
    assert [(p.row, p.reason) for p in catalogue.problems] == [(3, "file not found")]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"file": "Cubism/pablo-picasso_guitar.png", "year": 1913}\n[1, 2]\n')
    from_jsonl = load_catalogue(folder, metadata=jsonl)
    assert [entry.year for entry in from_jsonl.entries] == [1913]
    assert [problem.reason for problem in from_jsonl.problems] == ["no file name"]
