"""Finds the painting in a visitor's photo, and tells a grey-scale photo from a colour one.

A visitor photographs a painting on a wall: in its frame, from the side (a perspective quadrilateral), under
uneven light, filling half the photo. Encoded whole, the wall and the frame weigh as much as the paint. The
locator finds the painting's boundary with OpenCV and rectifies it, so the encoder can describe the painting
alone beside the whole photo (the gateway searches with both and keeps the better match: a wrong or missed
detection costs nothing but the second search).

How a painting is found (`locate_painting`), on a copy at most `DETECTION_SIDE` pixels a side:
1. edges: Canny on the three Lab channels (a gilt frame on a beige wall differs in colour more than in
   lightness), thresholds from the median gradient (uneven light moves the levels), closed by a dilation so
   a boundary broken by a glare or a shadow still closes;
2. candidate quadrilaterals: every contour (`RETR_LIST`, so nested ones too: the frame's outer edge, its
   bevels, the canvas edge) simplified by `approxPolyDP` at two tolerances; a contour that is not a 4-gon
   yields its `minAreaRect` when it fills that rectangle, and a 5- or 6-gon (a frame whose outline took in
   the label on the wall beside it) its quadrilaterals of four corners that keep most of its area, those
   kept only at `_APPENDAGE_MIN_CONFIDENCE`. Kept: convex, at least `MIN_AREA_FRACTION` of the photo,
   corner angles a plausible view of a rectangle would give;
3. each candidate's evidence: the share of its outline, side by side, that lies on edges (the weakest side
   counts: a painting's four sides are all visible), and how much calmer the band just outside it is than
   its inside (a wall or a frame is calm, paint is busy; a rectangle *inside* a painting - a window, a
   door - has paint on both sides and is refused);
4. the outermost well-supported candidate is the frame (or the canvas, unframed); the innermost candidate
   nested in it that keeps most of its area and is as well supported is the canvas inside the frame.

`confidence` in [0, 1] is that evidence; below `MIN_CONFIDENCE` nothing is reported. A photo that *is* the
painting (a scan, a screenshot cropped to it) gives a quadrilateral near the whole photo or nothing.

Work and memory are bounded: detection runs on <= DETECTION_SIDE^2 pixels (a few ms), the crop is warped
from the working copy the decoder made (<= images.WORK_SIDE a side), never from the full-size upload.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import cv2
import numpy as np

from artsearch.v1 import common_pb2, encoder_pb2

# The encoder already runs one decode (and analysis) per core at once; OpenCV's own thread pool on top of
# that only oversubscribes the cores: measured here, one thread analysed a photo in 28 ms, the default 48.
cv2.setNumThreads(1)

DETECTION_SIDE = 384
# A painting covering this much of the photo is the photo: its crop would describe the same pixels again.
# 0.95, not 0.85 as before 2026-12-07: photos of a screen are found at 86-88 % of the photo, the bezel in the
# query making clip art match; since the gateway answers a confident whole photo without its crop, cropping
# more photos costs little (docs/evaluation.md, "Latency").
WHOLE_PHOTO_AREA = 0.95
# A painting filling less of the photo than this is not searched for: its crop would be too coarse anyway.
MIN_AREA_FRACTION = 0.04
MIN_CONFIDENCE = 0.5
# Corner angles of a rectangle seen at up to ~60 degrees off-axis.
_MIN_CORNER_DEGREES = 50.0
_MAX_CORNER_DEGREES = 130.0
# approxPolyDP tolerances, as fractions of the contour's perimeter.
_POLY_EPSILONS = (0.02, 0.04)
# An outline simplified to this many corners is a quadrilateral with something beside it (a label on the
# wall touching the frame's edges): each four of its corners are candidates (`_without_appendage`).
_APPENDAGE_VERTICES = (5, 6)
# ... when that appendage is small: the four corners keep at least this share of the outline's area; and
# kept only as well evidenced as a frame on a wall is (four sides on edges, a calm surround): measured, the
# frames found so 0.92-0.97, quadrilaterals cut out of the paint of clean paintings at most 0.5.
_APPENDAGE_MIN_AREA_KEPT = 0.8
_APPENDAGE_MIN_CONFIDENCE = 0.8
# A contour whose area fills at least this much of its minAreaRect is taken as that rectangle.
_RECT_FILL = 0.85
# The outline's pixels searched for edges: a band this wide around it (detection pixels).
_OUTLINE_BAND = 5
# A nested quadrilateral is the canvas inside the frame when it keeps at least this much of the frame's area.
_INNER_MIN_AREA_RATIO = 0.45
# One side of an outline may be this weakly supported (on edges) when the others make up for it.
_MIN_SIDE_SUPPORT = 0.35
# ... on outlines covering at least this share of the photo (a picture photographed on purpose is large).
_MIN_LENIENT_AREA = 0.15
# Inside a frame, the canvas must be supported nearly as well as the frame.
_INNER_SUPPORT_RATIO = 0.8
# The band outside a candidate, as a fraction of its mean side, compared with its inside.
_RING_FRACTION = 0.08
# The crop is cut this much (of each side) inside the quadrilateral found: the edge line itself and a sliver
# of frame lip stay out.
CROP_INSET = 0.02


@dataclass(frozen=True)
class LocatedPainting:
    """A painting found in a photo: its corners (x, y) as fractions of the photo's width and height, in the
    order top-left, top-right, bottom-right, bottom-left of the upright photo."""

    corners: np.ndarray  # float64 [4, 2] in [0, 1]
    confidence: float
    area_fraction: float


@dataclass(frozen=True)
class _Candidate:
    corners: np.ndarray  # float32 [4, 2], detection pixels, ordered
    area: float
    support: float  # weakest side's share on edges
    calm: float  # 1 - busyness outside / busyness inside, clipped to [0, 1]

    @property
    def confidence(self) -> float:
        return self.support * (0.5 + 0.5 * self.calm)

    def contains(self, other: _Candidate) -> bool:
        outline = self.corners.reshape(-1, 1, 2)
        return all(cv2.pointPolygonTest(outline, (float(x), float(y)), False) >= 0 for x, y in other.corners)


@dataclass(frozen=True)
class _EdgePass:
    """One look for the outline: edges at this sensitivity, and what of an outline found is accepted."""

    sensitivity: float
    min_area: float = MIN_AREA_FRACTION
    max_area: float = 1.0
    min_calm: float = 0.0
    # Looked at only when the previous look's edges leave the photo's border at most this busy relative to
    # its middle (`_border_busyness`).
    max_border_busyness: float = float("inf")

    def accepts(self, candidate: _Candidate, photo_area: int) -> bool:
        share = candidate.area / photo_area
        return (
            candidate.confidence >= MIN_CONFIDENCE
            and self.min_area <= share <= self.max_area
            and candidate.calm >= self.min_calm
        )


# Tried in turn until one finds an outline. The second, twice as sensitive, finds a washed-out painting whose
# pale sky meets a light wall with too little contrast for the first; at that sensitivity the photo's own
# border and patches inside a close-up also come out as outlines, so it accepts only what a painting
# photographed on a wall looks like: 30-80 % of the photo, its surround calm. It is not even tried on a photo
# whose border is busy (paint up to the border: a close-up, a crop, a print), which keeps its cost off most
# photos the first look found nothing in (docs/evaluation.md).
EDGE_PASSES = (
    _EdgePass(1.0),
    _EdgePass(2.0, min_area=0.3, max_area=0.8, min_calm=0.5, max_border_busyness=0.35),
)
_BORDER_BAND = 0.06


def locate_painting(rgb: np.ndarray) -> LocatedPainting | None:
    """The painting in an upright uint8 RGB photo [H, W, 3], or None when none is found with confidence."""
    small, _scale = _downscaled(rgb, DETECTION_SIDE)
    height, width = small.shape[:2]
    lab, low = _lab_and_threshold(small)
    busy: np.ndarray | None = None
    for edge_pass in EDGE_PASSES:
        if busy is not None and _border_busyness(busy) > edge_pass.max_border_busyness:
            return None
        chosen, busy = _outline(lab, low, edge_pass.sensitivity)
        if chosen is not None and edge_pass.accepts(chosen, width * height):
            break
    else:
        return None
    canvas = chosen.corners
    if chosen.area < WHOLE_PHOTO_AREA * width * height:
        # The canvas is looked for at the working copy's resolution: a frame's lines are a few pixels
        # apart. An outline that is the photo's own border is no frame: the photo is the painting.
        to_work = np.array([rgb.shape[1] / width, rgb.shape[0] / height], dtype=np.float32)
        canvas = _canvas_inside(rgb, chosen.corners * to_work) / to_work
    return LocatedPainting(
        corners=(canvas / np.array([width, height], dtype=np.float32)).astype(np.float64),
        confidence=round(float(chosen.confidence), 4),
        area_fraction=round(float(abs(cv2.contourArea(canvas)) / (width * height)), 4),
    )


def _outline(lab: np.ndarray, low: float, sensitivity: float) -> tuple[_Candidate | None, np.ndarray]:
    """The best outline in the detection-size photo (`_lab_and_threshold`), from edges found at this
    sensitivity, and the busyness map of those edges."""
    edges, busy = _edge_maps(lab, low, sensitivity)
    height, width = edges.shape
    near_edges = cv2.dilate(edges, np.ones((5, 5), np.uint8)) > 0
    outlines, without_appendage = _quadrilaterals(edges, width * height)
    asked = [(corners, 0.0) for corners in outlines]
    asked += [(corners, _APPENDAGE_MIN_CONFIDENCE) for corners in without_appendage]
    candidates = [
        candidate
        for corners, least_confidence in asked
        if (candidate := _scored(corners, near_edges, busy)) is not None
        and candidate.confidence >= least_confidence
    ]
    return _frame_then_canvas(candidates), busy


def _border_busyness(busy: np.ndarray) -> float:
    """Edge density along the photo's border (a band 6 % of its shorter side) over that of its middle (the
    central half of each side): a painting photographed on a wall leaves a calm margin of wall, a close-up,
    a crop or a print filling the photo has paint up to its border."""
    height, width = busy.shape
    band = max(3, round(_BORDER_BAND * min(height, width)))
    border = np.ones(busy.shape, bool)
    border[band:-band, band:-band] = False
    middle = float(busy[height // 4 : height - height // 4, width // 4 : width - width // 4].mean())
    return float(busy[border].mean()) / max(middle, 1e-6)


def rectified_crop(rgb: np.ndarray, located: LocatedPainting, size: int) -> np.ndarray:
    """The painting cut out of `rgb` (the photo `located` was found in, any resolution), perspective undone,
    `CROP_INSET` inside its outline, as uint8 RGB [size, size, 3] (stretched like every encoded picture)."""
    height, width = rgb.shape[:2]
    corners = _inset(located.corners * np.array([width, height]), CROP_INSET).astype(np.float32)
    # Warped first to the painting's own size, then area-averaged down: one bilinear warp straight to `size`
    # would alias a painting several times larger than that.
    out_w = max(size, round(max(_side(corners, 0, 1), _side(corners, 3, 2))))
    out_h = max(size, round(max(_side(corners, 0, 3), _side(corners, 1, 2))))
    target = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(corners, target)
    flat = cv2.warpPerspective(
        rgb, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    return cv2.resize(flat, (size, size), interpolation=cv2.INTER_AREA)


@dataclass(frozen=True)
class PhotoAnalysis:
    """What `analyse_photo` found: the painting (or None), its crop to encode (None when there is nothing
    to add to the whole photo), whether the crop (or, without one, the photo) is grey-scale, and whether
    the whole photo is."""

    located: LocatedPainting | None
    crop: np.ndarray | None
    greyscale: bool
    chroma_spread: float
    photo_greyscale: bool
    photo_chroma_spread: float

    @classmethod
    def of_whole_photo(cls, greyscale: bool, spread: float) -> PhotoAnalysis:
        """The analysis before the painting is looked for: the whole photo's grey-scale test alone."""
        return cls(None, None, greyscale, spread, greyscale, spread)

    def to_proto(self, located_descriptor: np.ndarray | None) -> encoder_pb2.ImageAnalysis:
        analysis = encoder_pb2.ImageAnalysis(
            greyscale=self.greyscale,
            chroma_spread=round(self.chroma_spread, 3),
            photo_greyscale=self.photo_greyscale,
            photo_chroma_spread=round(self.photo_chroma_spread, 3),
        )
        if self.located is not None:
            analysis.located = True
            analysis.corners.extend(round(float(v), 5) for v in self.located.corners.ravel())
            analysis.confidence = self.located.confidence
            analysis.area_fraction = self.located.area_fraction
        if located_descriptor is not None:
            analysis.located_embedding.CopyFrom(common_pb2.Embedding(values=located_descriptor.tolist()))
        return analysis


