"""The seeded "photographed badly" variants: reproducible, independent of each other, and each doing what
its name says."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from artsearch_tools.evaluation.photo_variants import VARIANT_KINDS, crop, grey_print, jpeg, photo_variants


def painting(width: int = 240, height: int = 180) -> Image.Image:
    """Coloured shapes with sharp edges on a warm ground: enough structure for blur and JPEG to change."""
    rng = np.random.default_rng(42)
    image = Image.new("RGB", (width, height), (200, 170, 120))
    draw = ImageDraw.Draw(image)
    for _ in range(25):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        r = int(rng.integers(5, 30))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return image


PAINTING = painting()


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.float64)


def sharpness(image: Image.Image) -> float:
    """Mean squared gradient: blurring an edge spreads it and lowers this (the total variation would not)."""
    grey = pixels(image).mean(axis=2)
    return float((np.diff(grey, axis=0) ** 2).mean() + (np.diff(grey, axis=1) ** 2).mean())


def variants(seed: int = 0, key: str = "painting", kinds=tuple(VARIANT_KINDS)) -> dict[str, Image.Image]:
    return {v.kind: v.image for v in photo_variants(PAINTING, seed=seed, key=key, kinds=kinds)}


def test_one_rgb_variant_of_each_kind_all_different_from_the_painting():
    made = variants()
    assert list(made) == list(VARIANT_KINDS)
    for kind, image in made.items():
        assert image.mode == "RGB", kind
        same_size = image.size == PAINTING.size
        assert not (same_size and np.array_equal(pixels(image), pixels(PAINTING))), kind


def test_same_seed_and_key_give_identical_variants_and_others_do_not():
    first, again = variants(seed=3), variants(seed=3)
    other_seed, other_key = variants(seed=4), variants(seed=3, key="another painting")
    for kind in VARIANT_KINDS:
        np.testing.assert_array_equal(pixels(first[kind]), pixels(again[kind]))
    assert any(not np.array_equal(pixels(first[k]), pixels(other_seed[k])) for k in ("crop", "light"))
    assert any(not np.array_equal(pixels(first[k]), pixels(other_key[k])) for k in ("crop", "light"))


def test_a_kind_does_not_depend_on_which_other_kinds_are_made():
    alone = variants(kinds=("phone_photo",))["phone_photo"]
    np.testing.assert_array_equal(pixels(alone), pixels(variants()["phone_photo"]))


def test_unknown_kinds_are_refused():
    with pytest.raises(ValueError, match="unknown variant kinds"):
        list(photo_variants(PAINTING, seed=0, key="x", kinds=("sepia",)))


def test_crop_is_a_window_of_40_to_70_percent_of_the_painting():
    # Each pixel encodes its own coordinates, so a crop's first pixel says where the window lies.
    xs, ys = np.meshgrid(np.arange(240), np.arange(180))
    coordinates = Image.fromarray(np.stack([xs, ys, np.zeros_like(xs)], axis=2).astype(np.uint8), "RGB")
    rng = np.random.default_rng(0)
    for _ in range(10):
        cut = crop(coordinates, rng)
        area = cut.size[0] * cut.size[1] / (240 * 180)
        assert 0.6**2 - 0.01 <= area <= 0.85**2 + 0.01
        left, top, _ = np.asarray(cut)[0, 0]
        window = np.asarray(coordinates)[top : top + cut.size[1], left : left + cut.size[0]]
        np.testing.assert_array_equal(np.asarray(cut), window)


def test_perspective_puts_the_canvas_on_a_wall():
    image = variants()["perspective"]
    assert image.size[0] > PAINTING.size[0] and image.size[1] > PAINTING.size[1]
    corner = pixels(image)[:3, :3].reshape(-1, 3)
    assert np.all(corner == corner[0])  # the wall: one flat colour
    assert np.all(corner[0] >= 128) and np.all(corner[0] < 248)
    assert np.ptp(corner[0]) <= 24  # nearly neutral


def test_light_changes_brightness_or_colour_balance():
    original, lit = pixels(PAINTING), pixels(variants()["light"])
    assert np.abs(original.mean(axis=(0, 1)) - lit.mean(axis=(0, 1))).max() > 3


def test_blur_and_jpeg_lose_detail():
    made = variants()
    assert sharpness(made["blur"]) < 0.6 * sharpness(PAINTING)
    assert made["jpeg"].size[0] < PAINTING.size[0]  # downscaled, as messaging apps do


def test_jpeg_at_quality_30_is_lossy():
    resaved = jpeg(PAINTING, np.random.default_rng(0), quality=30)
    original = pixels(PAINTING.resize(resaved.size, Image.Resampling.BILINEAR))
    assert np.abs(pixels(resaved) - original).mean() > 1.0


def test_grey_print_is_grey_with_lifted_blacks_and_dimmed_whites():
    printed = pixels(grey_print(PAINTING, np.random.default_rng(0)))
    assert np.array_equal(printed[..., 0], printed[..., 1]) and np.array_equal(
        printed[..., 1], printed[..., 2]
    )
    assert np.percentile(printed, 1) >= 10
    assert np.percentile(printed, 99) <= 250


def test_combined_variants_degrade_more_than_one_problem_alone():
    made = variants()
    assert made["bad_photo"].size[0] < 0.85 * PAINTING.size[0]  # cropped, then shrunk by JPEG
    assert made["phone_photo"].size != PAINTING.size
