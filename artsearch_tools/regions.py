"""The regions of a picture that are described beside the whole, so that a photo of a detail finds the whole.

A region grid is one or more scales; a scale `NxN@S` is N x N windows whose sides are the fraction S of the
picture's width and height, spread evenly from edge to edge (they overlap when N x S > 1; one window is
centred). Each window is
cropped from the decoded picture and encoded like any picture (artsearch_tools.ingest_regions); the search
service stores the descriptors with the artwork (SearchService.Upsert, IndexedArtwork.regions) and
matches queries against them on request (SearchRequest.match_regions).

The default grid was chosen by measurement (docs/ingest.md, "Regions"): "tiny detail" photos of the demo
paintings (3-7 % of the painting's area, upscaled and blurred) among distractors.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SCALE = re.compile(r"(\d+)x\1@(0?\.\d+|1(?:\.0*)?)")
MAX_WINDOWS_PER_SIDE = 8


@dataclass(frozen=True)
class RegionScale:
    """N x N windows of side `side` (a fraction of the picture's width and height)."""

    per_side: int
    side: float

    def __post_init__(self) -> None:
        if not 1 <= self.per_side <= MAX_WINDOWS_PER_SIDE:
            raise ValueError(f"a scale has 1 to {MAX_WINDOWS_PER_SIDE} windows per side, not {self.per_side}")
        if not 0.0 < self.side <= 1.0:
            raise ValueError(f"a window's side is a fraction in (0, 1], not {self.side}")
        if self.per_side > 1 and self.per_side * self.side < 1.0 - 1e-9:  # one window is centred
            raise ValueError(f"{self}: {self.per_side} windows of side {self.side} leave gaps between them")

    def __str__(self) -> str:
        return f"{self.per_side}x{self.per_side}@{self.side:g}"

    def windows(self) -> list[tuple[float, float, float, float]]:
        """(left, top, right, bottom) of each window as fractions of the picture, row by row."""
        if self.per_side == 1:
            starts = [(1.0 - self.side) / 2]
        else:
            stride = (1.0 - self.side) / (self.per_side - 1)
            starts = [i * stride for i in range(self.per_side)]
        return [(x, y, x + self.side, y + self.side) for y in starts for x in starts]


@dataclass(frozen=True)
class RegionGrid:
    """The scales whose windows are described, in order; region i of an artwork is window i of the list."""

    scales: tuple[RegionScale, ...]

    def __str__(self) -> str:
        return ",".join(str(scale) for scale in self.scales)

    def windows(self) -> list[tuple[float, float, float, float]]:
        return [window for scale in self.scales for window in scale.windows()]

    @property
    def count(self) -> int:
        return sum(scale.per_side**2 for scale in self.scales)

    @property
    def smallest_side(self) -> float:
        return min(scale.side for scale in self.scales)

    def pixel_boxes(self, width: int, height: int) -> list[tuple[int, int, int, int]]:
        """The windows in pixels of a `width` x `height` picture, each at least one pixel wide and high."""
        boxes = []
        for left, top, right, bottom in self.windows():
            x0, y0 = min(width - 1, round(left * width)), min(height - 1, round(top * height))
            boxes.append((x0, y0, max(x0 + 1, round(right * width)), max(y0 + 1, round(bottom * height))))
        return boxes


# 20 windows: quarters (details of 10-25 % of the picture) and a 4 x 4 grid of windows a third wide with
# overlap (tiny details, 3-7 %). Measured (docs/ingest.md, "Regions"): as good on tiny details as 34
# windows (3x3@0.5 + 5x5@0.3) within one photo in 108, at 21 instead of 35 encodings per artwork.
DEFAULT_REGION_GRID = RegionGrid((RegionScale(2, 0.5), RegionScale(4, 0.35)))


def parse_region_grid(spec: str) -> RegionGrid | None:
    """A grid from its text form, e.g. "2x2@0.5,4x4@0.3"; "off" (or "") means no regions (None).
    ValueError says what is wrong."""
    text = spec.strip().lower()
    if text in ("", "off", "none"):
        return None
    scales = []
    for part in text.split(","):
        match = _SCALE.fullmatch(part.strip())
        if match is None:
            raise ValueError(f"region scale {part.strip()!r} is not of the form NxN@S (e.g. 3x3@0.4)")
        scales.append(RegionScale(int(match.group(1)), float(match.group(2))))
    return RegionGrid(tuple(scales))
