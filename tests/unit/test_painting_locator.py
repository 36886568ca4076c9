"""The painting locator and the grey-scale test on real paintings (the GCompris demo catalogue) composited
into seeded photos with known geometry (tests/painting_photos.py)."""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
import pytest
from painting_photos import gallery_wall, grey_print, screenshot
from PIL import Image

from artsearch_tools.evaluation.visitor_photos import book, crop, phone, visitor_photos
from services.encoder import painting_locator
from services.encoder.images import open_image
from services.encoder.painting_locator import (
    EDGE_PASSES,
    GREY_MAX_CHROMA_SPREAD,
    _border_busyness,
    _Candidate,
    _outline_support,
    _without_appendage,
    analyse_photo,
    is_greyscale,
    locate_painting,
    rectified_crop,
)
from services.encoder.server import ANALYSIS_WORK_SIDE

WORK_SIDE = 672


def working_copy(image: Image.Image) -> np.ndarray:
    """What the encoder's decoder hands the locator: upright RGB, longer side WORK_SIDE."""
    scale = WORK_SIDE / max(image.size)
    size = (round(image.width * scale), round(image.height * scale))
    return np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR))


@pytest.fixture(scope="module")
def paintings(gcompris_catalogue: Path) -> list[Image.Image]:
    files = sorted(gcompris_catalogue.glob("*.jpg"))
    assert len(files) >= 30
    return [Image.open(path).convert("RGB") for path in files]


def test_the_canvas_on_a_gallery_wall_is_found_within_a_few_percent(paintings):
    errors = []
    for seed, painting in enumerate(paintings[:18]):
        photo, truth = gallery_wall(painting, seed)
        located = locate_painting(working_copy(photo))
        assert located is not None, f"painting {seed}: nothing found on the wall"
        errors.append(float(np.abs(located.corners - truth).max()))
    errors_array = np.array(errors)
    # Every corner within 3 % of the photo's side for nearly every photo (measured here: 17 of 18, median
    # 0.0075; on the evaluation's gallery_wall DEVELOPMENT photos 81.5 % of 108, median 0.012). The misses
    # are the frame's inner bevel, or a straight line in the paint, taken for the canvas edge.
    assert np.median(errors_array) <= 0.015, errors
    assert np.mean(errors_array <= 0.03) >= 0.85, errors


def test_the_rectified_crop_is_the_painting(paintings):
    """The crop of a wall photo looks like the painting (not the wall): closer to it than the photo is."""
    painting = paintings[3]
    photo, _ = gallery_wall(painting, 3)
    working = working_copy(photo)
    located = locate_painting(working)
    assert located is not None
    crop = rectified_crop(working, located, 224).astype(np.float32)
    reference = np.asarray(painting.resize((224, 224)), dtype=np.float32)
    whole = np.asarray(Image.fromarray(working).resize((224, 224)), dtype=np.float32)
    assert np.abs(crop - reference).mean() < 0.6 * np.abs(whole - reference).mean()


def test_a_clean_painting_gives_the_whole_or_nothing_never_a_small_crop(paintings):
    for index, painting in enumerate(paintings):
        located = locate_painting(working_copy(painting))
        assert located is None or located.area_fraction >= 0.45, (index, located)


def test_a_screenshot_gives_the_painting_or_nothing_never_a_small_crop(paintings):
    for index, painting in enumerate(paintings[:12]):
        shot = screenshot(painting, index)
        located = locate_painting(working_copy(shot))
        assert located is None or located.area_fraction >= 0.2, (index, located)


# Wall photos of the evaluation whose frame's outline took in the label beside it (its edges touching the
# frame's): a five-cornered outline, no painting found before 2026-12-07 (docs/evaluation.md, seeds
# 8001-8003).
_LABEL_BESIDE_THE_FRAME = (
    (8001, "degas-the-dance-class"),
    (8003, "van-gogh-the-harvest"),
    (8003, "van-gogh-the-langlois-bridge-at-arles-with-a-lady-with-an-umbrella"),
    (8003, "bellini-pesaro-altarpiece-la-pala-di-pesaro"),
)


