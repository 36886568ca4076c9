"""Artwork metadata sent to the admin API: validation into catalogue records, the records' JSON form, and
the image files the gateway keeps for added artworks (IMAGE_ROOT/<catalogue>/<id>.<ext>).

Every check raises ApiError 400 naming the field and the problem, before anything is stored."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

from artsearch.artists import normalise_name
from artsearch.v1 import common_pb2
from services.gateway.errors import ApiError
from services.gateway.explain import artwork_json as public_artwork_json

# Ids of artworks added here become file names and URL path segments: keep them plain.
NEW_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
CATALOGUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
MAX_ID_CHARS = 256  # of ids already stored (ingested catalogues may use other characters)
MAX_TEXT_CHARS = 500
MAX_EXTRA_ENTRIES = 32
MAX_EXTRA_KEY_CHARS = 64
MAX_EXTRA_VALUE_CHARS = 2000
YEAR_RANGE = (-5000, 2100)
TEXT_FIELDS = ("title", "artist", "style", "genre")
METADATA_FIELDS = frozenset({"id", "catalogue", "year", "extra", *TEXT_FIELDS})
# Marks an artwork added through the admin API: only its image file is the gateway's to delete.
ADDED_BY = "added_by"
ADDED_AT = "added_at"
FILE_EXTENSIONS = {
    "JPEG": "jpg",
    "PNG": "png",
    "WEBP": "webp",
    "GIF": "gif",
    "BMP": "bmp",
    "TIFF": "tif",
    "AVIF": "avif",
}


def invalid(field: str, problem: str) -> ApiError:
    return ApiError(400, "invalid_metadata", f"{field}: {problem}")


def clean_text(value: object, field: str, max_chars: int = MAX_TEXT_CHARS) -> str:
    """A metadata string, stripped: must be text of at most `max_chars` characters, encodable as UTF-8
    (JSON can carry lone surrogates, which gRPC cannot), without control characters."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, got {type(value).__name__}")
    text = value.strip()
    if len(text) > max_chars:
        raise invalid(field, f"is longer than {max_chars} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise invalid(field, "is not valid Unicode text (lone surrogate)") from None
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in text):
        raise invalid(field, "contains control characters")
    return text


def clean_year(value: object, field: str = "year") -> int:
    """A year as an int (0 when absent or blank: unknown); numeric strings (form fields) are accepted."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return 0
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise invalid(field, f"must be an integer, got {type(value).__name__}")
    try:
        year = int(value)
    except ValueError:
        raise invalid(field, f"{str(value)[:20]!r} is not an integer") from None
    low, high = YEAR_RANGE
    if not low <= year <= high:
        raise invalid(field, f"{year} is outside {low}..{high}")
    return year


def clean_artist(value: object, field: str = "artist") -> str:
    artist = clean_text(value, field)
    if artist and not normalise_name(artist):
        raise invalid(field, f"{artist!r} has no letters or digits")
    return artist


def clean_extra(value: object, field: str = "extra") -> dict[str, str]:
    """Free-form metadata: a JSON object (or its text, from a form field) of string values."""
    if value is None or value == "":
        return {}
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise invalid(field, "is not valid JSON") from None
    if not isinstance(value, dict):
        raise invalid(field, "must be a JSON object of strings")
    if len(value) > MAX_EXTRA_ENTRIES:
        raise invalid(field, f"has more than {MAX_EXTRA_ENTRIES} entries")
    extra = {}
    for key, item in value.items():
        name = clean_text(key, f"{field} key", MAX_EXTRA_KEY_CHARS)
        if not name or name in (ADDED_BY, ADDED_AT):
            raise invalid(field, f"key {name!r} is empty or reserved")
        extra[name] = clean_text(item, f"{field}.{name}", MAX_EXTRA_VALUE_CHARS)
    return extra


def check_catalogue_name(name: str) -> str:
    if not CATALOGUE.fullmatch(name):
        raise invalid(
            "catalogue", f"{name[:70]!r}: use 1 to 64 of A-Z a-z 0-9 _ - (starting with a letter/digit)"
        )
    return name


def check_stored_id(artwork_id: str) -> str:
    """An id in a URL (PATCH, DELETE): any non-blank text, since ingested catalogues chose their own."""
    if not artwork_id.strip() or len(artwork_id) > MAX_ID_CHARS:
        raise ApiError(400, "invalid_id", f"an artwork id is 1 to {MAX_ID_CHARS} characters")
    clean_text(artwork_id, "id", MAX_ID_CHARS)
    return artwork_id


def new_artwork(
    fields: Mapping[str, object], default_catalogue: str, image: bytes, added_by: str
) -> common_pb2.Artwork:
    """The record of an artwork to add, from its metadata. Without an id it gets one from its catalogue
    and the image's content (adding the same picture twice names the same artwork)."""
    unknown = set(fields) - METADATA_FIELDS - {"filename"}
    if unknown:
        raise invalid(sorted(unknown)[0], f"unknown field (accepted: {', '.join(sorted(METADATA_FIELDS))})")
    catalogue = check_catalogue_name(clean_text(fields.get("catalogue"), "catalogue") or default_catalogue)
    artwork_id = clean_text(fields.get("id"), "id", MAX_ID_CHARS)
    if not artwork_id:
        artwork_id = f"{catalogue}-{hashlib.sha256(image).hexdigest()[:16]}"
    elif not NEW_ID.fullmatch(artwork_id):
        raise invalid(
            "id", f"{artwork_id[:70]!r}: use 1 to 128 of A-Z a-z 0-9 . _ - (starting with a letter/digit)"
        )
    title = clean_text(fields.get("title"), "title")
    if not title:
        raise invalid("title", "is required")
    extra = clean_extra(fields.get("extra"))
    extra[ADDED_BY] = added_by
    extra[ADDED_AT] = datetime.now(UTC).isoformat(timespec="seconds")
    return common_pb2.Artwork(
        id=artwork_id,
        title=title,
        artist=clean_artist(fields.get("artist")),
        style=clean_text(fields.get("style"), "style"),
        genre=clean_text(fields.get("genre"), "genre"),
        year=clean_year(fields.get("year")),
        catalogue=catalogue,
        extra=extra,
    )