def analyse_photo(working: np.ndarray, size: int, whole: PhotoAnalysis | None = None) -> PhotoAnalysis:
    """Locates the painting in an upright RGB working copy and cuts its crop for the network (`size`
    square); tells whether the painting (or, when none was found, the photo) is grey-scale. `whole`: the
    photo's own grey-scale test when already made (`whole_photo_analysis`), not made again."""
    photo = whole or whole_photo_analysis(working)
    located = locate_painting(working)
    if located is None or located.area_fraction >= WHOLE_PHOTO_AREA:
        return replace(photo, located=located)
    crop = rectified_crop(working, located, size)
    greyscale, spread = is_greyscale(crop)
    return replace(photo, located=located, crop=crop, greyscale=greyscale, chroma_spread=spread)


def whole_photo_analysis(working: np.ndarray) -> PhotoAnalysis:
    """The whole photo's grey-scale test, before (or without) looking for the painting."""
    return PhotoAnalysis.of_whole_photo(*is_greyscale(working))


# --- grey-scale photos -------------------------------------------------------------------------------------

GREY_SIDE = 128
# A photo is grey-scale when 95 % of its pixels stay within this many Lab units of the chroma a tint of its
# lightness explains (see `chroma_spread`). Measured: grey prints on tinted paper with grain and JPEG noise
# at most 1.87 (the evaluation's and the tests' generators); colour photos of the demo paintings at least
# 3.8 (a detail of a pale Van Gogh), whole paintings at least 10 (docs/gateway.md).
GREY_MAX_CHROMA_SPREAD = 2.7


