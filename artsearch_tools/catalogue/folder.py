"""Catalogue folders: images plus optional metadata, read into `CatalogueEntry` rows.

A catalogue folder holds image files and, optionally, ``metadata.csv`` or ``metadata.json`` (a list of
objects). Recognised columns/keys (case-insensitive):

* the image path, relative to the folder: ``filename`` (or ``file``, ``image``, ``path``) -- required;
* ``id`` (default: the slugified file-name stem), ``title`` (default: the stem), ``artist``, ``style``,
  ``genre``, ``year`` (an integer) or ``date`` (free text such as ``c. 1503`` or ``1503-1519``: the first
  three- or four-digit number is the year);
* every other column is kept as text in ``extra``.

A catalogue declares what its ``style`` labels are in an optional ``catalogue.json`` beside the images,
``{"style_labels": "art"}`` (art styles: the default) or ``{"style_labels": "category"}`` (subject categories
such as clip art's "computer/icons"): only art styles vote in a style prediction (artsearch.style_vote).

This also reads the seed system's WikiArt CSV (``filename, artist, title, style, genre, date``). A row that
cannot be used (missing file, duplicate id, unreadable year, ...) is skipped and reported in
``Catalogue.problems``; it never stops the rest from loading. Without a metadata file every image under
the folder becomes an entry titled by its file-name stem. A metadata file elsewhere, or a JSON-lines one,
can be named explicitly (`load_catalogue(folder, metadata=...)`).
"""

from __future__ import annotations

import csv
import json
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from artsearch.style_vote import LABEL_KINDS

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".avif", ".heic", ".heif"}
)
METADATA_FILES = ("metadata.csv", "metadata.json")
# The catalogue's own facts (what its style labels are), beside its metadata file.
CATALOGUE_INFO_FILE = "catalogue.json"

FILENAME_KEYS = ("filename", "file", "image", "path")
_KNOWN_KEYS = frozenset({*FILENAME_KEYS, "id", "title", "artist", "style", "genre", "year", "date"})
_NO_DATE = frozenset({"", "unknown", "n.d.", "nd", "none", "nan", "?", "-"})
_YEAR_PATTERN = re.compile(r"(?<!\d)(\d{3,4})(?!\d)")


class CatalogueError(ValueError):
    """The catalogue folder or its metadata file as a whole cannot be read."""


@dataclass(frozen=True)
class CatalogueEntry:
    id: str
    filename: str  # relative to the catalogue root, '/'-separated
    title: str
    artist: str = ""
    style: str = ""
    genre: str = ""
    year: int | None = None
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CatalogueProblem:
    row: int | None  # 1-based data row in the metadata file; None when there is no metadata file
    filename: str
    reason: str


@dataclass
class Catalogue:
    name: str
    root: Path
    entries: list[CatalogueEntry]
    problems: list[CatalogueProblem]
    # What the `style` labels are (artsearch.style_vote.LABEL_KINDS); None when the catalogue does not
    # say (ingest then stores them as art styles).
    style_labels: str | None = None

    def path_of(self, entry: CatalogueEntry) -> Path:
        return self.root / entry.filename


def slugify(text: str) -> str:
    """Lower-case ASCII words joined by hyphens: ``"Pietà (1499)"`` -> ``"pieta-1499"``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")


def parse_year(value: str | int | None) -> int | None:
    """Year from ``1889``, ``"1889"``, ``"c. 1503"`` or ``"1503-19"`` (-> 1503); None when empty.

    Raises ValueError when there is text but no year in it.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if text.lower() in _NO_DATE:
        return None
    match = _YEAR_PATTERN.search(text)
    if match is None:
        raise ValueError(f"no year in {text!r}")
    return int(match.group(1))


