"""The region crops of an artwork's picture, ready for the encoder
(artsearch_tools.regions says which windows).

The picture is decoded once (a JPEG at a reduced scale when its windows stay at least twice the network's
input size: the crops are shrunk to that size anyway), turned upright and to RGB as the encoder does
(EXIF orientation, transparency over white), cut into the grid's windows, and each window resized to the
network's input size with the resampling the encoder applies to a whole picture. Each crop is sent as a
PNG of exactly that size: the encoder decodes it without resizing again, so a region's descriptor is the
descriptor of that part of the picture, as a photo of it would give.
"""

from __future__ import annotations

import io
import logging
import warnings

from PIL import Image, ImageOps

from artsearch.image_formats import ACCEPTED_FORMATS
from artsearch_tools.regions import RegionGrid

log = logging.getLogger(__name__)

# Pillow only (no numpy): ingest runs in the CLI image, which carries Pillow for this and little else.
_WHITE = (255, 255, 255, 255)
_HIGH_BIT_DEPTH_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N")
# The network's input size (ModelInfo.input_size of the shipped model).
INPUT_SIZE = 224
# A picture is decoded with at most this many pixels (the encoder has refused larger ones already; this
# only bounds what a crop job holds in memory).
MAX_DECODED_PIXELS = 60_000_000


class RegionCropFailed(ValueError):
    """The picture could not be cut into regions (the artwork is stored without them)."""


def region_crops(data: bytes, grid: RegionGrid, size: int = INPUT_SIZE) -> list[bytes]:
    """One PNG of `size` x `size` per window of `grid`, in the grid's order. Raises RegionCropFailed."""
    try:
        picture = _decoded(data, grid, size)
        crops = []
        for box in grid.pixel_boxes(*picture.size):
            crop = picture.crop(box).resize((size, size), Image.Resampling.BICUBIC, reducing_gap=2.0)
            buffer = io.BytesIO()
            crop.save(buffer, "PNG", compress_level=1)  # fast: these bytes only travel to the encoder
            crops.append(buffer.getvalue())
        return crops
    except RegionCropFailed:
        raise
    except Exception as error:  # any Pillow failure: the whole picture was encoded, its regions are not
        raise RegionCropFailed(f"cannot cut the picture into regions: {error}") from error


def _decoded(data: bytes, grid: RegionGrid, size: int) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        # The formats the encoder decodes (HEIF among them), and no other decoder Pillow might try.
        image = Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    width, height = image.size
    if width * height > MAX_DECODED_PIXELS:
        raise RegionCropFailed(f"picture of {width}x{height} pixels is over {MAX_DECODED_PIXELS:,}")
    # The smallest window stays at least twice the input size: JPEG decodes at 1/2, 1/4, 1/8 scale fast.
    needed = round(2 * size / grid.smallest_side)
    if image.format == "JPEG":
        image.draft("RGB", (needed, needed))
    image.load()
    upright = ImageOps.exif_transpose(image) or image
    return _rgb(upright)


def _rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB with transparent areas white, as the encoder turns a whole picture (its `to_rgb`); 16-bit
    greys are scaled down rather than clipped."""
    if image.mode in _HIGH_BIT_DEPTH_MODES:
        image = image.convert("I").point(lambda value: value * (1 / 257)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, _WHITE), rgba).convert("RGB")
    return image.convert("RGB")
