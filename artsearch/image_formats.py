"""The raster formats artsearch accepts, recognised by their leading bytes (never by a file name or a
declared content type): one list for the encoder, the gateway's upload checks and media routes, and ingest.

HEIF (HEIC: what an iPhone's camera saves, and many Android phones') is read by pi-heif's plugin for Pillow
(pillow-heif's decode-only build: libheif with libde265, 4 MB; pillow-heif itself adds x265, 23 MB of HEVC
encoder the services never use), registered here, so whatever imports this module opens it like the others.
"""

from __future__ import annotations

import pi_heif

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "HEIF")
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
    # HEVC-coded HEIF, the only kind libheif decodes here (pi-heif carries no AV1 decoder; AVIF is Pillow's
    # own).
    "HEIF": "image/heic",
}
# Enough leading bytes for every signature below, a HEIF file type box's compatible brands included.
SNIFF_BYTES = 64

_PREFIXES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
# ISO base media file brands (ISO/IEC 23008-12): the coding brands of AV1 and HEVC pictures and sequences,
# and the generic image-file brands, whose file then says its coding among its compatible brands.
_ISOBMFF_CODINGS = {
    **dict.fromkeys((b"avif", b"avis"), "AVIF"),
    **dict.fromkeys((b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"), "HEIF"),
}
_GENERIC_IMAGE_BRANDS = (b"mif1", b"msf1")


def sniff_image_format(head: bytes) -> str | None:
    """The accepted format (a name in ACCEPTED_FORMATS) the first bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp":
        return _isobmff_format(head)
    for magic, name in _PREFIXES:
        if head.startswith(magic):
            return name
    return None


def _isobmff_format(head: bytes) -> str | None:
    """AVIF or HEIF from a file type box: its major brand, or for a generic image file (mif1, msf1) the
    first coding among its compatible brands (those within `head`)."""
    major = head[8:12]
    if major not in _GENERIC_IMAGE_BRANDS:
        return _ISOBMFF_CODINGS.get(major)
    box_end = min(len(head), int.from_bytes(head[:4], "big"))
    compatible = (head[start : start + 4] for start in range(16, box_end - 3, 4))
    return next((_ISOBMFF_CODINGS[brand] for brand in compatible if brand in _ISOBMFF_CODINGS), None)


def register_heif_opener() -> None:
    """Pillow opens HEIF from now on. One libheif thread a picture: the services decode several pictures at
    once on their own pools, one a core; no thumbnails, depth or auxiliary pictures are read."""
    pi_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
    pi_heif.options.DECODE_THREADS = 1


register_heif_opener()