def load_catalogue(folder: Path, name: str | None = None, metadata: Path | None = None) -> Catalogue:
    """Read the catalogue folder ``folder``; ``name`` defaults to the folder's name. ``metadata`` is a
    metadata file elsewhere or under another name (CSV, JSON list or JSON lines; file names in it relative
    to ``folder``), e.g. a WikiArt CSV."""
    root = Path(folder)
    if not root.is_dir():
        raise CatalogueError(f"catalogue folder {root} does not exist or is not a folder")
    if metadata is not None and not Path(metadata).is_file():
        raise CatalogueError(f"metadata file {metadata} does not exist")
    catalogue = Catalogue(
        name=name or root.resolve().name,
        root=root,
        entries=[],
        problems=[],
        style_labels=read_style_labels(root / CATALOGUE_INFO_FILE),
    )
    metadata = Path(metadata) if metadata is not None else _find_metadata(root)
    if metadata is None:
        _add_bare_images(catalogue)
    else:
        _add_rows(catalogue, _read_rows(metadata))
    return catalogue


def read_style_labels(path: Path) -> str | None:
    """The `style_labels` a catalogue.json declares (None without the file or the key); CatalogueError
    when the file is unreadable or the kind unknown."""
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CatalogueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, dict):
        raise CatalogueError(f"{path}: expected a JSON object")
    kind = document.get("style_labels")
    return None if kind is None else checked_style_labels(kind, str(path))


def checked_style_labels(kind: object, where: str) -> str:
    if kind not in LABEL_KINDS:
        raise CatalogueError(f"{where}: style_labels must be one of {', '.join(LABEL_KINDS)}, got {kind!r}")
    return str(kind)


def write_catalogue_info(folder: Path, style_labels: str) -> None:
    """Declares in ``folder/catalogue.json`` what the catalogue's style labels are."""
    checked_style_labels(style_labels, str(folder))
    text = json.dumps({"style_labels": style_labels}, indent=2) + "\n"
    (Path(folder) / CATALOGUE_INFO_FILE).write_text(text, encoding="utf-8")


def _find_metadata(root: Path) -> Path | None:
    for filename in METADATA_FILES:
        if (root / filename).is_file():
            return root / filename
    return None


def _read_rows(metadata: Path) -> list[dict[str, str]]:
    if metadata.suffix.lower() == ".csv":
        return read_csv_rows(metadata)
    if metadata.suffix.lower() == ".jsonl":
        return read_jsonl_rows(metadata)
    return _read_json(metadata)


