"""Reassembling a painting from pieces whose positions are known only roughly.

One function per kind of piece:

* `assemble_jigsaw` -- jigsaw pieces. Every pair of neighbouring pieces is registered to the pixel where
  the two meet (no gap between them, matching colours where they overlap); a spanning tree of the most
  confident pairs places the pieces, and single-pixel moves against all pairs at once settle what flat
  areas leave ambiguous. Pixels no piece covers are trimmed at the edges and inpainted inside.
* `fill_holes` -- a painting with white holes plus the cut-out shapes that fill them. Each shape is placed
  where its mask best fits a hole; the thin ring the holes leave around a shape is inpainted.
* `locate_details` -- a complete painting plus small detail crops, each found where it sits in the painting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

_MIN_PAIR_OVERLAP = 40  # overlapping opaque pixels needed to trust a pair's colour comparison
_MAX_PAIR_COST = 15.0  # a correct seam costs ~2-6 (mean absolute colour difference, 0..255)
_GAP_WEIGHT = 10.0
_MISFIT_COST = 30.0  # an offset outside a pair's search window, or one where the pair barely touches
_REFINE_SWEEPS = 10
_GUESS_PULL = 0.5
_MAX_DETAIL_SCORE = 12.0
_OPAQUE = 128
_WHITE = 235  # the holes are pure white (GCompris's babyshapes)
_HOLE_RIM = 4  # how far the holes' blurred edge reaches beyond the white
_MAX_EDGE_TRIM = 3


@dataclass(frozen=True)
class PieceSpec:
    """One piece (jigsaw piece, cut-out shape or detail crop) and where it roughly belongs."""

    resource: str  # where the piece comes from (a path inside an rcc file)
    rgba: np.ndarray  # H x W x 4, uint8
    guess: tuple[float, float]  # estimated top-left corner, in the painting's pixels

    @property
    def mask(self) -> np.ndarray:
        return self.rgba[..., 3] >= _OPAQUE

    @property
    def size(self) -> tuple[int, int]:
        return self.rgba.shape[1], self.rgba.shape[0]


@dataclass(frozen=True)
class Assembly:
    """The reassembled painting and where each piece lies in it."""

    image: np.ndarray  # H x W x 3 uint8
    boxes: tuple[tuple[int, int, int, int] | None, ...]  # per piece: left, top, right, bottom (or None)
    filled_pixels: int  # pixels no piece covered, inpainted


# --------------------------------------------------------------------------------------------------
# Jigsaw puzzles
# --------------------------------------------------------------------------------------------------


def assemble_jigsaw(pieces: tuple[PieceSpec, ...], radius: int) -> Assembly:
    """The painting the jigsaw pieces make, each moved up to `radius` pixels from its guessed place."""
    offsets = _register_jigsaw(pieces, radius)
    left = min(x for x, _ in offsets)
    top = min(y for _, y in offsets)
    offsets = [(x - left, y - top) for x, y in offsets]
    width = max(x + piece.size[0] for (x, _), piece in zip(offsets, pieces, strict=True))
    height = max(y + piece.size[1] for (_, y), piece in zip(offsets, pieces, strict=True))
    canvas, covered = _compose(pieces, offsets, (height, width))
    (x0, y0, x1, y1) = _trim_ragged_edges(covered)
    canvas, covered = canvas[y0:y1, x0:x1], covered[y0:y1, x0:x1]
    holes = ~covered
    image = _inpaint(canvas, holes) if holes.any() else canvas
    boxes = tuple(
        (x - x0, y - y0, x - x0 + piece.size[0], y - y0 + piece.size[1])
        for (x, y), piece in zip(offsets, pieces, strict=True)
    )
    return Assembly(image=image, boxes=boxes, filled_pixels=int(holes.sum()))


_SEAM_PAD = 2


@dataclass(frozen=True)
class _SeamView:
    """A piece padded by a margin, with its mask grown by that margin, for comparing seams."""

    mask: np.ndarray
    grown: np.ndarray
    rgb: np.ndarray  # int16, so differences do not wrap
    shaped: bool  # has transparent parts (a jigsaw piece rather than a rectangle)

    @classmethod
    def of(cls, piece: PieceSpec) -> _SeamView:
        mask = np.pad(piece.mask, _SEAM_PAD)
        rgb = np.pad(
            piece.rgba[..., :3].astype(np.int16), ((_SEAM_PAD, _SEAM_PAD), (_SEAM_PAD, _SEAM_PAD), (0, 0))
        )
        return cls(mask=mask, grown=_dilate(mask, _SEAM_PAD), rgb=rgb, shaped=not piece.mask.all())


@dataclass(frozen=True)
class _PairFit:
    """How well piece `second` fits against piece `first` at each relative offset tried."""

    first: int
    second: int
    costs: dict[tuple[int, int], float]  # top-left of `second` minus top-left of `first` -> cost

    @property
    def best(self) -> tuple[int, int]:
        return min(self.costs, key=self.costs.__getitem__)

    @property
    def confidence(self) -> float:
        ranked = sorted(self.costs.values())
        return (ranked[1] if len(ranked) > 1 else _MAX_PAIR_COST) - ranked[0]

    def cost(self, offset: tuple[int, int]) -> float:
        return self.costs.get(offset, _MISFIT_COST)


def _register_jigsaw(pieces: tuple[PieceSpec, ...], radius: int) -> list[tuple[int, int]]:
    """Integer top-left corners that make neighbouring pieces meet without gaps and agree where they overlap.

    Every pair of neighbours is fitted on its own; a spanning tree of the most confident fits gives a first
    layout, which is then improved piece by piece against all fits at once (a flat area can leave a single
    fit ambiguous by a pixel, the loop of fits around it is not).
    """
    guesses = [(round(piece.guess[0]), round(piece.guess[1])) for piece in pieces]
    views = [_SeamView.of(piece) for piece in pieces]
    fits = []
    for first in range(len(pieces)):
        for second in range(first + 1, len(pieces)):
            # Plain rectangles just abut: there is no overlap to compare, the rounded guess is exact.
            if not (views[first].shaped and views[second].shaped):
                continue
            if not _may_touch(pieces[first], pieces[second], radius):
                continue
            relative = (guesses[second][0] - guesses[first][0], guesses[second][1] - guesses[first][1])
            costs = _fit_pair(views[first], views[second], relative, radius)
            if costs is not None:
                fits.append(_PairFit(first, second, costs))
    positions = _place_by_spanning_tree(len(pieces), fits, guesses)
    return _refine_positions(positions, fits)


def _may_touch(first: PieceSpec, second: PieceSpec, radius: int) -> bool:
    """Whether the two pieces' boxes, at the package's positions, come within `radius` of each other."""
    (x_a, y_a), (w_a, h_a) = first.guess, first.size
    (x_b, y_b), (w_b, h_b) = second.guess, second.size
    return (
        x_a - radius < x_b + w_b
        and x_b - radius < x_a + w_a
        and y_a - radius < y_b + h_b
        and y_b - radius < y_a + h_a
    )


def _fit_pair(
    first: _SeamView, second: _SeamView, relative: tuple[int, int], radius: int
) -> dict[tuple[int, int], float] | None:
    """The cost of each offset of `second` within `radius` of `relative`; None when no offset fits.

    The cost of an offset is the mean colour difference where the two pieces overlap, plus the pixels
    left uncovered between them (relative to the overlap), plus a small pull towards the package's own
    positions, which decides between offsets that flat areas (sky, paper) cannot tell apart.
    """
    costs: dict[tuple[int, int], float] = {}
    height_a, width_a = first.mask.shape
    height_b, width_b = second.mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ox, oy = relative[0] + dx, relative[1] + dy
            x0, y0 = max(0, ox), max(0, oy)
            x1, y1 = min(width_a, ox + width_b), min(height_a, oy + height_b)
            if x0 >= x1 or y0 >= y1:
                continue
            in_a = (slice(y0, y1), slice(x0, x1))
            in_b = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
            mask_a, mask_b = first.mask[in_a], second.mask[in_b]
            overlap = mask_a & mask_b
            count = int(overlap.sum())
            if count < _MIN_PAIR_OVERLAP:
                continue
            gap = int((first.grown[in_a] & second.grown[in_b] & ~mask_a & ~mask_b).sum())
            colour = float(np.abs(first.rgb[in_a][overlap] - second.rgb[in_b][overlap]).mean())
            costs[(ox, oy)] = colour + _GAP_WEIGHT * gap / count + _GUESS_PULL * (abs(dx) + abs(dy))
    if not costs:
        return None
    best = min(costs, key=costs.__getitem__)
    # A best fit on the rim of the search window is a diagonal neighbour or a flat area sliding: unusable.
    if costs[best] > _MAX_PAIR_COST or radius in (abs(best[0] - relative[0]), abs(best[1] - relative[1])):
        return None
    return costs


def _place_by_spanning_tree(
    count: int, fits: list[_PairFit], guesses: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    parent = list(range(count))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    neighbours: dict[int, list[tuple[int, tuple[int, int]]]] = {node: [] for node in range(count)}
    for fit in sorted(fits, key=lambda fit: fit.confidence, reverse=True):
        root_a, root_b = find(fit.first), find(fit.second)
        if root_a == root_b:
            continue
        parent[root_a] = root_b
        offset = fit.best
        neighbours[fit.first].append((fit.second, offset))
        neighbours[fit.second].append((fit.first, (-offset[0], -offset[1])))
    positions: dict[int, tuple[int, int]] = {}
    for start in range(count):
        if start in positions:
            continue
        component = _walk_tree(start, neighbours)
        # A component floats freely: anchor it where the package's guesses put it on average.
        shift_x = round(float(np.mean([guesses[node][0] - x for node, (x, _) in component.items()])))
        shift_y = round(float(np.mean([guesses[node][1] - y for node, (_, y) in component.items()])))
        for node, (x, y) in component.items():
            positions[node] = (x + shift_x, y + shift_y)
    return [positions[node] for node in range(count)]


def _walk_tree(
    start: int, neighbours: dict[int, list[tuple[int, tuple[int, int]]]]
) -> dict[int, tuple[int, int]]:
    placed = {start: (0, 0)}
    stack = [start]
    while stack:
        node = stack.pop()
        for other, (dx, dy) in neighbours[node]:
            if other not in placed:
                placed[other] = (placed[node][0] + dx, placed[node][1] + dy)
                stack.append(other)
    return placed


def _refine_positions(positions: list[tuple[int, int]], fits: list[_PairFit]) -> list[tuple[int, int]]:
    """Move single pieces by a pixel or two while that lowers the summed cost of all fits."""
    positions = list(positions)
    fits_of: dict[int, list[_PairFit]] = {node: [] for node in range(len(positions))}
    for fit in fits:
        fits_of[fit.first].append(fit)
        fits_of[fit.second].append(fit)

    def local_cost(node: int, position: tuple[int, int]) -> float:
        total = 0.0
        for fit in fits_of[node]:
            first = position if fit.first == node else positions[fit.first]
            second = position if fit.second == node else positions[fit.second]
            total += fit.cost((second[0] - first[0], second[1] - first[1]))
        return total

    for _ in range(_REFINE_SWEEPS):
        moved = False
        for node in range(len(positions)):
            if not fits_of[node]:
                continue
            x, y = positions[node]
            candidates = [(x + dx, y + dy) for dy in range(-2, 3) for dx in range(-2, 3)]
            best = min(candidates, key=lambda candidate: (local_cost(node, candidate), candidate != (x, y)))
            if best != (x, y):
                positions[node] = best
                moved = True
        if not moved:
            break
    return positions


def _compose(
    pieces: Iterable[PieceSpec], offsets: list[tuple[int, int]], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Paint every pixel from the piece it lies deepest inside (edges of pieces are the least reliable)."""
    canvas = np.zeros((*shape, 3), np.uint8)
    best_depth = np.zeros(shape, np.int16)
    for piece, (x, y) in zip(pieces, offsets, strict=True):
        width, height = piece.size
        region = (slice(y, y + height), slice(x, x + width))
        depth = _depth(piece.mask)
        better = depth > best_depth[region]
        canvas[region][better] = piece.rgba[..., :3][better]
        best_depth[region][better] = depth[better]
    return canvas, best_depth > 0


