"""EXIF orientation: the transposition that shows a stored picture upright (as ImageOps.exif_transpose), one
table for the encoder's decoding and the gateway's thumbnails."""

from __future__ import annotations

from PIL import Image

UPRIGHT_TRANSPOSITION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
