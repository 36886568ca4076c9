"""URL manifests: a catalogue whose images are on the web, one row per artwork.

A manifest is a CSV file (header required), a JSON-lines file (``.jsonl``: one object per line) or a JSON
list, with the image URL in a ``url`` column (or ``image_url``) and the same metadata columns as a
catalogue folder (``id``, ``title``, ``artist``, ``style``, ``genre``, ``year``/``date``, the rest kept as
``extra``). The entries' ``filename`` is the URL; ingest downloads it and stores the URL as the artwork's
``image_uri`` (the gateway redirects image requests there). Without an ``id`` column an artwork's id is its
URL's file-name stem plus a short hash of the URL, so that two sites' ``1.jpg`` do not collide.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from artsearch_tools.catalogue.folder import (
    Catalogue,
    CatalogueEntry,
    CatalogueError,
    CatalogueProblem,
    RowRejected,
    entry_from_row,
    read_csv_rows,
    read_jsonl_rows,
    slugify,
)

URL_KEYS = ("url", "image_url")


def load_manifest(path: Path, name: str | None = None) -> Catalogue:
    """The manifest's artworks; rows without a usable http(s) URL or with bad metadata are `problems`.
    ``name`` (the catalogue name) defaults to the manifest's file-name stem."""
    path = Path(path)
    if not path.is_file():
        raise CatalogueError(f"manifest {path} does not exist")
    catalogue = Catalogue(name=name or path.stem, root=path.parent, entries=[], problems=[])
    seen: set[str] = set()
    for number, row in enumerate(_read_rows(path), start=1):
        try:
            entry = _entry(row)
        except RowRejected as rejection:
            catalogue.problems.append(CatalogueProblem(number, rejection.filename, rejection.reason))
            continue
        if entry.id in seen:
            catalogue.problems.append(CatalogueProblem(number, entry.filename, f"duplicate id {entry.id!r}"))
            continue
        seen.add(entry.id)
        catalogue.entries.append(entry)
    return catalogue


def is_url(filename: str) -> bool:
    return urlsplit(filename).scheme.lower() in ("http", "https")


def _read_rows(path: Path) -> list[dict[str, str]]:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return read_csv_rows(path, URL_KEYS)
    if suffix == ".jsonl":
        return read_jsonl_rows(path)
    if suffix == ".json":
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise CatalogueError(f"{path}: not valid JSON ({error})") from error
        if not isinstance(document, list):
            raise CatalogueError(f"{path}: expected a JSON list of objects")
        return [
            {str(k): "" if v is None else str(v) for k, v in item.items()} if isinstance(item, dict) else {}
            for item in document
        ]
    raise CatalogueError(f"{path}: a manifest is .csv, .jsonl or .json, not {suffix or 'without suffix'}")


def _entry(row: dict[str, str]) -> CatalogueEntry:
    by_key = {key.lower(): value.strip() for key, value in row.items()}
    url = next((by_key[key] for key in URL_KEYS if by_key.get(key)), "")
    if not url:
        raise RowRejected("", "no url")
    if not is_url(url) or not urlsplit(url).hostname:
        raise RowRejected(url, "url must be an absolute http or https URL")
    stem = PurePosixPath(unquote(urlsplit(url).path)).stem
    url_hash = hashlib.sha256(url.encode("utf-8")).hexdigest()[:10]
    default_id = f"{slugify(stem)}-{url_hash}" if slugify(stem) else f"url-{url_hash}"
    return entry_from_row(row, url, default_id=default_id, default_title=stem or url, image_keys=URL_KEYS)
