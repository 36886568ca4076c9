"""decode_image: every colour mode and format an upload may use, orientation, and each rejection."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from services.encoder.images import ImageRejected, decode_image

SIZE = 32
LIMIT = 50_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, *, size: int = SIZE, max_pixels: int = LIMIT) -> np.ndarray:
    return decode_image(data, size=size, max_pixels=max_pixels)


def quadrants(width: int = 64, height: int = 48) -> Image.Image:
    """Red top-left, green top-right, blue bottom-left, white bottom-right: orientation is visible."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2, : width // 2] = (255, 0, 0)
    pixels[: height // 2, width // 2 :] = (0, 255, 0)
    pixels[height // 2 :, : width // 2] = (0, 0, 255)
    pixels[height // 2 :, width // 2 :] = (255, 255, 255)
    return Image.fromarray(pixels)


def corner_colours(pixels: np.ndarray) -> tuple[tuple[int, ...], ...]:
    """The colour near each corner (top-left, top-right, bottom-left, bottom-right), rounded to 0/255."""
    h, w, _ = pixels.shape
    points = [
        (h // 8, w // 8),
        (h // 8, w - 1 - w // 8),
        (h - 1 - h // 8, w // 8),
        (h - 1 - h // 8, w - 1 - w // 8),
    ]
    return tuple(tuple(int(round(c / 255) * 255) for c in pixels[y, x]) for y, x in points)


RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def half_transparent_red(mode: str) -> Image.Image:
    """Left half opaque red, right half fully transparent (its colour must not leak through)."""
    rgba = np.zeros((40, 40, 4), dtype=np.uint8)
    rgba[:, :, 0] = 255
    rgba[:, :20, 3] = 255
    image = Image.fromarray(rgba, "RGBA")
    return image if mode == "RGBA" else image.convert(mode)


class TestFormats:
    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF"])
    def test_decodes_each_format_to_rgb_at_the_requested_size(self, fmt):
        pixels = decode(encode(quadrants(), fmt))
        assert pixels.shape == (SIZE, SIZE, 3)
        assert pixels.dtype == np.uint8
        assert corner_colours(pixels) == (RED, GREEN, BLUE, WHITE)

    def test_keeps_the_whole_image_without_cropping(self):
        # A wide image: a crop to the centre would lose the red and blue left quarter entirely.
        pixels = np.full((50, 200, 3), 255, dtype=np.uint8)
        pixels[:, :40] = RED
        decoded = decode(encode(Image.fromarray(pixels), "PNG"), size=50)
        assert tuple(decoded[25, 2]) == RED
        assert tuple(decoded[25, 47]) == WHITE

    def test_large_jpeg_is_decoded_at_reduced_size_and_still_correct(self):
        big = quadrants(4000, 3000)
        pixels = decode(encode(big, "JPEG", quality=85), size=224)
        assert pixels.shape == (224, 224, 3)
        assert corner_colours(pixels) == (RED, GREEN, BLUE, WHITE)

    def test_animated_gif_gives_its_first_frame(self):
        frames = [Image.new("RGB", (32, 32), colour) for colour in (RED, BLUE)]
        data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
        assert Image.open(io.BytesIO(data)).n_frames == 2
        assert corner_colours(decode(data)) == (RED,) * 4


class TestModes:
    @pytest.mark.parametrize("mode", ["RGB", "L", "1", "P", "CMYK", "YCbCr"])
    def test_opaque_modes_become_rgb(self, mode):
        image = quadrants().convert(mode)
        fmt = "TIFF" if mode in ("CMYK", "YCbCr") else "PNG"
        pixels = decode(encode(image, fmt))
        expected = np.asarray(image.convert("RGB").resize((SIZE, SIZE), Image.Resampling.BICUBIC))
        assert pixels.shape == (SIZE, SIZE, 3)
        assert np.abs(pixels.astype(int) - expected.astype(int)).max() <= 2

    def test_cmyk_jpeg_becomes_rgb(self):
        pixels = decode(encode(quadrants().convert("CMYK"), "JPEG", quality=95))
        assert corner_colours(pixels) == (RED, GREEN, BLUE, WHITE)

    @pytest.mark.parametrize(
        ("mode", "fmt"), [("RGBA", "PNG"), ("RGBA", "WEBP"), ("LA", "PNG"), ("P", "PNG")]
    )
    def test_transparency_is_composited_over_white(self, mode, fmt):
        image = half_transparent_red(mode)
        data = encode(image, fmt, lossless=True) if fmt == "WEBP" else encode(image, fmt)
        reopened = Image.open(io.BytesIO(data))
        assert reopened.mode in ("RGBA", "LA", "P")
        if mode == "P":
            assert "transparency" in reopened.info
        pixels = decode(data)
        left, right = tuple(pixels[SIZE // 2, 2]), tuple(pixels[SIZE // 2, SIZE - 3])
        # LA is greyscale: its opaque red half is the grey Pillow makes of red (76).
        assert left == (RED if mode != "LA" else (76, 76, 76))
        assert right == WHITE

    def test_sixteen_bit_greyscale_is_scaled_not_clipped(self):
        ramp = np.tile(np.linspace(0, 65535, 64, dtype=np.uint16), (16, 1))
        image = Image.fromarray(ramp)
        data = encode(image, "PNG")
        assert Image.open(io.BytesIO(data)).mode.startswith("I")
        pixels = decode(data, size=64)
        row = pixels[8, :, 0].astype(int)
        assert row[0] <= 5
        assert row[-1] >= 250
        assert 100 <= row[32] <= 155  # Pillow's plain convert would give 255 here
        assert np.all(np.diff(row) >= 0)


class TestOrientation:
    @pytest.mark.parametrize("stored_size", [(64, 48), (2000, 1500)])  # the large one is decoded in draft
    def test_exif_orientation_6_is_applied(self, stored_size):
        # Orientation 6: the stored pixels must be rotated 90° clockwise to display. A landscape stored
        # image is a portrait when shown: its stored top-left red moves to the top-right.
        exif = Image.Exif()
        exif[0x0112] = 6
        data = encode(quadrants(*stored_size), "JPEG", quality=95, exif=exif.tobytes())
        assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
        pixels = decode(data, size=224)
        assert corner_colours(pixels) == (BLUE, RED, WHITE, GREEN)

    def test_without_exif_orientation_nothing_rotates(self):
        assert corner_colours(decode(encode(quadrants(), "JPEG", quality=95))) == (RED, GREEN, BLUE, WHITE)


def png_header_only(width: int, height: int) -> bytes:
    """A syntactically valid PNG claiming width x height, with a few bytes of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
        + chunk(b"IEND", b"")
    )


class TestRejections:
    def test_empty_bytes(self):
        with pytest.raises(ImageRejected, match="empty"):
            decode(b"")

    def test_not_an_image(self):
        with pytest.raises(ImageRejected, match="not an image"):
            decode(b"hello")

    def test_format_outside_the_accepted_list(self):
        # Pillow can read PPM, but an artwork upload has no business being one.
        with pytest.raises(ImageRejected, match="not an image"):
            decode(encode(quadrants(), "PPM"))

    @pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF"])
    def test_truncated_image(self, fmt):
        data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 255, (64, 64, 3), np.uint8)), fmt)
        with pytest.raises(ImageRejected, match=f"truncated {fmt}") as rejected:
            decode(data[: len(data) // 2])
        assert rejected.value.reason.startswith("truncated")

    def test_truncated_webp(self):
        data = encode(quadrants(), "WEBP")
        with pytest.raises(ImageRejected, match="WEBP"):
            decode(data[: len(data) // 2])

    def test_corrupt_jpeg_header(self):
        with pytest.raises(ImageRejected, match=r"JPEG|not an image"):
            decode(b"\xff\xd8\xff\xe0" + b"\x00" * 64)

    @pytest.mark.parametrize(("width", "height"), [(1, 1), (7, 100), (100, 3)])
    def test_too_small(self, width, height):
        data = encode(Image.new("RGB", (width, height), RED), "PNG")
        with pytest.raises(ImageRejected, match="at least 8"):
            decode(data)

    def test_eight_pixels_is_enough(self):
        assert decode(encode(Image.new("RGB", (8, 8), RED), "PNG")).shape == (SIZE, SIZE, 3)

    def test_huge_header_is_rejected_by_the_pixel_limit(self):
        # 20000x20000 RGB would need 1.2 GB decoded; the header alone must be enough to refuse it.
        started = time.perf_counter()
        with pytest.raises(ImageRejected, match="400,000,000 pixels, more than the limit of 50,000,000"):
            decode(png_header_only(20000, 20000))
        assert time.perf_counter() - started < 0.5

    def test_pixel_limit_is_checked_before_decoding(self):
        # Below Pillow's own bomb limit, with almost no pixel data: had decoding started first, this would
        # be reported as a truncated PNG, not by the pixel limit.
        with pytest.raises(
            ImageRejected, match="5000x5000 = 25,000,000 pixels, more than the limit of 1,000,000"
        ):
            decode(png_header_only(5000, 5000), max_pixels=1_000_000)
        with pytest.raises(ImageRejected, match="truncated PNG"):
            decode(png_header_only(5000, 5000), max_pixels=25_000_000)

    def test_pixel_limit_is_the_configured_one(self):
        data = encode(Image.new("RGB", (100, 100), RED), "PNG")
        with pytest.raises(ImageRejected, match="100x100 = 10,000 pixels, more than the limit of 9,999"):
            decode(data, max_pixels=9_999)
        assert decode(data, max_pixels=10_000).shape == (SIZE, SIZE, 3)

    def test_reason_is_the_message(self):
        with pytest.raises(ImageRejected) as rejected:
            decode(b"")
        assert str(rejected.value) == rejected.value.reason == "empty image data"
