"""Checks an uploaded (or fetched) image before it goes anywhere: size, format by its bytes, pixel count.

Only the header is read (Pillow opens lazily): a decompression bomb is refused from its declared
dimensions, before any pixel is decoded. The encoder decodes and checks again; these checks answer the
client early with a precise status: 413 too large, 415 not an accepted format, 400 empty or unreadable.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image

from artsearch.image_formats import ACCEPTED_FORMATS, sniff_image_format
from services.gateway.errors import ApiError

# Pillow names a multi-picture JPEG "MPO".
_PILLOW_FORMATS = (*ACCEPTED_FORMATS, "MPO")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int


def check_image(data: bytes, limits: ImageLimits) -> ImageInfo:
    """Raises ApiError unless `data` is a non-empty accepted image within the byte and pixel limits."""
    if not data:
        raise ApiError(400, "invalid_image", "the image is empty")
    if len(data) > limits.max_bytes:
        raise ApiError(413, "too_large", f"image is larger than {limits.max_bytes} bytes")
    kind = sniff_image_format(data)
    if kind is None:
        accepted = ", ".join(ACCEPTED_FORMATS)
        raise ApiError(415, "unsupported_media_type", f"not an image in an accepted format ({accepted})")
    width, height = _declared_size(data, kind, limits.max_pixels)
    if width * height > limits.max_pixels:
        raise ApiError(
            413,
            "too_many_pixels",
            f"image is {width}x{height} = {width * height:,} pixels, more than the limit of "
            f"{limits.max_pixels:,}",
        )
    return ImageInfo(kind, width, height)


def _declared_size(data: bytes, kind: str, max_pixels: int) -> tuple[int, int]:
    """Width and height from the header alone (Image.open does not decode pixels)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=_PILLOW_FORMATS) as image:
                return image.size
    except Image.DecompressionBombError:
        # Pillow's own guard (far beyond its global limit) fired before we could compare with ours.
        raise ApiError(
            413, "too_many_pixels", f"image has far more pixels than the limit of {max_pixels:,}"
        ) from None
    except Exception as error:  # Pillow plugins raise many types on malformed headers
        raise ApiError(
            400, "invalid_image", f"unreadable {kind} image ({type(error).__name__}: {error})"
        ) from None
