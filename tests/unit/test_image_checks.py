"""Upload checks: format by content, byte and pixel limits read from the header only."""

from __future__ import annotations

import io
import struct
import zlib

import pytest
from heic_files import heic
from PIL import Image

from artsearch.image_formats import sniff_image_format as sniff_format
from services.gateway.errors import ApiError
from services.gateway.image_checks import ImageLimits, check_image

LIMITS = ImageLimits(max_bytes=200_000, max_pixels=10_000)


def encoded(fmt: str, size: tuple[int, int] = (40, 30), mode: str = "RGB") -> bytes:
    picture = Image.new(mode, size, "red" if mode == "RGB" else 0)
    if fmt == "HEIF":
        return heic(picture)
    buffer = io.BytesIO()
    picture.save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares huge dimensions but carries almost no data: a decompression bomb's header."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF"])
def test_accepted_formats_are_recognised_by_their_bytes(fmt: str):
    data = encoded(fmt)
    assert sniff_format(data) == fmt
    info = check_image(data, LIMITS)
    assert (info.format, info.width, info.height) == (fmt, 40, 30)


def file_type_box(major: bytes, *compatible: bytes) -> bytes:
    """An ISO base media file's leading `ftyp` box: size, type, major brand, minor version, brands."""
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


@pytest.mark.parametrize(
    ("box", "expected"),
    [
        (file_type_box(b"avif", b"mif1", b"avif"), "AVIF"),
        (file_type_box(b"heic", b"mif1", b"heic"), "HEIF"),  # an iPhone's photo
        (file_type_box(b"heix"), "HEIF"),  # 10-bit
        # A generic image file: its coding is among the compatible brands.
        (file_type_box(b"mif1", b"mif1", b"miaf", b"heic"), "HEIF"),
        (file_type_box(b"mif1", b"mif1", b"avif"), "AVIF"),
        (file_type_box(b"mif1", b"mif1", b"miaf"), None),  # JPEG-in-HEIF and the like: not decoded here
        (file_type_box(b"isom", b"mp41"), None),  # an MP4 video
        (file_type_box(b"qt  "), None),
    ],
)
def test_heif_and_avif_are_told_by_their_brands(box: bytes, expected: str | None):
    assert sniff_format(box + b"\x00" * 32) == expected


def test_a_brand_after_the_file_type_box_does_not_count():
    box = file_type_box(b"mif1", b"mif1")
    assert sniff_format(box + b"\x00\x00\x00\x10heic") is None


def test_a_heic_photo_over_the_pixel_limit_is_refused_from_its_header():
    with pytest.raises(ApiError) as caught:
        check_image(encoded("HEIF", (200, 100)), LIMITS)
    assert caught.value.status == 413 and caught.value.code == "too_many_pixels"


@pytest.mark.parametrize(
    "payload",
    [
        b"<html><body>not an image</body></html>",
        b"%PDF-1.7\n...",
        b'{"json": true}',
        b"\x00" * 64,
        b"GIF8",  # too short to be either GIF version
    ],
)
def test_other_content_is_415(payload: bytes):
    with pytest.raises(ApiError) as caught:
        check_image(payload, LIMITS)
    assert caught.value.status == 415 and caught.value.code == "unsupported_media_type"


def test_formats_pillow_opens_but_the_encoder_refuses_are_415():
    # EPS would run Ghostscript; PCX and ICO are images but not accepted uploads.
    for payload in (b"%!PS-Adobe-3.0 EPSF-3.0\n", encoded("PCX"), encoded("ICO", (32, 32))):
        with pytest.raises(ApiError) as caught:
            check_image(payload, LIMITS)
        assert caught.value.status == 415


def test_empty_and_oversize():
    with pytest.raises(ApiError) as empty:
        check_image(b"", LIMITS)
    assert empty.value.status == 400
    with pytest.raises(ApiError) as big:
        check_image(encoded("BMP", (100, 100)), ImageLimits(max_bytes=1000, max_pixels=10**6))
    assert big.value.status == 413 and big.value.code == "too_large"


def test_too_many_pixels_is_refused_from_the_header():
    bomb = png_header_only(101, 100)  # 10,100 > 10,000 pixels, in well under a kilobyte
    assert len(bomb) < 100
    with pytest.raises(ApiError) as caught:
        check_image(bomb, LIMITS)
    assert caught.value.status == 413 and caught.value.code == "too_many_pixels"
    assert "101x100" in caught.value.message
    assert check_image(png_header_only(100, 100), LIMITS).width == 100


def test_pillow_own_bomb_guard_is_mapped_too():
    giant = png_header_only(100_000, 100_000)  # 10^10 pixels: beyond 2x Pillow's global limit
    with pytest.raises(ApiError) as caught:
        check_image(giant, ImageLimits(max_bytes=10**6, max_pixels=10**12))
    assert caught.value.status == 413 and caught.value.code == "too_many_pixels"


def test_a_broken_header_is_400():
    with pytest.raises(ApiError) as caught:
        check_image(b"\x89PNG\r\n\x1a\n" + b"garbage" * 5, LIMITS)
    assert caught.value.status == 400 and caught.value.code == "invalid_image"
