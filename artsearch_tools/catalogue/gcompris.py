"""Demo catalogue: every full artwork inside Debian's ``gcompris-qt-data``, with its metadata.

GCompris keeps its images in Qt resource files (``usr/share/gcompris-qt/rcc/*.rcc``). Artworks come from
three activities:

* ``paintings.rcc`` -- jigsaw puzzles. Each board (``resource/board/boardN_0.qml``) lists its pieces with
  their centres as fractions of a fixed frame, and ``qsTr("Artist, Title - year")``. The fractions are
  rounded (and on some boards a few pixels off), so the pieces are registered to the pixel against each
  other (`artsearch_tools.catalogue.reassembly`). One puzzle (Degas) ships without a board; an approximate
  layout found by inspection seeds the same registration.
* ``babyshapes.rcc`` -- a painting with white holes plus the cut-out shapes that fill them.
* ``details.rcc`` -- complete paintings (``*_background.webp``) plus small detail crops.

This module reads the boards, finds each artwork and its pieces, and writes the catalogue. Artist, title,
year, style and genre come from `artsearch_tools.catalogue.gcompris_facts`.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from artsearch.style_vote import ART
from artsearch_tools.catalogue.debian import extracted_version, fetch_deb_package
from artsearch_tools.catalogue.folder import CatalogueEntry, write_catalogue_info, write_metadata_csv
from artsearch_tools.catalogue.gcompris_facts import (
    ARTIST_ALIASES,
    ARTISTS,
    ARTWORKS,
    ArtistFacts,
    ArtworkFacts,
    ArtworkInfo,
    artwork_info,
    parse_instruction,
)
from artsearch_tools.catalogue.qt_rcc import RccArchive
from artsearch_tools.catalogue.reassembly import (
    Assembly,
    PieceSpec,
    assemble_jigsaw,
    fill_holes,
    locate_details,
)

__all__ = [
    "ARTISTS",
    "ARTIST_ALIASES",
    "ARTWORKS",
    "EXTRA_COLUMNS",
    "JPEG_QUALITY",
    "LAYOUT_HINTS",
    "LICENSE",
    "PACKAGE",
    "PIECE_KINDS",
    "RCC_DIR",
    "ArtistFacts",
    "ArtworkFacts",
    "ArtworkInfo",
    "ArtworkSource",
    "Assembly",
    "Board",
    "BoardItem",
    "PieceSpec",
    "PuzzlePiece",
    "artwork_info",
    "assemble",
    "build_gcompris_catalogue",
    "discover_artworks",
    "iter_puzzle_pieces",
    "parse_board",
    "parse_instruction",
]

log = logging.getLogger(__name__)

PACKAGE = "gcompris-qt-data"
RCC_DIR = Path("usr/share/gcompris-qt/rcc")
JPEG_QUALITY = 92
EXTRA_COLUMNS = ("source", "license")
LICENSE = "public domain (artwork); GPL-3+ (GCompris)"

PIECE_KINDS = ("jigsaw", "shape", "detail")

_PAINTINGS_RCC = "paintings.rcc"
_BABYSHAPES_RCC = "babyshapes.rcc"
_DETAILS_RCC = "details.rcc"

# Registration search radii (pixels) around the position the package gives.
_BOARD_RADIUS = 5
_LAYOUT_HINT_RADIUS = 12
_SHAPE_RADIUS = 8

# Jigsaws without a board: approximate top-left corner of each piece, read off the pieces' shapes
# (tabs and blanks); the registration moves each to the exact pixel.
LAYOUT_HINTS: dict[str, dict[str, tuple[int, int]]] = {
    "degas_class-dance": {
        "degas_class-dance_1": (0, 0),
        "degas_class-dance_2": (223, 0),
        "degas_class-dance_3": (0, 130),
        "degas_class-dance_4": (168, 130),
        "degas_class-dance_5": (0, 300),
        "degas_class-dance_6": (223, 340),
    },
}


# --------------------------------------------------------------------------------------------------
# Reading the boards
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BoardItem:
    pixmap: str
    type: str | None = None
    x: float | None = None
    y: float | None = None
    width: float | None = None
    height: float | None = None


@dataclass(frozen=True)
class Board:
    instruction: str | None
    items: tuple[BoardItem, ...]

    @property
    def background(self) -> BoardItem | None:
        return next((item for item in self.items if item.type == "SHAPE_BACKGROUND_IMAGE"), None)

    @property
    def pieces(self) -> list[BoardItem]:
        return [
            item for item in self.items if item.type is None and item.x is not None and item.y is not None
        ]


_INSTRUCTION = re.compile(r'instruction\s*:\s*qsTr\(\s*"((?:[^"\\]|\\.)*)"\s*\)')
_BLOCK = re.compile(r"\{([^{}]*)\}")
_PAIR = re.compile(r'"(\w+)"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|(-?[\d.]+))')


def parse_board(text: str) -> Board:
    """The instruction and the ``levels`` items of a GCompris babymatch board (a QML file)."""
    match = _INSTRUCTION.search(text)
    instruction = match.group(1).replace('\\"', '"') if match else None
    levels_start = text.find("levels")
    items = []
    for block in _BLOCK.finditer(text, max(levels_start, 0)):
        fields = {
            pair.group(1): pair.group(2) if pair.group(2) is not None else pair.group(3)
            for pair in _PAIR.finditer(block.group(1))
        }
        if "pixmapfile" not in fields:
            continue
        items.append(
            BoardItem(
                pixmap=fields["pixmapfile"],
                type=fields.get("type"),
                x=_number(fields.get("x")),
                y=_number(fields.get("y")),
                width=_number(fields.get("width")),
                height=_number(fields.get("height")),
            )
        )
    return Board(instruction=instruction, items=tuple(items))


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text not in (None, "") else None
    except ValueError:
        return None


# --------------------------------------------------------------------------------------------------
# Where each artwork comes from
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtworkSource:
    key: str
    rcc: str
    origin: str  # resource path cited in the catalogue's `source` column
    instruction: str | None
    piece_kind: str  # jigsaw | shape | detail
    pieces: tuple[PieceSpec, ...]
    background: np.ndarray | None = None  # RGB image for shape and detail boards
    layout_is_hint: bool = False


class _Resources:
    """The files of the rcc archives the catalogue needs, read once."""

    def __init__(self, rcc_dir: Path) -> None:
        self._files: dict[str, dict[str, bytes]] = {}
        for name in (_PAINTINGS_RCC, _BABYSHAPES_RCC, _DETAILS_RCC):
            path = rcc_dir / name
            if not path.is_file():
                raise FileNotFoundError(f"{path} not found: is {PACKAGE} extracted at {rcc_dir.parents[3]}?")
            self._files[name] = dict(RccArchive.open(path).files())

    def files(self, rcc: str) -> dict[str, bytes]:
        return self._files[rcc]

    def image(self, rcc: str, path: str, mode: str) -> np.ndarray:
        with Image.open(io.BytesIO(self._files[rcc][path])) as image:
            return np.asarray(image.convert(mode))


def _activity_root(rcc: str) -> str:
    return f"gcompris/src/activities/{rcc.removesuffix('.rcc')}/resource/"


def _boards(resources: _Resources, rcc: str) -> Iterator[tuple[str, Board]]:
    prefix = _activity_root(rcc) + "board/"
    for path in sorted(resources.files(rcc), key=_natural_key):
        if path.startswith(prefix) and path.endswith(".qml"):
            yield path, parse_board(resources.files(rcc)[path].decode("utf-8"))


def _natural_key(text: str) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _stem(pixmap: str) -> str:
    return Path(pixmap).stem


_PIECE_SUFFIX = re.compile(r"^(?P<key>.+?)[_-](?:[a-e]\d|\d+)$")


def _jigsaw_key(stems: Iterable[str]) -> str:
    stems = list(stems)
    keys = {match.group("key") for match in map(_PIECE_SUFFIX.match, stems) if match}
    if len(keys) != 1:
        raise ValueError(f"cannot name the painting of pieces {stems[:3]}...")
    return keys.pop()


def _jigsaw_sources(resources: _Resources) -> Iterator[ArtworkSource]:
    root = _activity_root(_PAINTINGS_RCC)
    used: set[str] = set()
    for path, board in _boards(resources, _PAINTINGS_RCC):
        frame = board.background
        if frame is None or frame.width is None or frame.height is None or not board.pieces:
            continue
        pieces = []
        for item in board.pieces:
            resource = root + item.pixmap
            rgba = resources.image(_PAINTINGS_RCC, resource, "RGBA")
            centre = (item.x * frame.width, item.y * frame.height)
            pieces.append(
                PieceSpec(resource, rgba, (centre[0] - rgba.shape[1] / 2, centre[1] - rgba.shape[0] / 2))
            )
            used.add(resource)
        key = _jigsaw_key(_stem(piece.resource) for piece in pieces)
        yield ArtworkSource(key, _PAINTINGS_RCC, path, board.instruction, "jigsaw", tuple(pieces))
    yield from _boardless_jigsaw_sources(resources, used)


def _boardless_jigsaw_sources(resources: _Resources, used: set[str]) -> Iterator[ArtworkSource]:
    image_dir = _activity_root(_PAINTINGS_RCC) + "image/"
    leftovers: dict[str, list[str]] = {}
    for path in resources.files(_PAINTINGS_RCC):
        if path.startswith(image_dir) and path.endswith(".webp") and path not in used:
            match = _PIECE_SUFFIX.match(_stem(path))
            if match:
                leftovers.setdefault(match.group("key"), []).append(path)
    for key, paths in sorted(leftovers.items()):
        hints = LAYOUT_HINTS.get(key)
        if hints is None or set(hints) != {_stem(path) for path in paths}:
            log.warning("%s: %d puzzle pieces without a board or a layout hint; skipped", key, len(paths))
            continue
        pieces = tuple(
            PieceSpec(path, resources.image(_PAINTINGS_RCC, path, "RGBA"), hints[_stem(path)])
            for path in sorted(paths, key=_natural_key)
        )
        origin = f"{image_dir}{key}_*.webp"
        yield ArtworkSource(key, _PAINTINGS_RCC, origin, None, "jigsaw", pieces, layout_is_hint=True)


def _background_sources(
    resources: _Resources, rcc: str, boards: Iterable[str] | None
) -> Iterator[ArtworkSource]:
    root = _activity_root(rcc)
    wanted = set(boards) if boards is not None else None
    for path, board in _boards(resources, rcc):
        background = board.background
        if background is None or not background.pixmap.endswith("_background.webp"):
            continue
        if wanted is not None and path not in wanted:
            continue
        background_path = root + background.pixmap
        rgb = resources.image(rcc, background_path, "RGB")
        height, width = rgb.shape[:2]
        pieces = []
        for item in board.pieces:
            resource = root + item.pixmap
            rgba = resources.image(rcc, resource, "RGBA")
            guess = (item.x * width - rgba.shape[1] / 2, item.y * height - rgba.shape[0] / 2)
            pieces.append(PieceSpec(resource, rgba, guess))
        key = _stem(background.pixmap).removesuffix("_background")
        kind = "shape" if rcc == _BABYSHAPES_RCC else "detail"
        origin = path if kind == "shape" else background_path
        yield ArtworkSource(key, rcc, origin, board.instruction, kind, tuple(pieces), background=rgb)


def _painting_boards_of_details(resources: _Resources) -> list[str]:
    """The details boards that show paintings: the level set whose objective mentions paintings."""
    boards: list[str] = []
    for path, content in resources.files(_DETAILS_RCC).items():
        if path.endswith("/Data.qml"):
            text = content.decode("utf-8")
            if re.search(r'objective\s*:\s*qsTr\("[^"]*painting', text, re.IGNORECASE):
                boards += [url.removeprefix("qrc:/") for url in re.findall(r'"(qrc:/[^"]+\.qml)"', text)]
    return boards


def discover_artworks(extracted_root: Path) -> list[ArtworkSource]:
    """Every full artwork in the extracted package, with the pieces that go with it."""
    resources = _Resources(Path(extracted_root) / RCC_DIR)
    return [
        *_jigsaw_sources(resources),
        *_background_sources(resources, _BABYSHAPES_RCC, boards=None),
        *_background_sources(resources, _DETAILS_RCC, boards=_painting_boards_of_details(resources)),
    ]


# --------------------------------------------------------------------------------------------------
# Putting each artwork back together
# --------------------------------------------------------------------------------------------------


def assemble(source: ArtworkSource) -> Assembly:
    """The artwork put back together, searching as far as the package's positions may be off."""
    if source.piece_kind == "jigsaw":
        radius = _LAYOUT_HINT_RADIUS if source.layout_is_hint else _BOARD_RADIUS
        return assemble_jigsaw(source.pieces, radius)
    if source.background is None:
        raise ValueError(f"{source.key}: a {source.piece_kind} board without a background image")
    if source.piece_kind == "shape":
        return fill_holes(source.background, source.pieces, _SHAPE_RADIUS)
    return locate_details(source.background, source.pieces, _SHAPE_RADIUS)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PuzzlePiece:
    painting_id: str
    kind: str  # jigsaw (puzzle piece), shape (cut-out from the painting) or detail (small crop)
    resource: str  # "<rcc>/<path inside it>"
    image: Image.Image  # RGBA, as the package stores it
    box: tuple[int, int, int, int] | None  # where it lies in the catalogue's painting (may overhang)