def _depth(mask: np.ndarray, levels: int = 4) -> np.ndarray:
    """Per pixel, how many erosions (up to `levels`) it survives: 0 outside the mask."""
    depth = np.zeros(mask.shape, np.int16)
    current = mask.copy()
    for _ in range(levels):
        depth += current
        current = _erode(current)
    return depth


def _trim_ragged_edges(covered: np.ndarray) -> tuple[int, int, int, int]:
    """Drop up to a few outer rows/columns that pieces do not fully cover (pieces differ by a pixel)."""
    height, width = covered.shape
    top, bottom, left, right = 0, height, 0, width
    for _ in range(_MAX_EDGE_TRIM):
        if not covered[top, left:right].all():
            top += 1
        if not covered[bottom - 1, left:right].all():
            bottom -= 1
        if not covered[top:bottom, left].all():
            left += 1
        if not covered[top:bottom, right - 1].all():
            right -= 1
    return left, top, right, bottom


# --------------------------------------------------------------------------------------------------
# Shapes in white holes
# --------------------------------------------------------------------------------------------------


def fill_holes(background: np.ndarray, pieces: tuple[PieceSpec, ...], radius: int) -> Assembly:
    """Put each cut-out shape back into its white hole, then inpaint the hole's leftover rim."""
    canvas = background.copy()
    height, width = canvas.shape[:2]
    white = (background >= _WHITE).all(axis=2)
    covered = np.zeros((height, width), bool)
    boxes = []
    for piece in pieces:
        x, y = _best_hole_fit(piece, white, radius)
        piece_region, canvas_region = _clip(piece.size, (x, y), (width, height))
        mask = piece.mask[piece_region]
        canvas[canvas_region][mask] = piece.rgba[..., :3][piece_region][mask]
        covered[canvas_region] |= mask
        boxes.append((x, y, x + piece.size[0], y + piece.size[1]))
    holes = _reconstruct(seed=white & covered, within=white)
    # The holes' soft, light rim just outside the white, where no shape covered it.
    leftover = _dilate(holes, _HOLE_RIM) & ~covered
    image = _inpaint(canvas, leftover) if leftover.any() else canvas
    return Assembly(image=image, boxes=tuple(boxes), filled_pixels=int(leftover.sum()))


