"""HEIF (HEIC) files for the tests, as a phone's camera writes them.

The services read HEIF with pi-heif, which only decodes; the tests write it with pillow-heif (the test extra)
through its own API, never registered with Pillow, so every HEIF file a test reads goes through the same
decoder as in the services."""

from __future__ import annotations

import io

import numpy as np
import pillow_heif
from PIL import Image

import artsearch.image_formats  # noqa: F401  (registers the services' HEIF decoder: what tests read with)


def heic(image: Image.Image, *, orientation: int = 1, **options: object) -> bytes:
    """`image` (RGB or RGBA, 8 bits) as HEIF; `orientation`: the EXIF orientation a camera records for the
    stored pixels (pillow-heif writes it as HEIF's rotation and mirroring too, as phones do); `options`:
    pillow-heif's (quality, chroma 420/444, ...)."""
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        options["exif"] = exif.tobytes()
    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(buffer, **options)
    return buffer.getvalue()


def deep_heic(image: Image.Image, **options: object) -> bytes:
    """`image` (RGB or RGBA, 8 bits) as a 10-bit HEIF: its samples scaled to 16 bits, saved at 10."""
    samples = np.asarray(image).astype(np.uint16) * 257
    heif = pillow_heif.from_bytes(mode=f"{image.mode};16", size=image.size, data=samples.tobytes())
    buffer = io.BytesIO()
    heif.save(buffer, **options)
    return buffer.getvalue()