@pytest.mark.parametrize(("seed", "painting_id"), _LABEL_BESIDE_THE_FRAME)
def test_a_frame_whose_outline_takes_in_the_label_beside_it_is_found(gcompris_catalogue, seed, painting_id):
    painting = Image.open(gcompris_catalogue / f"{painting_id}.jpg")
    (photo,) = visitor_photos(painting, seed=seed, key=painting_id, kinds=["gallery_wall"])
    located = locate_painting(_encoder_working_copy(photo.image))
    assert located is not None
    # The painting in its frame fills 40-55 % of the photo's width: the label (a few per cent, beside it)
    # is outside what was found.
    width = located.corners[:, 0].max() - located.corners[:, 0].min()
    assert 0.3 <= width <= 0.55, located.corners


def test_four_corners_of_an_outline_with_an_appendage_are_the_quadrilateral():
    square = np.array([[10, 10], [90, 10], [90, 90], [10, 90]], dtype=np.float32)
    # The square with a small bump on its left side (a label touching the frame).
    pentagon = np.array([*square, [2, 70]], dtype=np.float32)
    found = _without_appendage(pentagon)
    assert any(np.allclose(quad, square) for quad in found)
    # A quadrilateral that cuts away much of the outline is no candidate: what it leaves out is no appendage.
    assert all(abs(cv2.contourArea(quad)) >= 0.8 * cv2.contourArea(pentagon) for quad in found)
    assert len(found) < 5


def test_a_plain_wall_has_no_painting():
    rng = np.random.default_rng(0)
    wall = np.clip(200 + rng.normal(0, 3, (480, 640, 3)), 0, 255).astype(np.uint8)
    assert locate_painting(wall) is None


def test_grey_prints_are_grey_whatever_their_tint_and_noise(paintings):
    for seed, painting in enumerate(paintings):
        greyscale, spread = is_greyscale(np.asarray(grey_print(painting, seed)))
        assert greyscale, (seed, spread)


def test_colour_paintings_are_not_grey_even_the_least_colourful(paintings):
    spreads = []
    for painting in paintings:
        greyscale, spread = is_greyscale(working_copy(painting))
        spreads.append(spread)
        assert not greyscale, spread
    # The least colourful paintings of the catalogue still spread well above the threshold.
    assert min(spreads) > 1.5 * GREY_MAX_CHROMA_SPREAD


def test_analysis_crops_a_wall_photo_and_not_a_clean_painting(paintings):
    photo, _ = gallery_wall(paintings[0], 0)
    on_wall = analyse_photo(working_copy(photo), 224)
    assert on_wall.located is not None and on_wall.crop is not None
    assert on_wall.crop.shape == (224, 224, 3) and on_wall.crop.dtype == np.uint8
    assert not on_wall.greyscale
    clean = analyse_photo(working_copy(paintings[0]), 224)
    assert clean.crop is None


def test_one_interrupted_side_leans_on_the_next_weakest_only_on_a_large_outline():
    # A caption under a printed picture hides part of one side: the outline is as good as its two weakest.
    assert _outline_support([1.0, 1.0, 0.48, 1.0], area_fraction=0.6) == pytest.approx(0.74)
    assert _outline_support([0.6, 0.7, 0.9, 1.0], area_fraction=0.6) == pytest.approx(0.65)
    # A side mostly missing is missing; a small patch with three straight sides is no painting.
    assert _outline_support([0.3, 1.0, 1.0, 1.0], area_fraction=0.6) == pytest.approx(0.3)
    assert _outline_support([1.0, 1.0, 0.48, 1.0], area_fraction=0.1) == pytest.approx(0.48)


def _encoder_working_copy(photo: Image.Image) -> np.ndarray:
    """The working copy the encoder service locates in: a JPEG upload decoded as the service does."""
    upload = io.BytesIO()
    photo.save(upload, "JPEG", quality=92)
    opened = open_image(upload.getvalue(), size=224, max_pixels=50_000_000, work_side=ANALYSIS_WORK_SIDE)
    return opened.decode_with_working_copy()[1]


# Seeds of neither the evaluation's development nor its report photos (artsearch_tools.evaluation).
_TEST_SEEDS = (7, 8)


@pytest.mark.slow  # ~0.4 s to print each of 72 pages
def test_a_picture_printed_on_a_book_page_is_found_despite_its_caption(gcompris_catalogue: Path):
    files = sorted(gcompris_catalogue.glob("*.jpg"))
    found = []
    for seed in _TEST_SEEDS:
        for index, path in enumerate(files):
            shot = book(Image.open(path).convert("RGB"), np.random.default_rng([seed, index]))
            located = locate_painting(_encoder_working_copy(shot.image))
            found.append(located is not None and located.area_fraction >= 0.1)
    # Measured: 63 of 72 pages (56 when every side had to be on edges over half its length, before).
    assert np.mean(found) >= 0.83, np.mean(found)


