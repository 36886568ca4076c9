"""The evaluation's pictures (precision-recall curves, maps of the collection: the PNG files
`artsearch eval retrieval` writes to docs/img/), served so that the web UI can show them.

    GET /v1/evaluation/pictures          {"pictures": [{"name", "title", "url", "width", "height", "bytes"}]}
    GET /v1/evaluation/pictures/{name}   the PNG, with Cache-Control and an ETag (304 on If-None-Match)

Only PNG files directly in EVALUATION_DIR are served, and a name is served only when the directory listing
holds it (a plain file name, PNG bytes, resolving inside the directory): no path from the client is ever
joined to the directory. Without EVALUATION_DIR both routes answer 404 `evaluation_not_configured`.

Settings (environment):
  EVALUATION_DIR                  folder of the evaluation's PNG files (e.g. <repo>/docs/img); unset: off
  EVALUATION_CACHE_MAX_AGE_S      Cache-Control max-age of the pictures, seconds (default 3600)

No `from __future__ import annotations` here: FastAPI reads the route signatures at run time."""

import asyncio
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Self
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response

from artsearch.config import Env
from services.gateway.errors import ApiError, error_doc
from services.gateway.media import BINARY, cache_headers, etag_matches
from services.gateway.schemas.evaluation import EvaluationPictures

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
            directory=env.optional_directory("EVALUATION_DIR"),
            cache_max_age_s=env.int("EVALUATION_CACHE_MAX_AGE_S", 3600, minimum=0),
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


def _configured(settings: EvaluationPictureSettings) -> Path:
    if settings.directory is None:
        raise ApiError(404, NOT_CONFIGURED_CODE, NOT_CONFIGURED_MESSAGE)
    return settings.directory


def install_evaluation_picture_routes(app: FastAPI, settings: EvaluationPictureSettings) -> None:
    """Adds GET /v1/evaluation/pictures and GET /v1/evaluation/pictures/{name}."""

    @app.get(
        "/v1/evaluation/pictures",
        tags=["evaluation"],
        response_model=EvaluationPictures,
        response_description="The evaluation's pictures",
        responses={
            404: error_doc(404, "EVALUATION_DIR is not set", (NOT_CONFIGURED_CODE, NOT_CONFIGURED_MESSAGE)),
        },
    )
    async def evaluation_pictures() -> JSONResponse:
        """The evaluation's pictures (precision-recall curves, 2-D maps of the collection), each with a
        title and the URL serving it."""
        pictures = await asyncio.to_thread(list_pictures, _configured(settings))
        return JSONResponse({"pictures": [picture.to_json() for picture in pictures]})

    @app.get(
        "/v1/evaluation/pictures/{name}",
        tags=["evaluation"],
        response_class=Response,
        responses={
            200: {"content": {"image/png": {"schema": BINARY}}, "description": "The PNG file"},
            304: {"description": "Not modified: If-None-Match matched the ETag"},
            404: error_doc(
                404,
                "No such picture, or EVALUATION_DIR is not set",
                ("picture_not_found", "no evaluation picture 'x.png'"),
            ),
        },
    )
    async def evaluation_picture(
        request: Request,
        name: Annotated[
            str, PathParam(min_length=1, max_length=200, description="A name from the pictures list")
        ],
    ) -> Response:
        """One evaluation picture (PNG), with Cache-Control and an ETag."""
        directory = _configured(settings)
        pictures = await asyncio.to_thread(list_pictures, directory)
        picture = next((p for p in pictures if p.name == name), None)
        if picture is None:
            raise ApiError(404, "picture_not_found", f"no evaluation picture {name[:80]!r}")
        headers = cache_headers(settings.cache_max_age_s, picture.etag())
        if etag_matches(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return FileResponse(picture.path, media_type="image/png", headers=headers, stat_result=picture.stat)
