"""The GCompris demo catalogue: metadata parsing, board parsing, and the real package.

Reassembly on synthetic puzzles is tested in test_reassembly.py.
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch_tools.catalogue import load_catalogue
from artsearch_tools.catalogue.debian import (
    DebianPackageError,
    deb_version,
    extracted_version,
    fetch_deb_package,
)
from artsearch_tools.catalogue.gcompris import PACKAGE, iter_puzzle_pieces, parse_board
from artsearch_tools.catalogue.gcompris_facts import artwork_info, parse_instruction

# --------------------------------------------------------------------------------------------------
# Metadata from the package's strings
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Pierre-Auguste Renoir, Bal du moulin de la Galette - 1876",
         ("Pierre-Auguste Renoir", "Bal du moulin de la Galette", 1876)),
        ("Leonardo da Vinci, Mona Lisa - 1503-19", ("Leonardo da Vinci", "Mona Lisa", 1503)),
        ("Katsushika Hokusai, Kazusa sea Route - 1830.", ("Katsushika Hokusai", "Kazusa sea Route", 1830)),
        ("Vincent van Gogh, Portrait of Pere Tanguy 1887-8",
         ("Vincent van Gogh", "Portrait of Pere Tanguy", 1887)),
        ("Katsushika Hokusai, Oiran and Kamuro", ("Katsushika Hokusai", "Oiran and Kamuro", None)),
        ("Vincent van Gogh, Painter on His Way to Work - 1888",
         ("Vincent van Gogh", "Painter on His Way to Work", 1888)),
    ],
)  # fmt: skip
def test_parse_instruction(text, expected):
    assert parse_instruction(text) == expected


def test_artwork_info_normalises_the_package_spelling():
    harvesters = artwork_info("PieterBruegel", "Pieter Brugel, The Harvesters - 1565")
    assert harvesters.artist == "Pieter Bruegel the Elder"
    assert harvesters.id == "bruegel-the-harvesters"
    assert harvesters.style == "Northern Renaissance"
    assert harvesters.genre == "landscape"
    assert harvesters.year == 1565

    poppies = artwork_info("HokusaiPoppies", "Katsushika Hokusa, Poppies - 1833-1834")
    assert (poppies.artist, poppies.style, poppies.year) == ("Katsushika Hokusai", "Ukiyo-e", 1833)


def test_artwork_info_corrects_and_drops_impossible_years():
    wave = artwork_info("GreatWave", "Katsushika Hokusai, The Great Wave off Kanagawa - 1823-1829")
    assert wave.id == "hokusai-the-great-wave-off-kanagawa"
    assert wave.year == 1831  # curated: published c. 1830-32
    # The package dates this print 1760-70; Hiroshige was born in 1797.
    shrine = artwork_info("HiroshigeInokashiraSnow", "Utagawa Hiroshige, The Benzaiten Shrine - 1760-70")
    assert shrine.year is None


def test_artwork_info_uses_the_curated_string_when_the_package_has_none():
    degas = artwork_info("degas_class-dance", None)
    assert (degas.id, degas.artist, degas.style, degas.year) == (
        "degas-the-dance-class",
        "Edgar Degas",
        "Impressionism",
        1873,
    )
    with pytest.raises(ValueError, match="no artist/title"):
        artwork_info("not-curated", None)


def test_artwork_info_for_an_artist_nobody_curated():
    info = artwork_info("somewhere", "Jane Doe, Quiet Harbour - 1901")
    assert (info.id, info.artist, info.style, info.genre, info.year) == (
        "doe-quiet-harbour",
        "Jane Doe",
        "",
        "",
        1901,
    )


def test_parse_board_reads_instruction_frame_and_pieces():
    board = parse_board(
        """
        import QtQuick 2.12
        QtObject {
           property string instruction: qsTr("Mary Cassatt, Summertime - 1894")
           property var levels : [
              { "pixmapfile" : "image/bg.svg", "type" : "SHAPE_BACKGROUND_IMAGE",
                "width": 702, "height": 515 },
              { "pixmapfile" : "image/cassat_summertime_1.webp", "x" : "0.211", "y" : "0.244" },
              { "pixmapfile" : "image/cassat_summertime_2.webp", "dropAreaSize" : "10",
                "x" : 0.5, "y" : "0.1" },
              { "pixmapfile" : "image/text.svg", "type" : "DisplayText", "x" : "0.1", "y" : "0.1" }
           ]
        }
        """
    )
    assert board.instruction == "Mary Cassatt, Summertime - 1894"
    assert board.background is not None
    assert (board.background.width, board.background.height) == (702, 515)
    assert [(piece.pixmap, piece.x, piece.y) for piece in board.pieces] == [
        ("image/cassat_summertime_1.webp", 0.211, 0.244),
        ("image/cassat_summertime_2.webp", 0.5, 0.1),
    ]


# --------------------------------------------------------------------------------------------------
# The real catalogue (`make catalogue`) and the real package
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue):
    return load_catalogue(gcompris_catalogue)


def test_catalogue_holds_every_painting_without_problems(catalogue):
    assert catalogue.problems == []
    assert len(catalogue.entries) >= 30
    assert len({entry.id for entry in catalogue.entries}) == len(catalogue.entries)


def test_metadata_csv_has_the_documented_columns(gcompris_catalogue):
    with (gcompris_catalogue / "metadata.csv").open(encoding="utf-8") as handle:
        header = next(csv.reader(handle))
    assert header == ["id", "filename", "title", "artist", "year", "style", "genre", "source", "license"]


def test_every_row_is_complete(catalogue):
    for entry in catalogue.entries:
        assert entry.artist and entry.title and entry.style and entry.genre, entry
        assert entry.filename == f"{entry.id}.jpg"
        assert entry.extra["source"].startswith("Debian gcompris-qt-data 3.1, "), entry.extra
        assert ".rcc/gcompris/src/activities/" in entry.extra["source"]
        assert "public domain" in entry.extra["license"]


def test_every_image_opens_and_is_reasonably_large(catalogue):
    for entry in catalogue.entries:
        with Image.open(catalogue.path_of(entry)) as image:
            image.load()
            assert image.format == "JPEG"
            assert image.mode == "RGB"
            assert min(image.size) >= 250, (entry.id, image.size)
            assert image.size[0] * image.size[1] >= 100_000, (entry.id, image.size)


def test_artists_and_well_known_paintings(catalogue):
    artists = {entry.artist for entry in catalogue.entries}
    assert len(artists) >= 13
    assert not {"Pieter Brugel", "Katsushika Hokusa", "Bazille", "Vincent Van Gogh"} & artists
    entries = {entry.id: entry for entry in catalogue.entries}
    wave = entries["hokusai-the-great-wave-off-kanagawa"]
    assert (wave.artist, wave.style, wave.year) == ("Katsushika Hokusai", "Ukiyo-e", 1831)
    assert entries["leonardo-mona-lisa"].style == "High Renaissance"
    assert entries["renoir-bal-du-moulin-de-la-galette"].style == "Impressionism"
    assert sum(entry.artist == "Vincent van Gogh" for entry in catalogue.entries) >= 9
    assert {"gauguin-arearea", "bosschaert-flower-still-life", "degas-the-dance-class"} <= set(entries)


@pytest.fixture(scope="module")
def gcompris_package(repo_root: Path) -> Path:
    return fetch_deb_package(PACKAGE, repo_root / ".cache" / "debs")


@pytest.fixture(scope="module")
def pieces(gcompris_package):
    return list(iter_puzzle_pieces(gcompris_package))


def _difference(
    painting: np.ndarray, piece: np.ndarray, box: tuple[int, int, int, int], shift: int = 0
) -> float:
    """Mean absolute difference between a piece's inner pixels and the painting under them."""
    mask = piece[..., 3] >= 128
    for _ in range(2):  # the outermost pixels of a piece are shared with its neighbours
        padded = np.pad(mask, 1)
        mask = mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    left, top = box[0] + shift, box[1]
    height, width = painting.shape[:2]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + piece.shape[1], width), min(top + piece.shape[0], height)
    inside = mask[y0 - top : y1 - top, x0 - left : x1 - left]
    assert inside.sum() >= 0.9 * mask.sum()  # the piece lies on the painting
    colours = piece[y0 - top : y1 - top, x0 - left : x1 - left, :3].astype(int)
    return float(np.abs(colours - painting[y0:y1, x0:x1].astype(int))[inside].mean())


