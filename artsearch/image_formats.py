"""The raster formats artsearch accepts, recognised by their leading bytes (never by a file name or a
declared content type): one list for the encoder, the gateway's upload checks and media routes, and ingest."""

from __future__ import annotations

ACCEPTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", "AVIF")
MEDIA_TYPES = {
    "JPEG": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    "AVIF": "image/avif",
}
# Enough leading bytes for every signature below.
SNIFF_BYTES = 16

_PREFIXES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
_AVIF_BRANDS = (b"avif", b"avis")


def sniff_image_format(head: bytes) -> str | None:
    """The accepted format (a name in ACCEPTED_FORMATS) the first bytes announce, or None."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[4:8] == b"ftyp" and head[8:12] in _AVIF_BRANDS:
        return "AVIF"
    for magic, name in _PREFIXES:
        if head.startswith(magic):
            return name
    return None
