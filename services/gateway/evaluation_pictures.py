"""The evaluation's pictures (precision-recall curves, maps of the collection: the PNG files
`artsearch eval retrieval` writes to docs/img/), served so that the web UI can show them.

    GET /v1/evaluation/pictures          {"pictures": [{"name", "title", "url", "width", "height", "bytes"}]}
    GET /v1/evaluation/pictures/{name}   the PNG, with Cache-Control and an ETag (304 on If-None-Match)

Only PNG files directly in EVALUATION_DIR are served, and a name is served only when the directory listing
holds it (a plain file name, PNG bytes, resolving inside the directory): no path from the client is ever
joined to the directory. Without EVALUATION_DIR both routes answer 404 `evaluation_not_configured`.

Settings (environment): EVALUATION_DIR, EVALUATION_CACHE_MAX_AGE_S; each declared, with its default and
meaning, in services/gateway/settings.py (the table: docs/architecture.md, "Configuration").

The routes: services/gateway/routes/evaluation_pictures.py."""

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Self
from urllib.parse import quote

from artsearch.config import Env
from services.gateway import settings as declared
from services.gateway.errors import ApiError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PICTURE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.png", re.IGNORECASE)
MAX_PICTURES = 200
NOT_CONFIGURED_CODE = "evaluation_not_configured"
NOT_CONFIGURED_MESSAGE = "evaluation pictures not configured: EVALUATION_DIR is not set"
# Display names of the evaluation's data sets in the picture file names.
_SET_NAMES = {
    "gcompris": "GCompris paintings",
    "openclipart": "OpenClipart images",
    "tuxpaint": "Tux Paint stamps",
}


@dataclass(frozen=True)
class EvaluationPictureSettings:
    directory: Path | None = None
    cache_max_age_s: int = 3600

    @classmethod
    def from_env(cls, env: Env) -> Self:
        return cls(
            directory=declared.EVALUATION_DIR.read(env),
            cache_max_age_s=declared.EVALUATION_CACHE_MAX_AGE_S.read(env),
        )


@dataclass(frozen=True)
class Picture:
    name: str
    path: Path
    stat: os.stat_result
    width: int
    height: int

    @property
    def title(self) -> str:
        return picture_title(self.name)

    def etag(self) -> str:
        return f'"{self.stat.st_size:x}-{self.stat.st_mtime_ns:x}"'

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "title": self.title,
            "url": f"/v1/evaluation/pictures/{quote(self.name, safe='')}",
            "width": self.width,
            "height": self.height,
            "bytes": self.stat.st_size,
        }


def picture_title(name: str) -> str:
    """A caption from the file name the evaluation gave the picture."""
    stem = name.rsplit(".", 1)[0]
    if stem == "pr_curves":
        return "Precision-recall curves of each descriptor aspect"
    if stem.startswith("map_"):
        set_name, thumbnails = stem.removeprefix("map_"), stem.endswith("_thumbnails")
        set_name = set_name.removesuffix("_thumbnails")
        shown = _SET_NAMES.get(set_name, set_name.replace("_", " "))
        how = "with thumbnails" if thumbnails else "coloured by label"
        return f"Map of the {shown}: t-SNE of the descriptors, {how}"
    return stem.replace("_", " ").replace("-", " ").capitalize()


def _png_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the PNG header, or None when the file is not a PNG."""
    with path.open("rb") as file:
        head = file.read(24)
    if len(head) < 24 or not head.startswith(PNG_SIGNATURE) or head[12:16] != b"IHDR":
        return None
    width, height = struct.unpack(">II", head[16:24])
    return width, height


def _picture(directory: Path, entry: os.DirEntry[str]) -> Picture | None:
    if not PICTURE_NAME.fullmatch(entry.name):
        return None
    try:
        path = Path(entry.path).resolve(strict=True)
        if path.parent != directory or not path.is_file():  # a link leading elsewhere is not served
            return None
        size = _png_size(path)
        stat = path.stat()
    except (OSError, RuntimeError):
        return None
    return None if size is None else Picture(entry.name, path, stat, *size)


def list_pictures(directory: Path) -> list[Picture]:
    """The PNG pictures in `directory` (blocking: run it in a worker thread); the precision-recall curves
    first, then by name."""
    with os.scandir(directory) as entries:
        found = [picture for entry in entries if (picture := _picture(directory, entry)) is not None]
    found.sort(key=lambda picture: (not picture.name.startswith("pr_"), picture.name))
    return found[:MAX_PICTURES]


def configured_directory(settings: EvaluationPictureSettings) -> Path:
    if settings.directory is None:
        raise ApiError(404, NOT_CONFIGURED_CODE, NOT_CONFIGURED_MESSAGE)
    return settings.directory