def _best_hole_fit(piece: PieceSpec, white: np.ndarray, radius: int) -> tuple[int, int]:
    height, width = white.shape
    guess = (round(piece.guess[0]), round(piece.guess[1]))
    best: tuple[int, tuple[int, int]] | None = None
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            position = (guess[0] + dx, guess[1] + dy)
            piece_region, canvas_region = _clip(piece.size, position, (width, height))
            mask = piece.mask[piece_region]
            hole = white[canvas_region]
            # Reward hole pixels the shape covers, penalise painted pixels it would hide.
            score = int((mask & hole).sum()) - int((mask & ~hole).sum())
            if best is None or score > best[0]:
                best = (score, position)
    assert best is not None
    return best[1]


def _reconstruct(seed: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The parts of `within` connected to `seed` (morphological reconstruction by dilation)."""
    current = seed & within
    while True:
        grown = _dilate(current) & within
        if (grown == current).all():
            return current
        current = grown


# --------------------------------------------------------------------------------------------------
# Detail crops
# --------------------------------------------------------------------------------------------------


def locate_details(background: np.ndarray, pieces: tuple[PieceSpec, ...], radius: int) -> Assembly:
    """The painting is complete; find where each detail crop sits in it (None if it is not an exact crop)."""
    boxes = tuple(_locate_detail(background, piece, radius) for piece in pieces)
    return Assembly(image=background, boxes=boxes, filled_pixels=0)


def _locate_detail(background: np.ndarray, piece: PieceSpec, radius: int) -> tuple[int, int, int, int] | None:
    width, height = piece.size
    x, y = round(piece.guess[0]) - radius, round(piece.guess[1]) - radius
    # Every candidate window at once; outside the painting counts as a total mismatch.
    region = np.full((height + 2 * radius, width + 2 * radius, 3), 10_000, np.int32)
    piece_region, canvas_region = _clip(region.shape[1::-1], (x, y), background.shape[1::-1])
    region[piece_region] = background[canvas_region]
    windows = np.lib.stride_tricks.sliding_window_view(region, (height, width, 3))[:, :, 0]
    mask = piece.mask
    difference = np.abs(windows - piece.rgba[..., :3].astype(np.int32)).sum(axis=-1)
    scores = (difference * mask).sum(axis=(-2, -1)) / (3 * max(int(mask.sum()), 1))
    dy, dx = np.unravel_index(int(np.argmin(scores)), scores.shape)
    if scores[dy, dx] > _MAX_DETAIL_SCORE:
        return None
    return (x + int(dx), y + int(dy), x + int(dx) + width, y + int(dy) + height)


# --------------------------------------------------------------------------------------------------
# Pixel and mask operations shared by the above
# --------------------------------------------------------------------------------------------------


def _inpaint(image: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Fill `unknown` pixels from the outside in with the mean of their known 8-neighbours."""
    result = image.astype(np.float32)
    known = ~unknown
    height, width = unknown.shape
    while not known.all():
        padded_values = np.pad(result * known[..., None], ((1, 1), (1, 1), (0, 0)))
        padded_known = np.pad(known, 1).astype(np.float32)
        total = np.zeros_like(result)
        count = np.zeros(unknown.shape, np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                window = (slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width))
                total += padded_values[window]
                count += padded_known[window]
        frontier = ~known & (count > 0)
        if not frontier.any():
            break  # nothing known at all: leave the rest as it is
        result[frontier] = total[frontier] / count[frontier][:, None]
        known = known | frontier
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)


def _clip(
    size: tuple[int, int], position: tuple[int, int], canvas_size: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Matching slices of a piece of `size` at `position` and of the canvas, clipped to the canvas."""
    (width, height), (x, y), (canvas_width, canvas_height) = size, position, canvas_size
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, canvas_width), min(y + height, canvas_height)
    x1, y1 = max(x1, x0), max(y1, y0)
    return (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)), (slice(y0, y1), slice(x0, x1))


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    for _ in range(steps):
        padded = np.pad(mask, 1, constant_values=False)
        mask = mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return mask