@pytest.mark.slow
def test_puzzle_pieces_reassemble_to_the_stored_paintings(pieces, catalogue):
    jigsaw = [piece for piece in pieces if piece.kind == "jigsaw"]
    assert len(jigsaw) == 267  # 261 on the 22 boards + the 6 of the board-less Degas
    ids = {entry.id for entry in catalogue.entries}
    assert len({piece.painting_id for piece in jigsaw}) == 23
    differences, shifted = [], []
    paintings: dict[str, np.ndarray] = {}
    for piece in jigsaw:
        assert piece.painting_id in ids
        assert piece.box is not None
        if piece.painting_id not in paintings:
            with Image.open(catalogue.root / f"{piece.painting_id}.jpg") as image:
                paintings[piece.painting_id] = np.asarray(image.convert("RGB"))
        rgba = np.asarray(piece.image)
        difference = _difference(paintings[piece.painting_id], rgba, piece.box)
        assert difference < 5.0, (piece.resource, difference)  # JPEG (quality 92) noise only
        differences.append(difference)
        shifted.append(_difference(paintings[piece.painting_id], rgba, piece.box, shift=1))
    # A piece one pixel out of place would differ far more than the JPEG tolerance allows.
    assert statistics.median(shifted) > 2.5 * statistics.median(differences)


@pytest.mark.slow
def test_shapes_and_details_lie_where_they_belong(pieces, catalogue):
    for kind, expected in (("shape", 23), ("detail", 47)):
        found = [piece for piece in pieces if piece.kind == kind]
        assert len(found) == expected
        for piece in found:
            assert piece.box is not None, piece.resource
            with Image.open(catalogue.root / f"{piece.painting_id}.jpg") as image:
                painting = np.asarray(image.convert("RGB"))
            assert _difference(painting, np.asarray(piece.image), piece.box) < 8.0, piece.resource


# --------------------------------------------------------------------------------------------------
# Fetching Debian packages
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "version"),
    [("gcompris-qt-data_3.1-2_all.deb", "3.1"), ("openclipart-png_1%3a0.18+dfsg-15_all.deb", "0.18+dfsg"),
     ("tuxpaint-stamps-default_2022.06.04_all.deb", "2022.06.04")],
)  # fmt: skip
def test_deb_version(name, version):
    assert deb_version(Path(name)) == version


def test_fetch_reuses_the_extracted_tree_without_running_any_tool(gcompris_package, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")  # apt-get and dpkg-deb cannot run now
    again = fetch_deb_package(PACKAGE, gcompris_package.parent)
    assert again == gcompris_package
    assert extracted_version(again, PACKAGE) == "3.1"
    assert (again / "usr/share/gcompris-qt/rcc/paintings.rcc").is_file()


def test_fetch_without_apt_get_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DebianPackageError, match="apt-get not found"):
        fetch_deb_package("gcompris-qt-data", tmp_path / "cache")
