"""The region grid (artsearch_tools.regions) and the region crops ingest sends to the encoder
(artsearch_tools.ingest_regions), on a real demo painting; which exact look-ups a region search needs
(services.search.region_scores)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from heic_files import heic
from PIL import Image

from artsearch_tools.ingest_regions import INPUT_SIZE, RegionCropFailed, region_crops
from artsearch_tools.regions import DEFAULT_REGION_GRID, RegionGrid, RegionScale, parse_region_grid
from services.search.region_scores import (
    REGION_DEPTH_FACTOR,
    REGION_LIST_MAX,
    best_region_scores,
    needed_lookups,
    region_list_limit,
)


def test_a_scale_spreads_its_windows_evenly_from_edge_to_edge() -> None:
    windows = RegionScale(3, 0.5).windows()
    assert len(windows) == 9
    assert windows[0] == pytest.approx((0.0, 0.0, 0.5, 0.5))
    assert windows[1] == pytest.approx((0.25, 0.0, 0.75, 0.5))  # overlapping by half
    assert windows[-1] == pytest.approx((0.5, 0.5, 1.0, 1.0))
    assert RegionScale(1, 0.6).windows() == [pytest.approx((0.2, 0.2, 0.8, 0.8))]  # centred


def test_every_point_of_the_picture_is_in_a_window_of_every_scale() -> None:
    for scale in DEFAULT_REGION_GRID.scales:
        windows = np.array(scale.windows())
        points = np.random.default_rng(0).uniform(0, 1, size=(500, 2))
        inside = (
            (points[:, None, 0] >= windows[None, :, 0])
            & (points[:, None, 0] <= windows[None, :, 2])
            & (points[:, None, 1] >= windows[None, :, 1])
            & (points[:, None, 1] <= windows[None, :, 3])
        )
        assert inside.any(axis=1).all()


def test_the_grid_lists_its_scales_windows_in_order() -> None:
    grid = RegionGrid((RegionScale(2, 0.5), RegionScale(3, 0.4)))
    assert grid.count == 13 == len(grid.windows())
    assert grid.windows()[:4] == RegionScale(2, 0.5).windows()
    assert grid.smallest_side == 0.4
    assert str(grid) == "2x2@0.5,3x3@0.4"
    assert parse_region_grid(str(grid)) == grid


def test_pixel_boxes_stay_inside_the_picture_and_are_never_empty() -> None:
    grid = RegionGrid((RegionScale(4, 0.3),))
    for width, height in ((1000, 700), (3, 2), (1, 1)):
        for x0, y0, x1, y1 in grid.pixel_boxes(width, height):
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("3x4@0.5", "NxN@S"),
        ("3x3", "NxN@S"),
        ("3x3@1.5", "NxN@S"),
        ("3x3@0.2", "gaps"),
        ("9x9@0.5", "1 to 8"),
    ],
)
def test_malformed_grids_are_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_region_grid(spec)


@pytest.mark.parametrize("spec", ["off", "OFF", "", " none "])
def test_off_means_no_regions(spec: str) -> None:
    assert parse_region_grid(spec) is None


def painting_bytes(gcompris_catalogue: Path) -> bytes:
    return (gcompris_catalogue / "hokusai-the-great-wave-off-kanagawa.jpg").read_bytes()


def test_region_crops_are_the_windows_of_the_painting_at_the_input_size(gcompris_catalogue: Path) -> None:
    data = painting_bytes(gcompris_catalogue)
    grid = RegionGrid((RegionScale(2, 0.5),))
    crops = region_crops(data, grid)
    assert len(crops) == 4
    with Image.open(io.BytesIO(data)) as opened:
        painting = opened.convert("RGB")
    width, height = painting.size
    for crop_bytes, box in zip(crops, grid.pixel_boxes(width, height), strict=True):
        with Image.open(io.BytesIO(crop_bytes)) as crop:
            assert crop.format == "PNG" and crop.size == (INPUT_SIZE, INPUT_SIZE) and crop.mode == "RGB"
            expected = painting.crop(box).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BICUBIC)
            # The same part of the painting (a JPEG may be decoded at a reduced scale first).
            difference = np.abs(np.asarray(crop, dtype=np.int16) - np.asarray(expected, dtype=np.int16))
            assert difference.mean() < 6


def test_a_phones_heic_stored_turned_is_cut_as_its_upright_picture(gcompris_catalogue: Path) -> None:
    with Image.open(io.BytesIO(painting_bytes(gcompris_catalogue))) as opened:
        upright = opened.convert("RGB")
    png = io.BytesIO()
    upright.save(png, "PNG")
    stored_turned = heic(upright.transpose(Image.Transpose.ROTATE_90), orientation=6, quality=95)
    grid = RegionGrid((RegionScale(2, 0.5),))
    for from_heic, from_png in zip(
        region_crops(stored_turned, grid), region_crops(png.getvalue(), grid), strict=True
    ):
        with Image.open(io.BytesIO(from_heic)) as crop, Image.open(io.BytesIO(from_png)) as expected:
            difference = np.abs(np.asarray(crop, dtype=np.int16) - np.asarray(expected, dtype=np.int16))
            assert difference.mean() < 4  # HEVC at quality 95


def test_a_picture_that_cannot_be_decoded_fails_with_a_reason() -> None:
    with pytest.raises(RegionCropFailed, match="regions"):
        region_crops(b"not an image at all", DEFAULT_REGION_GRID)


def test_transparency_is_white_and_orientation_upright() -> None:
    picture = Image.new("RGBA", (40, 20), (255, 0, 0, 0))
    picture.paste((0, 0, 255, 255), (0, 0, 20, 20))  # left half opaque blue, right half transparent
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to view"
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", exif=exif)
    crops = region_crops(buffer.getvalue(), RegionGrid((RegionScale(2, 0.5),)))
    with Image.open(io.BytesIO(crops[0])) as top_left, Image.open(io.BytesIO(crops[3])) as bottom_right:
        # Upright, the picture is 20 wide and 40 high: blue on top, transparent (white) below.
        assert np.asarray(top_left).reshape(-1, 3).mean(axis=0) == pytest.approx([0, 0, 255], abs=2)
        assert np.asarray(bottom_right).reshape(-1, 3).mean(axis=0) == pytest.approx([255, 255, 255], abs=2)


def test_sixteen_bit_greys_are_scaled_not_clipped() -> None:
    grey = Image.new("I;16", (32, 32), 32896)  # mid-grey in 16 bits (128 * 257)
    buffer = io.BytesIO()
    grey.save(buffer, "PNG")
    (crop,) = region_crops(buffer.getvalue(), RegionGrid((RegionScale(1, 1.0),)))
    with Image.open(io.BytesIO(crop)) as opened:
        assert np.asarray(opened).mean() == pytest.approx(128, abs=1)


# --- services.search.region_scores: which exact look-ups a region search needs --------------------------


def test_only_region_matches_that_can_make_the_page_are_looked_up() -> None:
    whole = {"a": 0.9, "b": 0.8}
    regions = {"c": 0.95, "d": 0.7, "a": 0.5}  # c and d found by their regions only
    # Depth 2: the bar is the 2nd best lower bound (c 0.89, a 0.9, b 0.8 -> 0.89); d (0.64) cannot make it.
    assert needed_lookups(whole, regions, depth=2, margin=0.06) == ["c"]
    # Fewer candidates than the depth: every one is looked up.
    assert needed_lookups(whole, regions, depth=5, margin=0.06) == ["c", "d"]


def test_the_region_list_grows_with_the_page_up_to_its_cap() -> None:
    assert region_list_limit(5) == 5 * REGION_DEPTH_FACTOR
    assert region_list_limit(100) == REGION_LIST_MAX < 100 * REGION_DEPTH_FACTOR


def test_an_artwork_scores_its_best_region() -> None:
    assert best_region_scores([("a", 0.3), ("b", 0.5), ("a", 0.7), ("a", 0.1)]) == {"a": 0.7, "b": 0.5}