def artwork_json(artwork: common_pb2.Artwork) -> dict[str, object]:
    """A stored record as the admin API shows it: the public metadata and the record's extra fields."""
    return {**public_artwork_json(artwork), "extra": dict(sorted(artwork.extra.items()))}


# ---- image files ------------------------------------------------------------------------------------


def image_file_name(artwork_id: str, image_format: str, content: bytes | None = None) -> str:
    """`<id>.<ext>`, or with `content` `<id>.<first 12 hex digits of its SHA-256>.<ext>`: the name of an
    image that must not take the place of the file its artwork's stored record still shows."""
    extension = FILE_EXTENSIONS.get(image_format, "img")
    if content is None:
        return f"{artwork_id}.{extension}"
    return f"{artwork_id}.{hashlib.sha256(content).hexdigest()[:12]}.{extension}"


def _inside(root: Path, catalogue: str, file_name: str) -> Path:
    """root/catalogue/file_name, refusing anything that would resolve outside root."""
    base = root.resolve()
    path = (base / catalogue / file_name).resolve()
    if not path.is_relative_to(base) or path.parent != (base / catalogue).resolve():
        raise ApiError(400, "invalid_path", f"{catalogue}/{file_name} would leave the image folder")
    return path


UPLOAD_PREFIX, UPLOAD_SUFFIX = ".upload-", ".part"
# A temporary upload file this old is a crashed write's leftover: no write takes minutes, and the margin
# keeps a start-up sweep from taking a file another gateway replica sharing IMAGE_ROOT is writing now.
STALE_UPLOAD_AFTER_S = 300.0


def place_image(root: Path, catalogue: str, file_name: str, data: bytes) -> Path:
    """Writes the image to root/catalogue/file_name durably, before any record points at it: a temporary
    file beside its place, written and fsync'd, renamed over the place in one step, and the folder fsync'd
    (the rename itself survives a power cut). After a crash the place holds the whole image, or what it
    held before; never a part of one. Returns the place."""
    final = _inside(root, catalogue, file_name)
    _make_folder(final.parent)
    handle, temporary = tempfile.mkstemp(dir=final.parent, prefix=UPLOAD_PREFIX, suffix=UPLOAD_SUFFIX)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, final)
    except BaseException:
        discard(Path(temporary))
        raise
    fsync_folder(final.parent)
    return final


def _make_folder(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(parents=True, exist_ok=True)
        fsync_folder(folder.parent)  # the new catalogue folder's own entry


def fsync_folder(folder: Path) -> None:
    handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(handle)
    finally:
        os.close(handle)


def remove_stale_uploads(root: Path, older_than_s: float = STALE_UPLOAD_AFTER_S) -> list[Path]:
    """Removes the temporary upload files under root/<catalogue>/ older than `older_than_s` (left by a
    gateway killed while writing); returns them."""
    removed = []
    cutoff = time.time() - older_than_s
    for folder in (entry for entry in root.iterdir() if entry.is_dir()):
        for leftover in folder.glob(f"{UPLOAD_PREFIX}*{UPLOAD_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError):
                if leftover.stat().st_mtime < cutoff:
                    leftover.unlink()
                    removed.append(leftover)
    return removed


def discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def added_image_path(root: Path | None, artwork: common_pb2.Artwork) -> Path | None:
    """The image file the gateway wrote for this artwork, or None (not added here, or no IMAGE_ROOT):
    files of ingested catalogues are never touched."""
    if root is None or ADDED_BY not in artwork.extra or not artwork.image_uri or not artwork.catalogue:
        return None
    if "/" in artwork.image_uri or not artwork.image_uri.startswith(f"{artwork.id}."):
        return None
    try:
        return _inside(root, artwork.catalogue, artwork.image_uri)
    except ApiError:
        return None