def test_a_close_up_of_the_paint_gives_no_small_painting(gcompris_catalogue: Path):
    """Crops of a painting: nothing, or an outline large enough to be a picture in the photo (measured: the
    smallest found 0.24 and 0.06 of the photo on the two seeds, as before the lenient rule)."""
    files = sorted(gcompris_catalogue.glob("*.jpg"))
    for seed in _TEST_SEEDS:
        for index, path in enumerate(files):
            shot = crop(Image.open(path).convert("RGB"), np.random.default_rng([seed, index]))
            located = locate_painting(_encoder_working_copy(shot.image))
            assert located is None or located.area_fraction >= 0.05, (seed, path.name, located)


@pytest.mark.slow  # ~6 s: 72 photos made, each located twice
def test_phone_photos_whose_edges_are_faint_are_found_by_the_sensitive_pass(
    gcompris_catalogue: Path, monkeypatch: pytest.MonkeyPatch
):
    """A washed-out phone photo on a light wall: the painting's pale sky meets the wall with too little
    contrast for the first pass's edges; the second, more sensitive pass finds the outline."""
    files = sorted(gcompris_catalogue.glob("*.jpg"))
    copies = [
        _encoder_working_copy(
            phone(Image.open(path).convert("RGB"), np.random.default_rng([seed, index])).image
        )
        for seed in _TEST_SEEDS
        for index, path in enumerate(files)
    ]

    def located_share() -> float:
        found = [locate_painting(copy) for copy in copies]
        return float(np.mean([f is not None and f.area_fraction < 0.95 for f in found]))

    both_passes = located_share()
    monkeypatch.setattr(painting_locator, "EDGE_PASSES", EDGE_PASSES[:1])
    first_pass_only = located_share()
    # Measured: 66 of 72 photos with both passes, 51 with the first alone.
    assert both_passes >= 0.85, both_passes
    assert both_passes >= first_pass_only + 0.1, (both_passes, first_pass_only)


def test_the_sensitive_pass_takes_only_what_a_painting_on_a_wall_looks_like():
    sensitive = EDGE_PASSES[1]
    corners = np.zeros((4, 2), np.float32)

    def outline(area: float, calm: float) -> _Candidate:
        return _Candidate(corners, area=area * 10_000, support=0.9, calm=calm)

    assert sensitive.accepts(outline(0.6, 0.9), 10_000)
    # The photo's own border (a close-up, a crop) and a patch with a busy surround are not paintings.
    assert not sensitive.accepts(outline(0.93, 1.0), 10_000)
    assert not sensitive.accepts(outline(0.6, 0.3), 10_000)
    assert not sensitive.accepts(outline(0.2, 0.9), 10_000)
    # The first pass takes any confident outline, the photo's border included (the photo is the painting).
    assert EDGE_PASSES[0].accepts(outline(0.93, 1.0), 10_000)


def test_the_border_of_a_photo_of_a_wall_is_calm_and_that_of_a_close_up_busy():
    wall_around_a_painting = np.zeros((288, 384), np.float32)
    wall_around_a_painting[40:-40, 50:-50] = 0.3  # edges only on the painting
    assert _border_busyness(wall_around_a_painting) == pytest.approx(0.0)
    paint_up_to_the_border = np.full((288, 384), 0.3, np.float32)
    assert _border_busyness(paint_up_to_the_border) == pytest.approx(1.0)
    # The sensitive look is only tried on the first kind.
    assert EDGE_PASSES[1].max_border_busyness < 1.0


@pytest.mark.parametrize("shape", [(5, 452), (300, 400), (8, 8)])
def test_a_picture_of_one_flat_colour_is_analysed_without_error(shape):
    # One lightness everywhere makes the grey-scale test's fit of chroma on lightness degenerate (a 65,000 x
    # 760 JPEG's working copy is 5 pixels high and was such a picture): its chroma is then its mean's.
    flat = np.full((*shape, 3), (120, 90, 60), np.uint8)
    greyscale, spread = is_greyscale(flat)
    assert greyscale and spread == pytest.approx(0.0, abs=1e-6)
    analysis = analyse_photo(flat, 224)
    assert analysis.located is None and analysis.crop is None
