"""Turns uploaded image bytes into the network's input: uint8 RGB, size x size, the whole picture.

Untrusted input: the pixel count is checked from the header before anything is decoded, only common raster
formats are opened (no Ghostscript-backed EPS and the like), and every failure Pillow raises while it works
on the upload (parsing, decoding, converting an odd mode, resizing) becomes `ImageRejected` with a message a
client can act on. Two failures are not the upload's doing and are left to the caller: MemoryError (the
server is short of memory; a retry may pass) and an exception raised by this module's own code (a bug).

Memory is bounded per picture. The full-size picture is decoded once, in its own mode (1 to 4 bytes a
pixel); everything after that works on blocks of it: each block is converted to RGB (transparency over
white, 16-bit scaled) and box-reduced at once. A 7000x7000 RGBA PNG (200 KB on the wire) then costs its
196 MB of decoded pixels plus a few MB, not the ~0.9 GB that full-size RGBA copies, a white background, the
composite and the RGB conversion added up to. The pixels are the very same as converting the whole picture
and resizing it with `resize(..., reducing_gap=2.0)`, which box-reduces by the same integer factor first
(`artsearch_tools.evaluation.datasets.pixels_from_image` does that). `open_image` estimates the peak from the
header, the full-size buffers some decoders hold (WebP, AVIF, HEIF, a progressive JPEG's coefficients)
included, so that the service can refuse a picture it cannot afford and bound how many it decodes at once
(services/encoder/decode_memory.py).
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import traceback
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pi_heif
import PIL
from PIL import ExifTags, Image, UnidentifiedImageError

from artsearch.exif_orientation import UPRIGHT_TRANSPOSITION
from artsearch.image_formats import ACCEPTED_FORMATS, sniff_image_format

MIN_SIDE_PIXELS = 8
# Pillow's code, and that of the plugin it opens HEIF with (artsearch.image_formats).
_PILLOW_PACKAGES = (Path(PIL.__file__).resolve().parent, Path(pi_heif.__file__).resolve().parent)
_WHITE = (255, 255, 255)
# What Pillow's resize(reducing_gap=2.0) would do: box-reduce by an integer factor down to at most twice
# the output size (at least that), then resample with bicubic.
_REDUCING_GAP = 2.0
# Pixels converted at a time after decoding: a block and its few conversion copies stay within a few MB.
_BLOCK_PIXELS = 1 << 19
# Peak bytes per block pixel while converting: the crop and the RGBA copy, background, composite and RGB
# result (4 bytes each), or the float64 scaling of a 16/32-bit block plus its 8-bit result.
_BLOCK_BYTES_PER_PIXEL = 24
# Bytes a decoded pixel takes in Pillow's memory, by mode: one band of 8 bits, 16-bit greyscale, and four
# bytes for everything else (RGB is stored as RGBX, LA and PA too, I and F are 32-bit).
_NARROW_MODES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
# Full-size buffers a format's decoder holds besides the picture, in bytes per pixel (Pillow 13): libwebp's
# animation decoder keeps its canvas and a copy of it and hands Pillow a third copy; libavif keeps the YUV
# planes (16-bit above 8-bit depth: 8 bytes a pixel at 4:4:4 with alpha) and hands over an RGBA copy.
_DECODER_BYTES_PER_PIXEL = {"WEBP": 12, "AVIF": 12}
# libheif (pi-heif 1.4) keeps the YUV planes and an interleaved RGB(A) copy, 16-bit above 8-bit depth,
# and hands Pillow a third: measured on 12-megapixel pictures, besides Pillow's 4 bytes, 3.96 bytes a pixel
# at 8 bits 4:2:0 (what phones save), up to 16.8 at 10 bits 4:4:4 with alpha; `_decoder_bytes`
# bounds every measured kind, 8-bit 4:2:0 closely (a 24-megapixel phone photo fits the default budget).
_HEIF_BASE_BYTES_PER_PIXEL = 4
# By decoder (tile codec): Pillow's run-length BMP decoder is Python, building the picture in a bytearray
# (grown as it goes) and handing over a bytes copy of it.
_CODEC_BYTES_PER_PIXEL = {"bmp_rle": 3}
# Which corner of the stored picture is the top-left once it is transposed: (right side, bottom side).
_UPRIGHT_TOP_LEFT = {
    Image.Transpose.FLIP_LEFT_RIGHT: (True, False),
    Image.Transpose.ROTATE_90: (True, False),
    Image.Transpose.FLIP_TOP_BOTTOM: (False, True),
    Image.Transpose.ROTATE_270: (False, True),
    Image.Transpose.ROTATE_180: (True, True),
    Image.Transpose.TRANSVERSE: (True, True),
}
_SWAPS_SIDES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)

# decode_image enforces its own (configurable) pixel limit from the header; Pillow's global bomb warning
# would only duplicate it in the logs. Pillow's hard error (above 2x its limit) is mapped below.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)


class ImageRejected(ValueError):
    """The bytes are not an image this service can encode; `reason` says why, for the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_image(data: bytes, *, size: int, max_pixels: int) -> np.ndarray:
    """Decodes `data` to a uint8 array [size, size, 3]: RGB, EXIF orientation applied, transparency over
    white, the whole image resized (aspect ratio not kept: nothing is cropped). Animated images give their
    first frame. Raises ImageRejected."""
    return open_image(data, size=size, max_pixels=max_pixels).decode()


