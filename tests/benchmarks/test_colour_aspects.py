"""The candidate colour aspects bench/colour_aspects.py compares (the comparison is a benchmark run)."""

from __future__ import annotations

import numpy as np

from bench.colour_aspects import chromaticity, grey_world, rgb_levels
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
