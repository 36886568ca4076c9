"""Turns uploaded image bytes into the network's input: uint8 RGB, size x size, the whole picture.

Untrusted input: the pixel count is checked from the header before anything is decoded, only common raster
formats are opened (no Ghostscript-backed EPS and the like), and every failure becomes `ImageRejected` with
a message a client can act on.
"""

from __future__ import annotations

import contextlib
import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from artsearch.image_formats import ACCEPTED_FORMATS, sniff_image_format

MIN_SIDE_PIXELS = 8
_WHITE = (255, 255, 255)

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
    if image.format in ("JPEG", "MPO"):
        # Let libjpeg scale down by 1/2, 1/4 or 1/8 while decoding (each side stays >= size): a 6000x4000
        # photo then decodes at 750x500, several times faster and in a fraction of the memory.
        image.draft("RGB", (size, size))
    _load(image, data)
    image = _apply_exif_orientation(image)
    try:
        rgb = to_rgb(image)
    except ValueError as error:  # exotic modes (LAB, HSV from TIFF) Pillow cannot convert
        raise ImageRejected(f"unsupported colour mode {image.mode} ({error})") from None
    resized = rgb.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
    return np.asarray(resized, dtype=np.uint8).copy()


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


def _rejection(kind: str, error: Exception) -> ImageRejected:
    if isinstance(error, EOFError) or "truncated" in str(error).lower():
        return ImageRejected(f"truncated {kind} image")
    return ImageRejected(f"corrupt {kind} image ({type(error).__name__}: {error})")


def _apply_exif_orientation(image: Image.Image) -> Image.Image:
    # In place: an upright image is not copied. A malformed EXIF block should not cost the upload: the
    # stored orientation is kept then.
    with contextlib.suppress(Exception):
        ImageOps.exif_transpose(image, in_place=True)
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB; transparent areas become white (artworks are shown on white)."""
    if image.mode == "RGB" and "transparency" not in image.info:
        return image
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return Image.fromarray(_high_bit_depth_to_uint8(image)).convert("RGB")
    if _has_transparency(image):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*_WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _has_transparency(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info


def _high_bit_depth_to_uint8(image: Image.Image) -> np.ndarray:
    """16-bit (and 32-bit int/float) greyscale: Pillow's own convert clips at 255, which turns most
    16-bit images white; scale by the range the data uses instead."""
    values = np.asarray(image, dtype=np.float64)
    full_scale = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
    return np.clip(np.rint(values * (255.0 / full_scale)), 0, 255).astype(np.uint8)


def _sniff_format(data: bytes) -> str:
    """A best-effort format name for messages about files Pillow could not even open."""
    return sniff_image_format(data) or "image"