@dataclass
class OpenedImage:
    """An upload whose header has been read and checked, nothing decoded yet (`decode` does that)."""

    image: Image.Image
    data: bytes
    size: int
    # The most memory decoding it takes at once, estimated from the header (bytes).
    decode_bytes: int
    # With a working copy (`decode_with_working_copy`): its longer side, in pixels; 0: none.
    work_side: int = 0

    def decode(self) -> np.ndarray:
        """The uint8 [size, size, 3] input of the network (see `decode_image`). Raises ImageRejected."""
        with _rejecting_pillow_failures(self.image):
            return self._decode()[0]

    def decode_with_working_copy(self) -> tuple[np.ndarray, np.ndarray]:
        """The network's input and an upright uint8 RGB copy of the photo with its aspect ratio kept, its
        longer side `work_side` (at most: a smaller photo is not enlarged) - what the painting locator works
        on. Raises ImageRejected."""
        with _rejecting_pillow_failures(self.image):
            pixels, working = self._decode()
        assert working is not None  # opened with a work_side
        return pixels, working

    def _decode(self) -> tuple[np.ndarray, np.ndarray | None]:
        image = self.image
        _load(image, self.data)
        width, height = image.size
        factor = _reduction_factor(image.size, self.size)
        transpose = _orientation(image)
        # The reduction's blocks start at the corner that is the top-left once upright, as when an upright
        # picture is reduced: a partial last row or column of blocks ends up where it would there.
        right, bottom = _UPRIGHT_TOP_LEFT.get(transpose, (False, False))
        offsets = (width % factor[0] if right else 0, height % factor[1] if bottom else 0)
        try:
            reduced = _reduced_rgb(image, factor, offsets)
        except ValueError as error:  # exotic modes (LAB, HSV from TIFF) Pillow cannot convert
            raise ImageRejected(f"unsupported colour mode {image.mode} ({error})") from None
        if transpose is not None:
            reduced = reduced.transpose(transpose)
            if transpose in _SWAPS_SIDES:
                width, height, factor = height, width, (factor[1], factor[0])
        # The last reduced row and column may stand for fewer source pixels: resample exactly the area the
        # source covers, as Pillow's resize does after its own reduction.
        box = (0.0, 0.0, width / factor[0], height / factor[1])
        resized = reduced.resize((self.size, self.size), Image.Resampling.BICUBIC, box=box)
        working = None
        if self.work_side:
            # From the same reduced picture as the network's input (which stays exactly what an unanalysed
            # decode gives), its aspect ratio restored, never larger than the reduction's resolution.
            scale = min(self.work_side, max(reduced.size)) / max(width, height)
            shape = (max(1, round(width * scale)), max(1, round(height * scale)))
            working = np.asarray(reduced.resize(shape, Image.Resampling.BILINEAR, box=box), dtype=np.uint8)
        image.close()  # the full-size pixels go now, not whenever this object does
        return np.asarray(resized, dtype=np.uint8).copy(), working


