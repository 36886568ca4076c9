"""The candidate colour aspects bench/colour_aspects.py compares (the comparison is a benchmark run)."""

from __future__ import annotations

import numpy as np

from bench.colour_aspects import (
    best_channel_shift,
    chromaticity,
    grey_world,
    rgb_levels,
    spread_to_neighbours,
)
from services.encoder.aspect_builder import colour_part


def pictures(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 240, size=(3, 32, 32, 3), dtype=np.uint8)  # no white pixel


def test_ten_levels_is_the_stored_histogram():
    pixels = pictures()
    assert np.allclose(rgb_levels(pixels, 10), colour_part(pixels), atol=1e-6)


def test_the_grey_world_balance_undoes_a_channel_gain():
    pixels = pictures()
    cast = np.clip(pixels.astype(np.float32) * np.array([1.15, 1.0, 0.8]), 0, 255).astype(np.uint8)
    # The stored histogram sees the cast; the balanced one almost does not.
    stored = float((colour_part(pixels) * colour_part(cast)).sum(1).mean())
    balanced = float((colour_part(grey_world(pixels)) * colour_part(grey_world(cast))).sum(1).mean())
    assert balanced > 0.9 > stored


def test_every_candidate_is_a_unit_histogram():
    pixels = pictures()
    for rows in (rgb_levels(pixels, 6), chromaticity(pixels), colour_part(grey_world(pixels))):
        assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5) and (rows >= 0).all()


def bin_centres(seed: int = 0) -> np.ndarray:
    """Pictures whose every channel value sits in the middle of a histogram level below the top one."""
    levels = np.random.default_rng(seed).integers(0, 9, size=(3, 32, 32, 3))
    return ((levels * 256 + 128) // 10).astype(np.uint8)


def one_level_brighter_red(pixels: np.ndarray) -> np.ndarray:
    """The pictures with red one histogram level (25.6 values) up: a cast moving every pixel one bin."""
    return (pixels.astype(np.int32) + np.array([26, 0, 0])).astype(np.uint8)


def test_spreading_the_photos_histogram_meets_a_one_bin_cast_part_way():
    pixels = bin_centres()
    cast = one_level_brighter_red(pixels)
    plain = float((colour_part(cast) * colour_part(pixels)).sum(1).mean())
    spread = float((spread_to_neighbours(colour_part(cast)) * colour_part(pixels)).sum(1).mean())
    assert spread > plain + 0.1
    rows = spread_to_neighbours(colour_part(pixels))
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5) and (rows >= 0).all()


def test_the_best_channel_shift_undoes_a_one_level_cast_at_its_discount():
    pixels = bin_centres()
    stored = colour_part(pixels)
    scores = best_channel_shift(colour_part(one_level_brighter_red(pixels)), stored, shifted_factor=0.8)
    # Each cast picture meets its own original exactly once shifted back: 0.8 x cosine 1.
    assert np.allclose(np.diag(scores), 0.8, atol=1e-4)
    unshifted = best_channel_shift(stored, stored, shifted_factor=0.8)
    assert np.allclose(np.diag(unshifted), 1.0, atol=1e-4)
