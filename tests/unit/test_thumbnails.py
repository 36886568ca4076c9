"""Thumbnails decode little: JPEGs at a reduced scale, every decode within a shared pixel budget (so the
gateway holds one worst-case picture in memory, not one per concurrent thumbnail), pictures turned upright
only once small. services/gateway/media.make_thumbnail on real image files."""

from __future__ import annotations

import io
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from PIL import Image

from services.gateway.media import MediaError, PixelBudget, make_thumbnail


def _size(jpeg: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(jpeg)) as image:
        assert image.format == "JPEG"
        return image.size


@pytest.fixture(scope="module")
def big_png(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("thumbs") / "big.png"
    Image.new("RGB", (2000, 1500), "olive").save(path)  # 3 MP; PNG has no reduced-scale decoding
    return path


def test_concurrent_decodes_stay_within_the_pixel_budget(big_png: Path):
    """Four threads at once (THUMBNAIL_CONCURRENCY's default), a budget of 4 MP: the 3 MP decodes take
    turns, never two at once."""
    budget = PixelBudget(4_000_000)
    with ThreadPoolExecutor(4) as pool:
        thumbnails = list(pool.map(lambda _: make_thumbnail(big_png, 256, 50_000_000, budget), range(8)))
    assert all(_size(t) == (256, 192) for t in thumbnails)
    assert budget.peak == 3_000_000 and budget.in_use == 0


def test_small_decodes_share_the_budget_side_by_side():
    budget = PixelBudget(1000)
    entered = threading.Barrier(3, timeout=5)

    def hold() -> None:
        with budget.hold(300):
            entered.wait()  # all three inside at once, or the barrier breaks

    with ThreadPoolExecutor(3) as pool:
        for done in [pool.submit(hold) for _ in range(3)]:
            done.result()
    assert budget.peak == 900


def test_a_decode_larger_than_the_budget_still_runs_alone():
    budget = PixelBudget(1000)
    with budget.hold(5000):
        assert budget.in_use == 1000
    assert budget.in_use == 0


def test_a_large_jpeg_is_decoded_at_a_reduced_scale(tmp_path: Path):
    path = tmp_path / "large.jpg"
    Image.new("RGB", (4000, 3000), "navy").save(path, quality=80)  # 12 MP
    budget = PixelBudget(50_000_000)
    assert _size(make_thumbnail(path, 256, 50_000_000, budget)) == (256, 192)
    # Decoded at 1/4 (1000 x 750, at least twice the thumbnail), not the 12 MP of the file.
    assert budget.peak == 750_000


def test_a_source_over_the_pixel_limit_is_refused_before_decoding(big_png: Path):
    budget = PixelBudget(50_000_000)
    with pytest.raises(MediaError) as refused:
        make_thumbnail(big_png, 64, 2_999_999, budget)
    assert (refused.value.status, refused.value.code) == (404, "image_unreadable")
    assert "more than 2999999 pixels" in refused.value.message
    assert budget.peak == 0


@pytest.mark.parametrize(("orientation", "expected"), [(1, (128, 43)), (6, (43, 128)), (3, (128, 43))])
def test_the_thumbnail_is_upright_by_the_exif_orientation(tmp_path: Path, orientation: int, expected):
    path = tmp_path / "turned.jpg"
    picture = Image.new("RGB", (300, 100), "white")
    picture.paste((200, 0, 0), (0, 0, 30, 100))  # a red band on the left
    exif = Image.Exif()
    exif[0x0112] = orientation
    picture.save(path, exif=exif)
    thumbnail = make_thumbnail(path, 128, 50_000_000, PixelBudget(50_000_000))
    assert _size(thumbnail) == expected
    with Image.open(io.BytesIO(thumbnail)) as upright:
        red_corner = {1: (2, 20), 6: (20, 2), 3: (125, 20)}[orientation]  # where the band lands
        assert upright.convert("RGB").getpixel(red_corner)[0] > 150
