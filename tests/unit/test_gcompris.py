"""The GCompris demo catalogue: metadata parsing, reassembly on synthetic puzzles, and the real package."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from artsearch.catalogue import load_catalogue
from artsearch.catalogue.debian import DebianPackageError, deb_version, extracted_version, fetch_deb_package
from artsearch.catalogue.gcompris import (
    PACKAGE,
    ArtworkSource,
    PieceSpec,
    artwork_info,
    assemble,
    iter_puzzle_pieces,
    parse_board,
    parse_instruction,
)

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
# Reassembly on synthetic puzzles, where the right answer is known exactly
# --------------------------------------------------------------------------------------------------


def textured_painting(height: int, width: int, seed: int, flat_rows: int = 0) -> np.ndarray:
    """Noise over a gradient; the top `flat_rows` rows are plain paper with only a faint grain."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 200 / width, ys * 200 / height, (xs + ys) * 100 / (width + height)], axis=-1)
    base[:flat_rows] = (210, 200, 170)
    noise = rng.normal(0, 25, (height, width, 3))
    noise[:flat_rows] /= 6
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def cut_jigsaw(
    image: np.ndarray, rows: int, cols: int, seed: int, band: int = 1
) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
    """Jigsaw pieces (RGBA crops) with round tabs, overlapping their neighbours by `band` pixels."""
    rng = np.random.default_rng(seed)
    height, width = image.shape[:2]
    cell_h, cell_w = height // rows, width // cols
    ys, xs = np.mgrid[0:height, 0:width]
    owner = np.minimum(ys // cell_h, rows - 1) * cols + np.minimum(xs // cell_w, cols - 1)
    radius = min(cell_h, cell_w) // 6
    for row in range(rows):
        for col in range(cols):
            piece = row * cols + col
            if col + 1 < cols:  # a tab across the right edge, pointing either way
                cx, cy = (col + 1) * cell_w + rng.choice([-1, 1]) * radius, row * cell_h + cell_h // 2
                disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
                owner[disc] = piece if cx > (col + 1) * cell_w else piece + 1
            if row + 1 < rows:
                cx, cy = col * cell_w + cell_w // 2, (row + 1) * cell_h + rng.choice([-1, 1]) * radius
                disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
                owner[disc] = piece if cy > (row + 1) * cell_h else piece + cols
    pieces, corners = [], []
    for piece in range(rows * cols):
        mask = owner == piece
        for _ in range(band):
            padded = np.pad(mask, 1)
            mask = mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
        found_y, found_x = np.nonzero(mask)
        top, bottom, left, right = found_y.min(), found_y.max() + 1, found_x.min(), found_x.max() + 1
        rgba = np.zeros((bottom - top, right - left, 4), np.uint8)
        rgba[..., :3] = image[top:bottom, left:right]
        rgba[..., 3] = mask[top:bottom, left:right] * 255
        pieces.append(rgba)
        corners.append((int(left), int(top)))
    return pieces, corners


def jigsaw_source(pieces: list[np.ndarray], guesses: list[tuple[float, float]]) -> ArtworkSource:
    pairs = enumerate(zip(pieces, guesses, strict=True))
    specs = tuple(PieceSpec(f"piece{i}", rgba, guess) for i, (rgba, guess) in pairs)
    return ArtworkSource("synthetic", "test.rcc", "board.qml", "Jane Doe, Test - 1900", "jigsaw", specs)


@pytest.mark.parametrize(("seed", "flat_rows", "band"), [(1, 0, 1), (2, 70, 1), (3, 0, 4), (4, 40, 2)])
def test_jigsaw_is_reassembled_exactly_from_rough_positions(seed, flat_rows, band):
    painting = textured_painting(180, 240, seed, flat_rows)
    pieces, corners = cut_jigsaw(painting, rows=3, cols=4, seed=seed, band=band)
    rng = np.random.default_rng(seed)
    # The package's positions are off by up to a few pixels.
    guesses = [(x + rng.uniform(-2.5, 2.5), y + rng.uniform(-2.5, 2.5)) for x, y in corners]

    assembly = assemble(jigsaw_source(pieces, guesses))

    assert assembly.image.shape == painting.shape
    assert np.array_equal(assembly.image, painting)
    assert [box[:2] for box in assembly.boxes] == corners
    assert assembly.filled_pixels == 0


def test_rectangular_pieces_are_placed_by_their_rounded_positions():
    painting = textured_painting(120, 150, seed=5)
    corners = [(x, y) for y in (0, 60) for x in (0, 50, 100)]
    pieces = [
        np.dstack([painting[y : y + 60, x : x + 50], np.full((60, 50), 255, np.uint8)]) for x, y in corners
    ]
    guesses = [(x + 0.4, y - 0.3) for x, y in corners]

    assembly = assemble(jigsaw_source(pieces, guesses))

    assert np.array_equal(assembly.image, painting)


def test_jigsaw_gap_is_trimmed_at_the_edge_and_inpainted_inside():
    painting = textured_painting(120, 160, seed=6)
    pieces, corners = cut_jigsaw(painting, rows=2, cols=2, seed=6)
    pieces[0] = pieces[0].copy()
    pieces[0][0, :, 3] = 0  # one piece a row short at the top: a ragged edge
    pieces[3] = pieces[3].copy()
    pieces[3][40:43, 30:33, 3] = 0  # a small hole inside the painting

    assembly = assemble(jigsaw_source(pieces, [(x + 0.3, y - 0.2) for x, y in corners]))

    assert assembly.image.shape == (119, 160, 3)  # the ragged top row is dropped
    assert assembly.filled_pixels == 9
    left, top = assembly.boxes[3][:2]
    hole = assembly.image[top + 40 : top + 43, left + 30 : left + 33].astype(int)
    neighbourhood = painting[1:][top + 37 : top + 46, left + 27 : left + 36].astype(int)
    assert np.abs(hole.mean(axis=(0, 1)) - neighbourhood.mean(axis=(0, 1))).max() < 30
    outside = np.ones(assembly.image.shape[:2], bool)
    outside[top + 40 : top + 43, left + 30 : left + 33] = False
    assert np.array_equal(assembly.image[outside], painting[1:][outside])


def smooth_painting(height: int, width: int) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width]
    red = 120 + 80 * np.sin(xs / 17)
    green = 100 + 60 * np.cos(ys / 13)
    blue = 80 + 0.3 * (xs + ys) % 60
    return np.clip(np.dstack([red, green, blue]), 0, 230).astype(np.uint8)