def open_image(
    data: bytes, *, size: int, max_pixels: int, max_decode_bytes: int | None = None, work_side: int = 0
) -> OpenedImage:
    """Reads and checks the header of `data` (format, dimensions, pixel limit); with `max_decode_bytes`,
    also refuses a picture whose decoding would need more memory than that; with `work_side`, it will
    decode a working copy of that size too (`OpenedImage.decode_with_working_copy`). Raises ImageRejected."""
    if not data:
        raise ImageRejected("empty image data")
    image = _open(data, max_pixels)
    width, height = image.size
    if width * height > max_pixels:
        raise ImageRejected(
            f"image is {width}x{height} = {width * height:,} pixels, more than the limit of {max_pixels:,}"
        )
    if min(width, height) < MIN_SIDE_PIXELS:
        raise ImageRejected(f"image is {width}x{height} pixels; each side must be at least {MIN_SIDE_PIXELS}")
    with _rejecting_pillow_failures(image):
        return _estimated(image, data, size, max_decode_bytes, work_side)


def _estimated(
    image: Image.Image, data: bytes, size: int, max_decode_bytes: int | None, work_side: int = 0
) -> OpenedImage:
    """The opened picture with its decode memory estimate, refused when it exceeds `max_decode_bytes`."""
    width, height = image.size
    coefficients = _jpeg_coefficient_bytes(image)
    if image.format in ("JPEG", "MPO"):
        # Let libjpeg scale down by 1/2, 1/4 or 1/8 while decoding (each side stays >= size): a 6000x4000
        # photo then decodes at 750x500, several times faster and in a fraction of the memory.
        image.draft("RGB", (size, size))
    # The working copy is at most work_side^2 RGB pixels, made from the reduced picture.
    needed = decode_bytes(image) + coefficients + 3 * work_side * work_side
    if max_decode_bytes is not None and needed > max_decode_bytes:
        per_pixel = needed / (width * height)
        cheaper = "a baseline (not progressive) JPEG or a PNG" if coefficients else "a PNG or JPEG"
        raise ImageRejected(
            f"a {width}x{height} {image.format} image needs about {needed / 1e6:,.0f} MB to decode, "
            f"more than this encoder's {max_decode_bytes / 1e6:,.0f} MB: send at most "
            f"{int(max_decode_bytes / per_pixel):,} pixels in this format, or {cheaper}"
        )
    return OpenedImage(image, data, size, needed, work_side)


def decode_budget_bytes(max_pixels: int) -> int:
    """What one picture at the pixel limit takes to decode in a 4-byte mode (RGBA, CMYK, 32-bit greyscale):
    the smallest budget under which every such picture the limit lets through can be decoded."""
    return max_pixels * 4 + min(max_pixels, _BLOCK_PIXELS) * _BLOCK_BYTES_PER_PIXEL


def decode_bytes(image: Image.Image) -> int:
    """Peak memory, in bytes, to decode an opened (not yet loaded) picture: its pixels in Pillow's storage,
    the decoder's own full-size buffers, and one block's conversion copies (a JPEG's coefficient buffer is
    added by `open_image`, which sees the size before libjpeg's scaling)."""
    width, height = image.size
    pixels = width * height
    stored = _NARROW_MODES.get(image.mode, 4) + _decoder_bytes(image)
    stored += max((_CODEC_BYTES_PER_PIXEL.get(tile.codec_name, 0) for tile in image.tile), default=0)
    return pixels * stored + min(pixels, _BLOCK_PIXELS) * _BLOCK_BYTES_PER_PIXEL


