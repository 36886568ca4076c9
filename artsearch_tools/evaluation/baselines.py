"""What the descriptor is compared with: a plain colour histogram (chance is in `metrics`)."""

from __future__ import annotations

import numpy as np

BASELINE_LEVELS = 8  # per channel: the classic 8x8x8 joint RGB histogram


def rgb_histogram(pixels: np.ndarray, levels: int = BASELINE_LEVELS) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] → [N, levels³] unit rows: the square roots of the joint RGB histogram's bin
    frequencies over every pixel (the cosine of two rows is their Bhattacharyya coefficient)."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] pixels, got {pixels.dtype} {pixels.shape}")
    quantised = (pixels.astype(np.int32) * levels) >> 8
    bins = (quantised[..., 0] * levels + quantised[..., 1]) * levels + quantised[..., 2]
    flat = bins.reshape(len(pixels), -1)
    counts = np.stack([np.bincount(row, minlength=levels**3) for row in flat]).astype(np.float64)
    return np.sqrt(counts / flat.shape[1]).astype(np.float32)