def test_shapes_fill_their_white_holes():
    painting = smooth_painting(160, 200)
    ys, xs = np.mgrid[0:160, 0:200]
    holed = painting.copy()
    shapes = []
    for cx, cy, radius, error in [(60, 70, 25, (3, -2)), (150, 100, 18, (-4, 5))]:
        disc = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
        holed[disc] = 255
        left, top = cx - radius - 9, cy - radius - 9  # GCompris shapes carry a transparent margin
        size = 2 * radius + 19
        rgba = np.zeros((size, size, 4), np.uint8)
        rgba[..., :3] = painting[top : top + size, left : left + size]
        rgba[..., 3] = disc[top : top + size, left : left + size] * 255
        shapes.append(PieceSpec(f"shape{cx}", rgba, (left + error[0], top + error[1])))
    source = ArtworkSource("x", "t.rcc", "b.qml", "A, B - 1900", "shape", tuple(shapes), background=holed)

    assembly = assemble(source)

    assert [box[:2] for box in assembly.boxes] == [(60 - 25 - 9, 70 - 25 - 9), (150 - 18 - 9, 100 - 18 - 9)]
    holes = holed == 255
    assert np.array_equal(assembly.image[holes.all(axis=2)], painting[holes.all(axis=2)])
    assert (assembly.image == 255).all(axis=2).sum() == 0  # no white left
    assert np.abs(assembly.image.astype(int) - painting).mean() < 1.0


def test_detail_crops_are_located_in_the_painting():
    painting = textured_painting(150, 200, seed=7)
    crop = np.dstack([painting[40:76, 90:126], np.full((36, 36), 255, np.uint8)])
    foreign = np.dstack([textured_painting(36, 36, seed=99), np.full((36, 36), 255, np.uint8)])
    details = (PieceSpec("crop", crop, (93.0, 37.0)), PieceSpec("foreign", foreign, (10.0, 10.0)))
    source = ArtworkSource("x", "t.rcc", "b.qml", "A, B - 1900", "detail", details, background=painting)

    assembly = assemble(source)

    assert assembly.boxes == ((90, 40, 126, 76), None)
    assert assembly.image is painting


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