def _decoder_bytes(image: Image.Image) -> int:
    """The bytes a pixel the format's decoder holds besides Pillow's picture. libheif's: doubled by 16-bit
    samples (above 8 bits) and by alpha, x1.5 for chroma at full resolution (4:4:4, 4:2:2 counted as such)."""
    if image.format != "HEIF":
        return _DECODER_BYTES_PER_PIXEL.get(image.format or "", 0)
    deep = 2 if int(image.info.get("bit_depth") or 8) > 8 else 1
    alpha = 2 if "A" in image.mode else 1
    per_pixel = _HEIF_BASE_BYTES_PER_PIXEL * deep * alpha
    return per_pixel if str(image.info.get("chroma", 420)) == "420" else per_pixel * 3 // 2


def _jpeg_coefficient_bytes(image: Image.Image) -> int:
    """A progressive JPEG is decoded from a buffer of every DCT coefficient of the full-size picture (2 bytes
    per component sample), whatever scale libjpeg outputs; a sequential one streams."""
    if image.format not in ("JPEG", "MPO") or not image.info.get("progressive"):
        return 0
    layers = getattr(image, "layer", None) or []
    if not layers:
        return 0
    h_max = max(h for _, h, _, _ in layers) or 1
    v_max = max(v for _, _, v, _ in layers) or 1
    width, height = image.size
    samples = sum(math.ceil(width * h / h_max) * math.ceil(height * v / v_max) for _, h, v, _ in layers)
    return 2 * samples


def _reduction_factor(source: tuple[int, int], size: int) -> tuple[int, int]:
    """The integer box reduction Pillow's resize(reducing_gap=2.0) applies first, per axis."""
    width, height = source
    return int(width / size / _REDUCING_GAP) or 1, int(height / size / _REDUCING_GAP) or 1