def chroma_spread(rgb: np.ndarray) -> float:
    """How colourful a photo is, blind to a tint: the 95th percentile, over the pixels of a small copy, of the
    distance in CIE Lab's (a, b) plane from the chroma a linear function of lightness predicts.

    A grey print on cream or sepia paper has chroma, but chroma that follows lightness (the tint scaled by
    the paper's reflectance); a least-squares fit of a and b on L removes it, and the copy's area-averaging
    removes most noise. A colour painting's hues do not follow its lightness."""
    small, _ = _downscaled(rgb, GREY_SIDE)
    lab = cv2.cvtColor(small.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    lightness = np.column_stack([np.ones(len(lab)), lab[:, 0]])
    # lstsq, not the 2 x 2 normal equations (a third faster): those are singular for a picture of one
    # lightness (a flat colour), whose fit is then its mean chroma.
    coefficients, *_ = np.linalg.lstsq(lightness, lab[:, 1:], rcond=None)
    residual = lab[:, 1:] - lightness @ coefficients
    return float(np.percentile(np.hypot(residual[:, 0], residual[:, 1]), 95))


def is_greyscale(rgb: np.ndarray) -> tuple[bool, float]:
    """Whether the photo is grey-scale (a tint allowed), with the statistic it was decided on."""
    spread = chroma_spread(rgb)
    return spread <= GREY_MAX_CHROMA_SPREAD, spread


# --- detection steps ---------------------------------------------------------------------------------------


def _downscaled(rgb: np.ndarray, side: int) -> tuple[np.ndarray, float]:
    height, width = rgb.shape[:2]
    scale = min(1.0, side / max(height, width))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(rgb, size, interpolation=cv2.INTER_AREA), scale


def _lab_and_threshold(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """The blurred picture's Lab channels, and the Canny low threshold at sensitivity 1: the median lightness
    gradient, so uneven light does not move it. Computed once for every look at the edges."""
    lab = cv2.cvtColor(cv2.GaussianBlur(rgb, (5, 5), 0), cv2.COLOR_RGB2Lab)
    gradient = cv2.magnitude(
        cv2.Sobel(lab[..., 0], cv2.CV_32F, 1, 0), cv2.Sobel(lab[..., 0], cv2.CV_32F, 0, 1)
    )
    moving = gradient[gradient > 0]
    return lab, float(np.clip(np.median(moving), 8.0, 60.0)) if moving.size else 8.0


def _canny(lab: np.ndarray, low: float, sensitivity: float) -> np.ndarray:
    """Canny edges on the three Lab channels (per pixel the channel with the strongest gradient), the
    thresholds divided by `sensitivity`."""
    low /= sensitivity
    return cv2.Canny(lab, low, 2.5 * low, L2gradient=True)


def _edge_maps(lab: np.ndarray, low: float, sensitivity: float) -> tuple[np.ndarray, np.ndarray]:
    """Closed edges (uint8 0/255) for the outlines, and a busyness map (local edge density, float32)."""
    edges = _canny(lab, low, sensitivity)
    closed = cv2.dilate(edges, np.ones((3, 3), np.uint8))
    busy = cv2.blur((edges > 0).astype(np.float32), (9, 9))
    return closed, busy


def _quadrilaterals(edges: np.ndarray, image_area: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The contours' quadrilaterals, and those four of the corners of a five- or six-cornered contour make
    (`_without_appendage`)."""
    contours, _ = cv2.findContours(edges, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[np.ndarray] = []
    appended: list[np.ndarray] = []
    for contour in contours:
        area = cv2.contourArea(contour)
        if area >= MIN_AREA_FRACTION * image_area:
            quadrilateral, without_appendage = _contour_quadrilaterals(contour, area)
            found += quadrilateral
            appended += without_appendage
    return found, appended


def _contour_quadrilaterals(contour: np.ndarray, area: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The contour's hull simplified to four corners (else its `minAreaRect`, when the contour fills it), and
    the quadrilaterals without an appendage of the first five- or six-cornered simplification."""
    hull = cv2.convexHull(contour)
    perimeter = cv2.arcLength(hull, True)
    appended: list[np.ndarray] = []
    for epsilon in _POLY_EPSILONS:
        polygon = cv2.approxPolyDP(hull, epsilon * perimeter, True)
        if len(polygon) == 4:
            return [_ordered(polygon.reshape(4, 2).astype(np.float32))], appended
        if len(polygon) in _APPENDAGE_VERTICES and not appended:
            appended = _without_appendage(polygon.reshape(-1, 2).astype(np.float32))
    rect = cv2.minAreaRect(hull)
    if area >= _RECT_FILL * rect[1][0] * rect[1][1]:
        return [_ordered(cv2.boxPoints(rect).astype(np.float32))], appended
    return [], appended


def _without_appendage(polygon: np.ndarray) -> list[np.ndarray]:
    """The quadrilaterals of four of the outline's corners (in order) that keep most of its area: the frame,
    when the outline also took in what its edges touch beside it - the label on the wall, a shadow's corner -
    as a fifth or sixth corner. The scoring keeps the one whose four sides lie on edges."""
    whole = abs(cv2.contourArea(polygon))
    quads = (polygon[list(corners)] for corners in combinations(range(len(polygon)), 4))
    return [_ordered(q) for q in quads if abs(cv2.contourArea(q)) >= _APPENDAGE_MIN_AREA_KEPT * whole]


def _scored(corners: np.ndarray, near_edges: np.ndarray, busy: np.ndarray) -> _Candidate | None:
    """The outline `corners` scored: its sides' support by the edges (`near_edges`: within 2 pixels of
    one) and the calmness of its surround (`busy`), or None when too small or not a plausible rectangle."""
    height, width = near_edges.shape
    area = abs(cv2.contourArea(corners))
    if area < MIN_AREA_FRACTION * width * height or not _plausible_angles(corners):
        return None
    supports = [_on_edges(near_edges, corners[start], corners[(start + 1) % 4]) for start in range(4)]
    support = _outline_support(supports, area / (width * height))
    # Confidence is at most the support: a weakly supported outline needs no calmness measured.
    calm = _calmness(corners, busy) if support >= MIN_CONFIDENCE else 0.0
    return _Candidate(corners, area, support, calm)


def _outline_support(sides: list[float], area_fraction: float) -> float:
    """How well edges support an outline: its weakest side's share, except that on a large outline one
    side interrupted (a caption under a printed picture, a book's gutter, a shadow) leans on the next weakest
    side - the mean of the two - when it is itself supported along at least _MIN_SIDE_SUPPORT of its length.
    Small outlines get no such help: in a close-up of the paint, patches with three straight sides abound."""
    weakest, second = sorted(sides)[:2]
    if weakest < _MIN_SIDE_SUPPORT or area_fraction < _MIN_LENIENT_AREA:
        return weakest
    return (weakest + second) / 2


def _on_edges(near_edges: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """The share of the segment a-b (sampled every pixel) that lies on (near) an edge."""
    height, width = near_edges.shape
    steps = max(2, int(np.ceil(np.linalg.norm(b - a))))
    points = np.linspace(a, b, steps)
    xs = np.clip(np.rint(points[:, 0]).astype(np.intp), 0, width - 1)
    ys = np.clip(np.rint(points[:, 1]).astype(np.intp), 0, height - 1)
    return float(near_edges[ys, xs].mean())


def _calmness(corners: np.ndarray, busy: np.ndarray) -> float:
    """1 - (edge density in a band just outside the outline) / (edge density inside it), in [0, 1]. A band
    cut off by the photo's border counts only where it lies in the photo; with none of it left (the outline
    is the photo's border), the candidate is the whole photo and nothing speaks against it."""
    mean_side = (
        _side(corners, 0, 1) + _side(corners, 1, 2) + _side(corners, 2, 3) + _side(corners, 3, 0)
    ) / 4
    ring_width = max(3, round(_RING_FRACTION * mean_side))
    inside = np.zeros(busy.shape, np.uint8)
    cv2.fillConvexPoly(inside, corners.astype(np.int32), 1)
    grown = cv2.dilate(inside, np.ones((2 * ring_width + 1, 2 * ring_width + 1), np.uint8))
    # The outline itself is an edge: both regions keep a few pixels away from it.
    core = cv2.erode(inside, np.ones((2 * _OUTLINE_BAND + 1,) * 2, np.uint8))
    ring = (grown > 0) & (cv2.dilate(inside, np.ones((2 * _OUTLINE_BAND + 1,) * 2, np.uint8)) == 0)
    if np.count_nonzero(ring) < 0.05 * np.count_nonzero(inside) or not np.any(core):
        return 1.0
    inner = float(busy[core > 0].mean())
    outer = float(busy[ring].mean())
    if inner <= 1e-6:
        return 0.0
    return float(np.clip(1.0 - outer / inner, 0.0, 1.0))


def _frame_then_canvas(candidates: list[_Candidate]) -> _Candidate | None:
    """The outermost well-supported candidate, then the innermost one nested in it that keeps most of its
    area and nearly its support (the canvas inside a frame)."""
    good = [c for c in candidates if c.confidence >= MIN_CONFIDENCE]
    if not good:
        return max(candidates, key=lambda c: c.confidence, default=None)
    outer = max(good, key=lambda c: c.area * c.confidence)
    nested = [
        c
        for c in good
        if c is not outer
        and c.area >= _INNER_MIN_AREA_RATIO * outer.area
        and c.area < 0.97 * outer.area
        and c.confidence >= _INNER_SUPPORT_RATIO * outer.confidence
        and outer.contains(c)
    ]
    return min(nested, key=lambda c: c.area, default=outer)


def _canvas_inside(rgb: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """The canvas inside the frame whose outline is `outer` (pixels of `rgb`).

    Seen flat (the outline rectified), a frame's moulding and mat are bands of the same width on all four
    sides, and every edge in them - bevels, the mat's edges, the canvas edge - is a straight line parallel
    to its side at the same depth on every side. Along a row parallel to a side, such a line's gradient has
    one sign (its mean is large) while paint's has every sign (its mean cancels): `_line_profile`. The
    canvas edge is the innermost depth, within `_MAX_FRAME_FRACTION` of the frame's shorter side, where all
    four sides have a line (`_JOINT_LINE` of each side's strongest); each side then takes its own line
    within `_SNAP` pixels of it. A frame without such a line (no frame: the outline is the canvas) stays."""
    width = round(max(_side(outer, 0, 1), _side(outer, 3, 2)))
    height = round(max(_side(outer, 0, 3), _side(outer, 1, 2)))
    flat_corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    to_flat = cv2.getPerspectiveTransform(outer.astype(np.float32), flat_corners)
    flat = cv2.warpPerspective(rgb, to_flat, (width, height), flags=cv2.INTER_LINEAR)
    lab = cv2.cvtColor(cv2.GaussianBlur(flat, (3, 3), 0), cv2.COLOR_RGB2Lab).astype(np.float32)
    across_rows = cv2.Sobel(lab, cv2.CV_32F, 0, 1)  # what changes from one row to the next
    across_columns = cv2.Sobel(lab, cv2.CV_32F, 1, 0).transpose(1, 0, 2)
    depth = max(4, int(_MAX_FRAME_FRACTION * min(width, height)))
    # Sides in the order top, right, bottom, left; each profile counts rows from that side inwards.
    sides = [across_rows, across_columns[::-1], across_rows[::-1], across_columns]
    profiles = [_line_profile(gradient, depth) for gradient in sides]
    top, right, bottom, left = _frame_depths(profiles)
    inner = np.array(
        [[left, top], [width - right, top], [width - right, height - bottom], [left, height - bottom]],
        dtype=np.float32,
    )
    return cv2.perspectiveTransform(inner.reshape(-1, 1, 2), np.linalg.inv(to_flat)).reshape(4, 2)


_MAX_FRAME_FRACTION = 0.3
# At the canvas edge's depth every side has a line at least this strong relative to its strongest line.
_JOINT_LINE = 0.3
# A side's profile holds lines only when its strongest row stands this far above its median row.
_LINE_CONTRAST = 3.0
# Each side's own line is looked for this many pixels around the joint depth (the outline is a little off).
_SNAP = 3


def _line_profile(gradient: np.ndarray, depth: int) -> np.ndarray:
    """Per row of the outer `depth` rows (rows parallel to the side, [rows, length, channels] gradients
    across them): |mean gradient| over the middle two thirds of the row (near the corners the other
    sides' lines cross), summed over the Lab channels, over the side's strongest row; zeros when the side
    has no line standing out (`_LINE_CONTRAST`)."""
    length = gradient.shape[1]
    middle = gradient[:depth, length // 6 : length - length // 6]
    line = np.abs(middle.mean(axis=1)).sum(axis=-1)
    strongest = float(line.max(initial=0.0))
    if strongest <= 0 or strongest < _LINE_CONTRAST * float(np.median(line)):
        return np.zeros_like(line)
    return line / strongest


def _frame_depths(profiles: list[np.ndarray]) -> list[int]:
    """The frame's depth on each side (0: none), from the sides' line profiles (`_canvas_inside`)."""
    kernel = np.ones(2 * _SNAP + 1, np.uint8)
    near = [cv2.dilate(profile.reshape(1, -1), kernel.reshape(1, -1)).ravel() for profile in profiles]
    joint = np.min(np.vstack(near), axis=0)
    found = np.flatnonzero(joint >= _JOINT_LINE)
    if not found.size:
        return [0, 0, 0, 0]
    common = int(found[-1])
    depths = []
    for profile in profiles:
        low, high = max(0, common - _SNAP), min(len(profile), common + _SNAP + 1)
        depths.append(low + int(np.argmax(profile[low:high])) + 1)
    return depths


# --- geometry helpers --------------------------------------------------------------------------------------


def _ordered(corners: np.ndarray) -> np.ndarray:
    """Corners as top-left, top-right, bottom-right, bottom-left (by angle around the centre, starting from
    the corner nearest the top-left)."""
    centre = corners.mean(axis=0)
    angles = np.arctan2(corners[:, 1] - centre[1], corners[:, 0] - centre[0])
    clockwise = corners[np.argsort(angles)]  # image y points down: increasing angle is clockwise on screen
    start = int(np.argmin(clockwise.sum(axis=1)))
    return np.roll(clockwise, -start, axis=0)


def _plausible_angles(corners: np.ndarray) -> bool:
    if not cv2.isContourConvex(corners.reshape(-1, 1, 2).astype(np.int32)):
        return False
    for index in range(4):
        before, at, after = corners[index - 1], corners[index], corners[(index + 1) % 4]
        u, v = before - at, after - at
        cosine = float(np.dot(u, v) / max(1e-6, np.linalg.norm(u) * np.linalg.norm(v)))
        degrees = np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
        if not _MIN_CORNER_DEGREES <= degrees <= _MAX_CORNER_DEGREES:
            return False
    return True


def _inset(corners: np.ndarray, fraction: float) -> np.ndarray:
    """Each corner moved `fraction` of the way towards the opposite corner... of both adjacent sides."""
    moved = corners.astype(np.float64).copy()
    for index in range(4):
        before, after = corners[index - 1], corners[(index + 1) % 4]
        moved[index] += fraction * ((before - corners[index]) + (after - corners[index]))
    return moved


def _side(corners: np.ndarray, a: int, b: int) -> float:
    return float(np.linalg.norm(corners[a] - corners[b]))
