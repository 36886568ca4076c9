"""From the network's outputs and the decoded pixels to the stored descriptor: content, style, colour.

* content -- the `features` output (global-average-pooled head features: what the picture shows);
* style -- the `style` output (channel means and standard deviations of mid-level feature maps: texture,
  brushwork, independent of where things are);
* colour -- a joint RGB histogram of the 224x224 pixels the network saw, computed here in numpy so that
  every backend (onnxruntime, Triton) gives identical values. Pure-white pixels are left out: the decoder
  paints transparency white, and a white mat or border says nothing about the artwork. Hellinger-mapped
  (square roots of the bin frequencies), so the cosine of two histograms is their Bhattacharyya coefficient.

Each aspect is L2-normalised and scaled by sqrt(default weight) (`artsearch.descriptor_layout`): the stored
vector has unit length and dot products are weighted sums of per-aspect cosines. The defaults, and the choices
above, come from `artsearch eval descriptors` (docs/evaluation.md); changing any of them changes every
vector, so bump DESCRIPTOR_REVISION (part of the version the encoder reports).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from artsearch.config import ConfigError
from artsearch.descriptor_layout import DescriptorLayout, assemble, unit_rows
from services.encoder.backends import STYLE_OUTPUT, EmbeddingModelInfo

CONTENT = "content"
STYLE = "style"
COLOUR = "colour"

# Chosen by `artsearch eval descriptors`: "find the painting from a puzzle piece" top-1 >= 0.85, category
# mAP not below content alone, the best at paintings to within one query, then the best at categories;
# see docs/evaluation.md for the table.
DEFAULT_WEIGHTS: Mapping[str, float] = {CONTENT: 0.5, STYLE: 0.3, COLOUR: 0.2}
DESCRIPTOR_REVISION = 1

COLOUR_LEVELS = 10  # per channel: a 10x10x10 joint histogram
COLOUR_BINS = COLOUR_LEVELS**3
# A pixel whose three channels are all at least this is "white": background, not paint.
WHITE_THRESHOLD = 250
_WHITE_BIN = COLOUR_BINS - 1  # where an all-white picture puts its mass, so it still has a colour


def content_part(features: np.ndarray) -> np.ndarray:
    return unit_rows(features)


def style_part(style: np.ndarray) -> np.ndarray:
    return unit_rows(style)


# The histogram is binned with lookup tables rather than arithmetic on int32 copies of the pixels (4x
# faster; it runs on the same cores as the network). Each channel gets an 11th level for "white" (>= the
# threshold) so whiteness is read from the bin code; the 11^3 fine bins then fold onto the 10^3 stored ones,
# all-white dropped.
_FINE_LEVELS = COLOUR_LEVELS + 1
_FINE_BINS = _FINE_LEVELS**3


def _fine_channel_lookups() -> list[np.ndarray]:
    values = np.arange(256)
    levels = np.where(values >= WHITE_THRESHOLD, COLOUR_LEVELS, (values * COLOUR_LEVELS) >> 8)
    return [(levels * _FINE_LEVELS**power).astype(np.int32) for power in (2, 1, 0)]


def _fine_to_stored_bins() -> np.ndarray:
    """Fine bin code → stored bin, or COLOUR_BINS (a discard slot) for the all-white fine bin."""
    red, green, blue = np.meshgrid(*(np.arange(_FINE_LEVELS),) * 3, indexing="ij")
    white = (red == COLOUR_LEVELS) & (green == COLOUR_LEVELS) & (blue == COLOUR_LEVELS)
    top = COLOUR_LEVELS - 1
    stored = (np.minimum(red, top) * COLOUR_LEVELS + np.minimum(green, top)) * COLOUR_LEVELS
    stored += np.minimum(blue, top)
    return np.where(white, COLOUR_BINS, stored).ravel()


_CHANNEL_LOOKUPS = _fine_channel_lookups()
_STORED_BIN = _fine_to_stored_bins()


def colour_part(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB [N, H, W, 3] → unit rows [N, COLOUR_BINS]: sqrt of the non-white pixels' joint histogram."""
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"expected uint8 [N, H, W, 3] pixels, got {pixels.dtype} {pixels.shape}")
    count = pixels.shape[0]
    red, green, blue = _CHANNEL_LOOKUPS
    codes = red[pixels[..., 0]] + green[pixels[..., 1]] + blue[pixels[..., 2]]
    codes = codes.reshape(count, -1) + (np.arange(count, dtype=np.int32) * _FINE_BINS)[:, None]
    fine = np.bincount(codes.ravel(), minlength=count * _FINE_BINS).reshape(count, _FINE_BINS)
    histograms = np.empty((count, COLOUR_BINS), dtype=np.float64)
    for row in range(count):
        counts = np.bincount(_STORED_BIN, weights=fine[row], minlength=COLOUR_BINS + 1)[:COLOUR_BINS]
        if counts.sum() == 0:
            counts[_WHITE_BIN] = 1
        histograms[row] = counts / counts.sum()
    return np.sqrt(histograms).astype(np.float32)  # unit length already: the frequencies sum to 1


def aspect_parts(
    outputs: Mapping[str, np.ndarray], pixels: np.ndarray, features_output: str
) -> dict[str, np.ndarray]:
    """Each aspect's unit rows, before weighting: what the evaluation re-weights and `assemble` stores."""
    return {
        CONTENT: content_part(outputs[features_output]),
        STYLE: style_part(outputs[STYLE_OUTPUT]),
        COLOUR: colour_part(pixels),
    }


def descriptor_layout(
    info: EmbeddingModelInfo, weights: Mapping[str, float] = DEFAULT_WEIGHTS
) -> DescriptorLayout:
    """The layout for this model's outputs; ConfigError when the model lacks an output the descriptor needs
    (a model exported before the style output existed)."""
    widths = dict(info.outputs)
    missing = [name for name in (info.features_output, STYLE_OUTPUT) if name not in widths]
    if missing:
        raise ConfigError(
            f"model {info.name} {info.version} has no output {missing} (outputs: {sorted(widths)}): "
            "re-export it with `make model`"
        )
    lengths = [(CONTENT, widths[info.features_output]), (STYLE, widths[STYLE_OUTPUT]), (COLOUR, COLOUR_BINS)]
    return DescriptorLayout.build(lengths, weights)


class DescriptorAssembler:
    """Turns a batch's graph outputs and pixels into stored descriptors for one model."""

    def __init__(self, info: EmbeddingModelInfo, weights: Mapping[str, float] = DEFAULT_WEIGHTS) -> None:
        self.layout = descriptor_layout(info, weights)
        self._features_output = info.features_output
        # The vectors depend on the graph (its version) and on this module (the revision).
        self.version = f"{info.version}-d{DESCRIPTOR_REVISION}"

    def parts(self, outputs: Mapping[str, np.ndarray], pixels: np.ndarray) -> dict[str, np.ndarray]:
        return aspect_parts(outputs, pixels, self._features_output)

    def __call__(self, outputs: Mapping[str, np.ndarray], pixels: np.ndarray) -> np.ndarray:
        """float32 [N, layout.dimension], each row of unit length."""
        return assemble(self.parts(outputs, pixels), self.layout)
