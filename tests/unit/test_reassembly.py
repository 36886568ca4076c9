"""Reassembly of paintings from pieces, on synthetic puzzles where the right answer is known exactly."""

from __future__ import annotations

import numpy as np
import pytest

from artsearch_tools.catalogue.reassembly import (
    Assembly,
    PieceSpec,
    assemble_jigsaw,
    fill_holes,
    locate_details,
)

# How far (pixels) each search may move a piece from its guessed place, as for the GCompris boards: the
# guesses below are off by up to 2.5 pixels (jigsaw pieces) and 5 (shapes, detail crops).
JIGSAW_RADIUS = 5
SHAPE_RADIUS = 8
DETAIL_RADIUS = 8


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


def assemble_pieces(pieces: list[np.ndarray], guesses: list[tuple[float, float]]) -> Assembly:
    pairs = enumerate(zip(pieces, guesses, strict=True))
    specs = tuple(PieceSpec(f"piece{i}", rgba, guess) for i, (rgba, guess) in pairs)
    return assemble_jigsaw(specs, JIGSAW_RADIUS)


@pytest.mark.parametrize(("seed", "flat_rows", "band"), [(1, 0, 1), (2, 70, 1), (3, 0, 4), (4, 40, 2)])
def test_jigsaw_is_reassembled_exactly_from_rough_positions(seed, flat_rows, band):
    painting = textured_painting(180, 240, seed, flat_rows)
    pieces, corners = cut_jigsaw(painting, rows=3, cols=4, seed=seed, band=band)
    rng = np.random.default_rng(seed)
    # The package's positions are off by up to a few pixels.
    guesses = [(x + rng.uniform(-2.5, 2.5), y + rng.uniform(-2.5, 2.5)) for x, y in corners]

    assembly = assemble_pieces(pieces, guesses)

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

    assembly = assemble_pieces(pieces, guesses)

    assert np.array_equal(assembly.image, painting)


def test_jigsaw_gap_is_trimmed_at_the_edge_and_inpainted_inside():
    painting = textured_painting(120, 160, seed=6)
    pieces, corners = cut_jigsaw(painting, rows=2, cols=2, seed=6)
    pieces[0] = pieces[0].copy()
    pieces[0][0, :, 3] = 0  # one piece a row short at the top: a ragged edge
    pieces[3] = pieces[3].copy()
    pieces[3][40:43, 30:33, 3] = 0  # a small hole inside the painting

    assembly = assemble_pieces(pieces, [(x + 0.3, y - 0.2) for x, y in corners])

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

    assembly = fill_holes(holed, tuple(shapes), SHAPE_RADIUS)

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

    assembly = locate_details(painting, details, DETAIL_RADIUS)

    assert assembly.boxes == ((90, 40, 126, 76), None)
    assert assembly.image is painting