def _reduced_rgb(image: Image.Image, factor: tuple[int, int], offsets: tuple[int, int]) -> Image.Image:
    """`to_rgb(image).reduce(factor)`, block by block: no full-size copy of the picture is ever made.

    Every conversion `to_rgb` makes is per pixel (16-bit scaling takes its full scale from the whole
    picture's extrema), and the blocks start on the reduction's grid, so each reduced pixel averages exactly
    the source pixels it would in a whole-picture reduction. That grid starts at the top-left corner, or
    `offsets` pixels in: a partial first column (row) of that width (height), the rest whole."""
    fx, fy = factor
    if image.mode == "RGB" and "transparency" not in image.info and offsets == (0, 0):
        return image.reduce(factor) if factor != (1, 1) else image
    convert = _block_converter(image)
    width, height = image.size
    columns = min(width, max(fx, _BLOCK_PIXELS // fy // fx * fx))
    rows = max(fy, _BLOCK_PIXELS // columns // fy * fy)
    reduced = Image.new("RGB", (math.ceil(width / fx), math.ceil(height / fy)))
    for top, bottom in _spans(height, rows, offsets[1]):
        for left, right in _spans(width, columns, offsets[0]):
            block = convert(image.crop((left, top, right, bottom)))
            position = (math.ceil(left / fx), math.ceil(top / fy))
            reduced.paste(block.reduce(factor) if factor != (1, 1) else block, position)
    return reduced


def _spans(length: int, step: int, offset: int) -> list[tuple[int, int]]:
    """[start, end) of the blocks along one side: `offset` first (when not 0), then `step` at a time."""
    starts = [0, *range(offset, length, step)] if offset else list(range(0, length, step))
    return [(start, min(length, end)) for start, end in zip(starts, [*starts[1:], length], strict=True)]


def _block_converter(image: Image.Image) -> Callable[[Image.Image], Image.Image]:
    """What turns a block of `image` into RGB: `to_rgb`, with a 16/32-bit picture's full scale fixed."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        full_scale = _full_scale(image)
        return lambda block: Image.fromarray(_high_bit_depth_to_uint8(block, full_scale)).convert("RGB")
    return to_rgb


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Reads only the header: format, mode and dimensions."""
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except UnidentifiedImageError:
        raise ImageRejected(
            f"not an image, or not a supported format ({', '.join(ACCEPTED_FORMATS)})"
        ) from None
    except Image.DecompressionBombError as error:
        # Pillow's own guard fires first for headers far beyond its global limit; report ours.
        found = re.search(r"\((\d+) pixels\)", str(error))
        count = f"{int(found.group(1)):,} pixels" if found else "far more pixels"
        raise ImageRejected(f"image has {count}, more than the limit of {max_pixels:,}") from None
    except Exception as error:  # Pillow plugins raise many types on malformed headers
        raise _rejection(_sniff_format(data), error) from None


def _load(image: Image.Image, data: bytes) -> None:
    """Decodes the pixel data, mapping Pillow's many failure types to a client-facing reason."""
    try:
        image.load()
    except MemoryError:
        raise  # not the client's fault within the pixel limit: let the server report it as internal
    except Exception as error:  # OSError, SyntaxError, ValueError, EOFError, struct.error... on broken data
        raise _rejection(image.format or _sniff_format(data), error) from None


@contextlib.contextmanager
def _rejecting_pillow_failures(image: Image.Image) -> Iterator[None]:
    """An exception raised by Pillow's own code while it works on the upload becomes ImageRejected: Pillow
    raises many types (OSError, TypeError, its colour-management PyCMSError, ...) on data it cannot handle,
    and the picture is what differs from one that works. MemoryError, and exceptions raised by this module's
    code (a bug, whatever the picture), pass through for the service to answer as its own failure."""
    try:
        yield
    except (ImageRejected, MemoryError):
        raise
    except Exception as error:
        if not _raised_by_pillow(error):
            raise
        kind = f"{image.format or 'image'} image in mode {image.mode}"
        raise ImageRejected(f"cannot decode this {kind} ({type(error).__name__}: {error})") from None


def _raised_by_pillow(error: BaseException) -> bool:
    """Whether the innermost Python frame of `error` is Pillow's (C code called by Pillow included)."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return False
    innermost = Path(frames[-1].filename).resolve()
    return any(innermost.is_relative_to(package) for package in _PILLOW_PACKAGES)


def _rejection(kind: str, error: Exception) -> ImageRejected:
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return ImageRejected(f"truncated {kind} image")
    return ImageRejected(f"corrupt {kind} image ({type(error).__name__}: {error})")


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The transposition the EXIF orientation asks for (as ImageOps.exif_transpose), None when upright. A
    malformed EXIF block should not cost the upload: the stored orientation is kept then."""
    with contextlib.suppress(Exception):
        return UPRIGHT_TRANSPOSITION.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    return None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent areas become white (artworks are shown on white)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        return Image.fromarray(_high_bit_depth_to_uint8(image, _full_scale(image))).convert("RGB")
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


def _full_scale(image: Image.Image) -> float:
    """16-bit (and 32-bit int/float) greyscale: Pillow's own convert clips at 255, which turns most 16-bit
    images white; the data is scaled by the range it uses instead: 16 bits, or 8 when no value exceeds 255."""
    if image.mode.startswith("I;16"):
        return 65535.0
    _, highest = image.getextrema()
    return 65535.0 if highest > 255 else 255.0


def _high_bit_depth_to_uint8(image: Image.Image, full_scale: float) -> np.ndarray:
    values = np.asarray(image, dtype=np.float64)
    np.multiply(values, 255.0 / full_scale, out=values)
    np.rint(values, out=values)
    np.clip(values, 0, 255, out=values)
    return values.astype(np.uint8)


def _sniff_format(data: bytes) -> str:
    """A best-effort format name for messages about files Pillow could not even open."""
    return sniff_image_format(data) or "image"
