"""decode_image's memory bound: pictures are converted and reduced block by block, giving exactly the pixels
of the whole-picture pipeline, and a worst-case upload costs its decoded pixels, not several copies of them.
The estimates `open_image` makes, and the refusal of pictures that would need more than a budget."""

from __future__ import annotations

import functools
import io
import json
import subprocess
import sys
import textwrap
import zlib
from pathlib import Path

import numpy as np
import pytest
from heic_files import deep_heic, heic
from PIL import Image, ImageOps

from services.encoder import images
from services.encoder.images import ImageRejected, decode_budget_bytes, decode_image, open_image, to_rgb

LIMIT = 50_000_000
SIZE = 224
REPO_ROOT = Path(__file__).resolve().parents[2]


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def reference(data: bytes, size: int = SIZE) -> np.ndarray:
    """The whole-picture pipeline decode_image replaced: orientation, full-size RGB, Pillow's resize with
    its own reduction (artsearch_tools.evaluation.datasets.pixels_from_image)."""
    image = Image.open(io.BytesIO(data))
    if image.format == "JPEG":
        image.draft("RGB", (size, size))
    image = ImageOps.exif_transpose(image)
    resized = to_rgb(image).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8)


def painting(width: int, height: int, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with some noise: every block and every reduced pixel differs."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([(x * 255 // width), (y * 255 // height), ((x + y) * 97 // (width + height))], axis=-1)
    rgb = rgb + rng.integers(-20, 20, size=rgb.shape)
    return np.clip(rgb, 0, 255).astype(np.uint8)


def with_alpha(width: int, height: int) -> Image.Image:
    rgba = np.dstack([painting(width, height), np.zeros((height, width), dtype=np.uint8)])
    rgba[: height // 2, : width // 3, 3] = 255
    rgba[height // 2 :, width // 3 :, 3] = np.arange(width - width // 3, dtype=np.uint32) * 255 // width
    return Image.fromarray(rgba, "RGBA")


@functools.cache
def pictures(width: int, height: int) -> dict[str, bytes]:
    """One picture per kind of conversion, sides not multiples of the reduction factor."""
    rgb = Image.fromarray(painting(width, height))
    ramp = (np.mgrid[0:height, 0:width][1] * 60000 // width).astype(np.uint16)
    floats = np.mgrid[0:height, 0:width][0].astype(np.float32) * (300.0 / height)
    palette = rgb.quantize(64)
    return {
        "rgb-png": encode(rgb, "PNG"),
        "rgba-png": encode(with_alpha(width, height), "PNG"),
        "la-png": encode(with_alpha(width, height).convert("LA"), "PNG"),
        "l-png": encode(rgb.convert("L"), "PNG"),
        "bilevel-png": encode(rgb.convert("1"), "PNG"),
        "palette-transparent-png": encode(palette, "PNG", transparency=3),
        "palette-gif": encode(palette, "GIF", transparency=5),
        "rgb-colour-key-png": encode(rgb, "PNG", transparency=(0, 0, 0)),
        "grey16-png": encode(Image.fromarray(ramp), "PNG"),
        "float-tiff": encode(Image.fromarray(floats), "TIFF"),
        "cmyk-tiff": encode(rgb.convert("CMYK"), "TIFF"),
        "rgba-webp": encode(with_alpha(width, height), "WEBP", lossless=True),
        "rgb-jpeg": encode(rgb, "JPEG", quality=90),
        "rgb-heif": heic(rgb, quality=90),
        "rgba-heif": heic(with_alpha(width, height), quality=90),
    }


class TestSamePixelsAsTheWholePicturePipeline:
    @pytest.mark.parametrize("shape", [(1999, 1003), (640, 480), (97, 4001)])
    def test_every_conversion_gives_the_very_same_pixels(self, shape):
        for kind, data in pictures(*shape).items():
            assert np.array_equal(decode_image(data, size=SIZE, max_pixels=LIMIT), reference(data)), kind

    def test_blocks_of_a_few_rows_and_columns_change_nothing(self, monkeypatch):
        data = pictures(1999, 1003)
        expected = {kind: reference(picture) for kind, picture in data.items()}
        monkeypatch.setattr(images, "_BLOCK_PIXELS", 5000)  # blocks of 2 rows of 2500 columns...
        for kind, picture in data.items():
            assert np.array_equal(decode_image(picture, size=SIZE, max_pixels=LIMIT), expected[kind]), kind

    @pytest.mark.parametrize("orientation", range(1, 9))
    @pytest.mark.parametrize("shape", [(1344, 900), (1351, 1003)])
    def test_exif_orientation_is_applied_as_exif_transpose_does(self, orientation, shape):
        # Reduced by 3x2 blocks: in 1351x1003 the last column and row of blocks are partial, and where the
        # upright picture has them is where they must be (the reduction runs before the transposition).
        exif = Image.Exif()
        exif[0x0112] = orientation
        data = encode(with_alpha(*shape), "PNG", exif=exif.tobytes())
        assert np.array_equal(decode_image(data, size=SIZE, max_pixels=LIMIT), reference(data))

    def test_a_rotated_picture_in_small_blocks_too(self, monkeypatch):
        exif = Image.Exif()
        exif[0x0112] = 7
        data = encode(with_alpha(1999, 1003), "PNG", exif=exif.tobytes())
        expected = reference(data)
        monkeypatch.setattr(images, "_BLOCK_PIXELS", 3000)
        assert np.array_equal(decode_image(data, size=SIZE, max_pixels=LIMIT), expected)


def test_a_heic_photo_the_camera_stored_turned_decodes_upright():
    """A phone stores the sensor's pixels and says how to turn them (HEIF's rotation property and the EXIF
    orientation): the picture is turned once, upright."""
    upright = Image.fromarray(painting(480, 640))
    sensor = upright.transpose(Image.Transpose.ROTATE_90)  # what orientation 6 turns 90 degrees clockwise
    decoded = decode_image(heic(sensor, orientation=6, quality=95), size=SIZE, max_pixels=LIMIT)
    expected = decode_image(encode(upright, "PNG"), size=SIZE, max_pixels=LIMIT)
    sideways = decode_image(encode(sensor, "PNG"), size=SIZE, max_pixels=LIMIT)
    assert np.abs(decoded.astype(np.int16) - expected).mean() < 4  # HEVC at quality 95
    assert np.abs(decoded.astype(np.int16) - sideways).mean() > 20


class TestEstimatesAndBudget:
    def test_the_estimate_counts_the_decoded_pixels_in_pillows_storage(self):
        mib = 2**20
        rgba = open_image(encode(Image.new("RGBA", (2000, 1000)), "PNG"), size=SIZE, max_pixels=LIMIT)
        grey16 = open_image(
            encode(Image.fromarray(np.zeros((1000, 2000), np.uint16)), "PNG"), size=SIZE, max_pixels=LIMIT
        )
        palette = open_image(encode(Image.new("P", (2000, 1000)), "GIF"), size=SIZE, max_pixels=LIMIT)
        assert 8 * mib < rgba.decode_bytes <= 8 * mib + 13 * mib
        assert 4 * mib < grey16.decode_bytes <= 4 * mib + 13 * mib
        assert 2 * mib < palette.decode_bytes <= 2 * mib + 13 * mib

    def test_webp_and_progressive_jpeg_cost_what_their_decoders_hold(self):
        webp = open_image(encode(Image.new("RGB", (2000, 1000)), "WEBP"), size=SIZE, max_pixels=LIMIT)
        assert webp.decode_bytes >= 2000 * 1000 * 16
        photo = Image.fromarray(painting(2000, 1000))
        baseline = open_image(encode(photo, "JPEG"), size=SIZE, max_pixels=LIMIT)
        progressive = open_image(
            encode(photo, "JPEG", progressive=True, subsampling=0), size=SIZE, max_pixels=LIMIT
        )
        # 4:4:4: three full-size components of 2-byte coefficients, though libjpeg outputs 1/4 of each side.
        assert progressive.decode_bytes - baseline.decode_bytes == 3 * 2 * 2000 * 1000
        assert baseline.image.size == (500, 250)

    def test_heif_costs_what_libheif_holds(self):
        mib = 2**20
        phone = open_image(heic(Image.new("RGB", (2000, 1000))), size=SIZE, max_pixels=LIMIT)
        deep = open_image(deep_heic(Image.new("RGBA", (2000, 1000)), chroma=444), size=SIZE, max_pixels=LIMIT)
        # Pillow's 4 bytes a pixel and libheif's: 4 at 8 bits 4:2:0; x2 at 10 bits, x2 with alpha, x1.5 4:4:4.
        assert 8 * 2 * mib < phone.decode_bytes <= 8 * 2 * mib + 13 * mib
        assert deep.decode_bytes >= 28 * 2000 * 1000

    def test_a_24_megapixel_phone_heic_fits_the_default_budget(self):
        data = heic(Image.new("RGB", (5712, 4284), (9, 99, 199)), quality=50)
        opened = open_image(data, size=SIZE, max_pixels=LIMIT, max_decode_bytes=decode_budget_bytes(LIMIT))
        assert opened.image.format == "HEIF" and opened.decode_bytes <= decode_budget_bytes(LIMIT)

    def test_the_default_budget_takes_a_four_byte_picture_at_the_pixel_limit(self):
        data = png_of_zeros(7000, 7000, colour_type=6, bit_depth=8)  # 49 Mpx RGBA
        opened = open_image(data, size=SIZE, max_pixels=LIMIT, max_decode_bytes=decode_budget_bytes(LIMIT))
        assert opened.decode_bytes <= decode_budget_bytes(LIMIT)

    def test_a_picture_that_needs_more_than_the_budget_is_refused_saying_what_would_pass(self):
        data = encode(Image.new("RGB", (3000, 3000)), "WEBP")
        with pytest.raises(ImageRejected) as refused:
            open_image(data, size=SIZE, max_pixels=LIMIT, max_decode_bytes=100_000_000)
        reason = refused.value.reason
        assert "3000x3000 WEBP" in reason and "needs about 157 MB" in reason and "100 MB" in reason
        assert "send at most 5,7" in reason  # 100 MB at 16 bytes a pixel and a block's conversion: ~5.7 Mpx
        # Without a budget (the CLI, the evaluation) it is decoded.
        assert decode_image(data, size=SIZE, max_pixels=LIMIT).shape == (SIZE, SIZE, 3)


def png_of_zeros(width: int, height: int, *, colour_type: int, bit_depth: int) -> bytes:
    """A valid PNG of all-zero samples (transparent black for RGBA), compressed as it is written: a 7000x7000
    picture is ~200 KB and takes a fraction of a second to make."""
    import struct

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    channels = {0: 1, 2: 3, 4: 2, 6: 4}[colour_type]
    row = b"\x00" * (1 + width * channels * bit_depth // 8)
    compressor = zlib.compressobj(6)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


# VmHWM, the peak resident memory of this process image (ru_maxrss would also count a big parent's: Linux
# carries it over fork and exec).
_PEAK_SCRIPT = textwrap.dedent(
    """
    import json, sys
    from services.encoder.images import decode_image, open_image

    def peak():
        with open("/proc/self/status") as status:
            return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))

    data = open(sys.argv[1], "rb").read()
    before = peak()
    estimate = open_image(data, size=224, max_pixels=50_000_000).decode_bytes
    pixels = decode_image(data, size=224, max_pixels=50_000_000)
    print(json.dumps({"added": peak() - before, "estimate": estimate, "shape": list(pixels.shape)}))
    """
)


def rle8_bmp(side: int) -> bytes:
    """An 8-bit run-length BMP (decoded by Pillow's Python decoder): runs of 255 pixels."""
    import struct

    row = b"".join(bytes((min(255, side - start), 1)) for start in range(0, side, 255)) + b"\x00\x00"
    pixels = row * side + b"\x00\x01"
    palette = bytes([255, 255, 255, 0, 30, 30, 200, 0]) + bytes(4 * 254)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


WORST = {
    # name: (the picture, MiB its decoding may add, MiB the whole-picture pipeline added). An RGB WebP was
    # never converted: it is here for the estimate, which must cover the copies libwebp and Pillow hold.
    "png-rgba-7000": (lambda: png_of_zeros(7000, 7000, colour_type=6, bit_depth=8), 260, 936),
    "png-grey16-7000": (lambda: png_of_zeros(7000, 7000, colour_type=0, bit_depth=16), 160, 1217),
    "png-rgba16-7000": (lambda: png_of_zeros(7000, 7000, colour_type=6, bit_depth=16), 260, 936),
    "bmp-rle8-7000": (lambda: rle8_bmp(7000), 200, 239),
    "webp-rgb-3500": (lambda: encode(Image.new("RGB", (3500, 3500), (9, 99, 199)), "WEBP"), 260, 192),
    # A 12-megapixel phone photo, and libheif's costliest kind: 10 bits, chroma at full resolution, alpha.
    # (No whole-picture pipeline ever decoded HEIF.)
    "heif-rgb-4032x3024": (lambda: heic(Image.new("RGB", (4032, 3024), (9, 99, 199))), 120, None),
    "heif-rgba10-444-2000": (
        lambda: deep_heic(Image.new("RGBA", (2000, 2000), (9, 99, 199, 128)), chroma=444),
        100,
        None,
    ),
}


@pytest.mark.parametrize("name", list(WORST))
def test_peak_memory_of_a_worst_picture_is_its_decoded_pixels_not_copies_of_them(tmp_path, name):
    """Measured in a fresh interpreter. The whole-picture pipeline made full-size copies: RGBA, a white
    background, the composite and RGB; float64 arrays of a 16-bit picture; the RGB conversion of a palette."""
    make, budget_mb, before_mb = WORST[name]
    path = tmp_path / "worst"
    path.write_bytes(make())
    result = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    measured = json.loads(result.stdout)
    added_mb = measured["added"] / 2**20
    before = "" if before_mb is None else f" (the whole-picture pipeline: +{before_mb} MiB)"
    print(f"{name}: +{added_mb:.0f} MiB{before}")
    assert measured["shape"] == [224, 224, 3]
    assert added_mb < budget_mb
    assert measured["added"] <= measured["estimate"] * 1.1  # the estimate the service budgets with holds