def read_csv_rows(path: Path, image_keys: Iterable[str] = FILENAME_KEYS) -> list[dict[str, str]]:
    """The rows of a CSV file with a header naming one of `image_keys`, cells stripped."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        headers = [header.strip() for header in reader.fieldnames or []]
        _require_filename_column(path, headers, image_keys)
        rows = []
        for raw in reader:
            row = {
                (key or "").strip(): (value or "").strip() for key, value in raw.items() if key is not None
            }
            rows.append(row)
        return rows


def _read_json(path: Path) -> list[dict[str, str]]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CatalogueError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(document, list):
        raise CatalogueError(f"{path}: expected a JSON list of objects, got {type(document).__name__}")
    rows: list[dict[str, str]] = []
    for item in document:
        # A non-object row becomes an empty one, so it is reported (no filename) rather than fatal.
        rows.append(
            {str(key).strip(): _as_text(value) for key, value in item.items()}
            if isinstance(item, dict)
            else {}
        )
    return rows


def read_jsonl_rows(path: Path) -> list[dict[str, str]]:
    """One JSON object per line (blank lines ignored); a line that is not an object becomes an empty row,
    reported by the caller rather than fatal."""
    rows: list[dict[str, str]] = []
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                item = None
            rows.append(
                {str(key).strip(): _as_text(value) for key, value in item.items()}
                if isinstance(item, dict)
                else {}
            )
    return rows


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value).strip()


def _require_filename_column(
    path: Path, headers: Iterable[str], image_keys: Iterable[str] = FILENAME_KEYS
) -> None:
    lowered = {header.lower() for header in headers}
    keys = tuple(image_keys)
    if not lowered & set(keys):
        raise CatalogueError(f"{path}: no image column (one of {', '.join(keys)})")


def _add_rows(catalogue: Catalogue, rows: list[dict[str, str]]) -> None:
    seen_ids: set[str] = set()
    for number, row in enumerate(rows, start=1):
        try:
            entry = _entry_from_row(catalogue.root, row)
        except RowRejected as rejection:
            catalogue.problems.append(CatalogueProblem(number, rejection.filename, rejection.reason))
            continue
        if entry.id in seen_ids:
            reason = f"duplicate id {entry.id!r}"
            catalogue.problems.append(CatalogueProblem(number, entry.filename, reason))
            continue
        seen_ids.add(entry.id)
        catalogue.entries.append(entry)


class RowRejected(Exception):
    """A metadata row that cannot become an entry."""

    def __init__(self, filename: str, reason: str) -> None:
        super().__init__(reason)
        self.filename = filename
        self.reason = reason


def _entry_from_row(root: Path, row: Mapping[str, str]) -> CatalogueEntry:
    by_key = {key.lower(): value for key, value in row.items()}
    filename = next((by_key[key] for key in FILENAME_KEYS if by_key.get(key)), "")
    if not filename:
        raise RowRejected("", "no file name")
    relative = _safe_relative_path(filename)
    if relative is None:
        raise RowRejected(filename, "file name must be a relative path inside the catalogue folder")
    if not (root / relative).is_file():
        raise RowRejected(filename, "file not found")
    stem = PurePosixPath(relative).stem
    return entry_from_row(row, relative, default_id=slugify(stem), default_title=stem)


def entry_from_row(
    row: Mapping[str, str],
    filename: str,
    *,
    default_id: str,
    default_title: str,
    image_keys: Iterable[str] = FILENAME_KEYS,
) -> CatalogueEntry:
    """The entry a metadata row describes, its image at `filename` (a catalogue path or a URL): the known
    columns (case-insensitive) become fields, the others `extra`. Raises RowRejected."""
    by_key = {key.lower(): value for key, value in row.items()}
    year_text = by_key.get("year") or by_key.get("date") or ""
    try:
        year = parse_year(year_text)
    except ValueError:
        raise RowRejected(filename, f"bad year {year_text!r}") from None
    entry_id = by_key.get("id") or default_id
    if not entry_id:
        raise RowRejected(filename, "cannot derive an id from the file name")
    known = _KNOWN_KEYS | set(image_keys)
    return CatalogueEntry(
        id=entry_id,
        filename=filename,
        title=by_key.get("title") or default_title,
        artist=by_key.get("artist", ""),
        style=by_key.get("style", ""),
        genre=by_key.get("genre", ""),
        year=year,
        extra={key: value for key, value in row.items() if key.lower() not in known},
    )


def _safe_relative_path(filename: str) -> str | None:
    path = PurePosixPath(filename.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or not path.parts:
        return None
    return path.as_posix()


def _add_bare_images(catalogue: Catalogue) -> None:
    seen_ids: set[str] = set()
    for path in _iter_images(catalogue.root):
        relative = path.relative_to(catalogue.root).as_posix()
        entry_id = slugify(path.stem)
        if not entry_id or entry_id in seen_ids:
            reason = (
                "cannot derive an id from the file name" if not entry_id else f"duplicate id {entry_id!r}"
            )
            catalogue.problems.append(CatalogueProblem(None, relative, reason))
            continue
        seen_ids.add(entry_id)
        catalogue.entries.append(CatalogueEntry(id=entry_id, filename=relative, title=path.stem))


def _iter_images(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*")):
        relative_parts = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative_parts):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
            yield path


METADATA_COLUMNS = ("id", "filename", "title", "artist", "year", "style", "genre")


def write_metadata_csv(
    path: Path, entries: Iterable[CatalogueEntry], extra_columns: Iterable[str] = ()
) -> None:
    """Write ``entries`` as a metadata.csv that `load_catalogue` reads back to the same entries."""
    columns = [*METADATA_COLUMNS, *extra_columns]
    with Path(path).open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="raise")
        writer.writeheader()
        for entry in entries:
            writer.writerow(
                {
                    "id": entry.id,
                    "filename": entry.filename,
                    "title": entry.title,
                    "artist": entry.artist,
                    "year": "" if entry.year is None else entry.year,
                    "style": entry.style,
                    "genre": entry.genre,
                    **{column: entry.extra.get(column, "") for column in columns[len(METADATA_COLUMNS) :]},
                }
            )