def iter_puzzle_pieces(extracted_root: Path, kinds: Iterable[str] = PIECE_KINDS) -> Iterator[PuzzlePiece]:
    """Every piece, shape and detail crop of the catalogue's paintings, with where it belongs."""
    wanted = set(kinds)
    unknown = wanted - set(PIECE_KINDS)
    if unknown:
        raise ValueError(f"unknown piece kinds {sorted(unknown)}; choose from {PIECE_KINDS}")
    for source in discover_artworks(extracted_root):
        if source.piece_kind not in wanted or not source.pieces:
            continue
        info = artwork_info(source.key, source.instruction)
        assembly = assemble(source)
        for piece, box in zip(source.pieces, assembly.boxes, strict=True):
            yield PuzzlePiece(
                painting_id=info.id,
                kind=source.piece_kind,
                resource=f"{source.rcc}/{piece.resource}",
                image=Image.fromarray(piece.rgba),
                box=box,
            )


def build_gcompris_catalogue(output: Path, cache_dir: Path) -> list[CatalogueEntry]:
    """Extract every artwork of gcompris-qt-data into ``output/<id>.jpg`` plus ``output/metadata.csv``."""
    extracted = fetch_deb_package(PACKAGE, Path(cache_dir))
    version = extracted_version(extracted, PACKAGE) or "unknown version"
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    entries: list[CatalogueEntry] = []
    for source in discover_artworks(extracted):
        info = artwork_info(source.key, source.instruction)
        if any(entry.id == info.id for entry in entries):
            raise ValueError(f"two artworks map to the id {info.id!r}")
        assembly = assemble(source)
        if assembly.filled_pixels:
            log.info("%s: inpainted %d uncovered pixels", info.id, assembly.filled_pixels)
        filename = f"{info.id}.jpg"
        Image.fromarray(assembly.image).save(
            output / filename, "JPEG", quality=JPEG_QUALITY, subsampling=0, optimize=True
        )
        entries.append(
            CatalogueEntry(
                id=info.id,
                filename=filename,
                title=info.title,
                artist=info.artist,
                style=info.style,
                genre=info.genre,
                year=info.year,
                extra={
                    "source": f"Debian {PACKAGE} {version}, {source.rcc}/{source.origin}",
                    "license": LICENSE,
                },
            )
        )
    write_metadata_csv(output / "metadata.csv", entries, extra_columns=EXTRA_COLUMNS)
    write_catalogue_info(output, ART)  # the styles are art-historical (gcompris_facts)
    return entries
