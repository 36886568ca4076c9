"""Demo catalogue: every full artwork inside Debian's ``gcompris-qt-data``, with its metadata.

GCompris keeps its images in Qt resource files (``usr/share/gcompris-qt/rcc/*.rcc``). Artworks come from
three activities:

* ``paintings.rcc`` -- jigsaw puzzles. Each board (``resource/board/boardN_0.qml``) lists its pieces with
  their centres as fractions of a fixed frame, and ``qsTr("Artist, Title - year")``. The fractions are
  rounded (and on some boards a few pixels off), so every pair of neighbouring pieces is registered to
  the pixel where the two meet (no gap between them, matching colours where they overlap); a spanning
  tree of the most confident pairs places the pieces, and single-pixel moves against all pairs at once
  settle what flat areas leave ambiguous. One puzzle (Degas) ships without a board; an approximate
  layout found by inspection seeds the same registration.
* ``babyshapes.rcc`` -- a painting with white holes plus the cut-out shapes that fill them. Each shape
  is placed where its mask best fits a hole; the thin ring the holes leave around a shape is inpainted.
* ``details.rcc`` -- complete paintings (``*_background.webp``) plus small detail crops.

Artist, title and year are parsed from the package's own ``qsTr`` strings and then normalised (full
artist names, a few typos, years outside the artist's lifetime dropped); style and genre come from a
small curated table of art-historical facts.
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

from artsearch.catalogue.debian import extracted_version, fetch_deb_package
from artsearch.catalogue.folder import CatalogueEntry, slugify, write_metadata_csv
from artsearch.catalogue.qt_rcc import RccArchive

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
_MIN_PAIR_OVERLAP = 40  # overlapping opaque pixels needed to trust a pair's colour comparison
_MAX_PAIR_COST = 15.0  # a correct seam costs ~2-6 (mean absolute colour difference, 0..255)
_GAP_WEIGHT = 10.0
_MISFIT_COST = 30.0  # an offset outside a pair's search window, or one where the pair barely touches
_REFINE_SWEEPS = 10
_GUESS_PULL = 0.5
_MAX_DETAIL_SCORE = 12.0
_OPAQUE = 128
_WHITE = 235  # babyshapes holes are pure white
_HOLE_RIM = 4  # how far the holes' blurred edge reaches beyond the white
_MAX_EDGE_TRIM = 3


# --------------------------------------------------------------------------------------------------
# Curated facts
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArtistFacts:
    short: str  # used in ids: "hokusai-the-great-wave-off-kanagawa"
    style: str
    born: int
    died: int


ARTISTS: dict[str, ArtistFacts] = {
    "Albrecht Dürer": ArtistFacts("durer", "Northern Renaissance", 1471, 1528),
    "Ambrosius Bosschaert the Elder": ArtistFacts("bosschaert", "Baroque", 1573, 1621),
    "Edgar Degas": ArtistFacts("degas", "Impressionism", 1834, 1917),
    "Frédéric Bazille": ArtistFacts("bazille", "Impressionism", 1841, 1870),
    "Giovanni Bellini": ArtistFacts("bellini", "Early Renaissance", 1430, 1516),
    "Giuseppe Arcimboldo": ArtistFacts("arcimboldo", "Mannerism", 1526, 1593),
    "Katsushika Hokusai": ArtistFacts("hokusai", "Ukiyo-e", 1760, 1849),
    "Leonardo da Vinci": ArtistFacts("leonardo", "High Renaissance", 1452, 1519),
    "Mary Cassatt": ArtistFacts("cassatt", "Impressionism", 1844, 1926),
    "Michelangelo Buonarroti": ArtistFacts("michelangelo", "High Renaissance", 1475, 1564),
    "Paul Gauguin": ArtistFacts("gauguin", "Post-Impressionism", 1848, 1903),
    "Pierre-Auguste Renoir": ArtistFacts("renoir", "Impressionism", 1841, 1919),
    "Pieter Bruegel the Elder": ArtistFacts("bruegel", "Northern Renaissance", 1525, 1569),
    "Utagawa Hiroshige": ArtistFacts("hiroshige", "Ukiyo-e", 1797, 1858),
    "Vincent van Gogh": ArtistFacts("van-gogh", "Post-Impressionism", 1853, 1890),
    "Wassily Kandinsky": ArtistFacts("kandinsky", "Abstract art", 1866, 1944),
}

# How the package spells some artists (typos, surnames only) -> the full name.
ARTIST_ALIASES = {
    "Bazille": "Frédéric Bazille",
    "Katsushika Hokusa": "Katsushika Hokusai",
    "Michelangelo": "Michelangelo Buonarroti",
    "Pieter Brugel": "Pieter Bruegel the Elder",
    "Vincent Van Gogh": "Vincent van Gogh",
}


@dataclass(frozen=True)
class ArtworkFacts:
    genre: str
    style: str | None = None  # when the artist's usual style does not describe the work (or no artist)
    title: str | None = None  # corrects the package's title
    year: int | None = None  # corrects the package's year
    instruction: str | None = None  # replaces a missing or unparseable qsTr string


# Keyed by the GCompris image stem (piece prefix or background name without "_background").
ARTWORKS: dict[str, ArtworkFacts] = {
    # paintings.rcc jigsaws
    "renoir-moulin_de_la_galette": ArtworkFacts("genre painting"),
    "Arcimboldo_Spring": ArtworkFacts("portrait"),
    "Arcimboldo_Librarian": ArtworkFacts("portrait"),
    "HokusaiOiranKamuro": ArtworkFacts("portrait"),
    "HokusaiWomanHoldingFan": ArtworkFacts("portrait", title="Woman Holding a Fan"),
    "EjiriSuruga": ArtworkFacts("landscape"),
    # The package says 1823-1829; the print was published c. 1830-32.
    "GreatWave": ArtworkFacts("marina", year=1831),
    "HiroshigeInokashiraSnow": ArtworkFacts("landscape"),
    "HiroshigeHorsePrawns": ArtworkFacts("still life"),
    "HokusaiBridge": ArtworkFacts("landscape"),
    "HokusaiPoppies": ArtworkFacts("flower painting"),
    "KazusaSeaRoute": ArtworkFacts("marina", title="The Kazusa Sea Route"),
    "Michelangelo_Pieta": ArtworkFacts("sculpture", title="Pietà"),
    "MonaLisa": ArtworkFacts("portrait"),
    "PalaDiPesaro": ArtworkFacts("religious painting", title="Pesaro Altarpiece (La Pala di Pesaro)"),
    "AlbrechtDurer": ArtworkFacts("animal painting"),
    "PieterBruegel": ArtworkFacts("landscape"),
    "renoir-filles_piano": ArtworkFacts("genre painting", title="Girls at the Piano"),
    "kandinky": ArtworkFacts("abstract"),
    "bazille_rampart": ArtworkFacts("landscape"),
    "cassat_summertime": ArtworkFacts("genre painting"),
    "gogh_auvert": ArtworkFacts("cityscape"),
    # Its pieces ship without a board, so no qsTr string either.
    "degas_class-dance": ArtworkFacts(
        "genre painting", instruction="Edgar Degas, The Dance Class - 1873-1876"
    ),
    # babyshapes.rcc
    "Paul_Gauguin_006": ArtworkFacts("genre painting"),
    "Pieter_Bruegel": ArtworkFacts("genre painting", title="The Peasant Wedding"),
    "Bosschaert_04": ArtworkFacts("flower painting"),
    # A tapestry: designed in Paris, woven in Flanders, c. 1500; the package gives no artist.
    "lady_unicorn": ArtworkFacts(
        "tapestry", style="Late Gothic", instruction="Anonymous, The Lady and the Unicorn - 1500"
    ),
    "Van_Gogh_0011": ArtworkFacts("interior"),
    # details.rcc
    "VincentVanGogh0012": ArtworkFacts("interior"),
    "VincentVanGoghBridge": ArtworkFacts(
        "landscape", title="The Langlois Bridge at Arles with a Lady with an Umbrella"
    ),
    "Eglise_dAuvers-sur-Oise": ArtworkFacts("cityscape"),
    "VincentVanGogh0013": ArtworkFacts("self-portrait", title="The Painter on His Way to Work"),
    "VincentVanGogh0019": ArtworkFacts("landscape"),
    "Gogh4": ArtworkFacts("cityscape", title="Café Terrace at Night"),
    "Van_Gogh_The_Night_Cafe": ArtworkFacts("interior"),
    "PortraitOfPereTanguy": ArtworkFacts("portrait", title="Portrait of Père Tanguy"),
}

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


@dataclass(frozen=True)
class ArtworkInfo:
    id: str
    title: str
    artist: str
    year: int | None
    style: str
    genre: str


def parse_instruction(text: str) -> tuple[str, str, int | None]:
    """Split GCompris's ``"Artist, Title - 1503-19"`` into ``(artist, title, 1503)``."""
    artist, _, rest = text.partition(", ")
    if not rest:
        artist, rest = "", text
    match = re.match(r"^(?P<title>.*?)(?:\s+-\s*|\s+)(?P<year>\d{4})(?:\s*-\s*\d{1,4})?\.?\s*$", rest)
    if match is None:
        return artist.strip(), rest.strip().rstrip("."), None
    return artist.strip(), match.group("title").strip(), int(match.group("year"))


def artwork_info(key: str, instruction: str | None) -> ArtworkInfo:
    facts = ARTWORKS.get(key, ArtworkFacts(genre=""))
    text = facts.instruction or instruction
    if not text:
        raise ValueError(f"{key}: no artist/title string in the package and none curated")
    raw_artist, raw_title, raw_year = parse_instruction(text)
    artist = ARTIST_ALIASES.get(raw_artist, raw_artist) or "Anonymous"
    title = facts.title or raw_title
    artist_facts = ARTISTS.get(artist)
    style = facts.style or (artist_facts.style if artist_facts else "")
    if not style:
        log.warning("%s: no curated style for artist %r", key, artist)
    year = facts.year if facts.year is not None else raw_year
    if year is not None and artist_facts is not None and not artist_facts.born < year <= artist_facts.died:
        # e.g. the package dates a Hiroshige print 1760-70, decades before he was born.
        log.info("%s: dropping year %s, outside %s's lifetime", key, year, artist)
        year = None
    short = artist_facts.short if artist_facts else slugify(artist.split()[-1])
    return ArtworkInfo(
        id=f"{short}-{slugify(title)}",
        title=title,
        artist=artist,
        year=year,
        style=style,
        genre=facts.genre,
    )


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
class PieceSpec:
    resource: str  # path inside the rcc file
    rgba: np.ndarray  # H x W x 4, uint8
    guess: tuple[float, float]  # estimated top-left corner, in the painting's pixels

    @property
    def mask(self) -> np.ndarray:
        return self.rgba[..., 3] >= _OPAQUE

    @property
    def size(self) -> tuple[int, int]:
        return self.rgba.shape[1], self.rgba.shape[0]


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
# Reassembly
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Assembly:
    image: np.ndarray  # H x W x 3 uint8
    boxes: tuple[tuple[int, int, int, int] | None, ...]  # per piece: left, top, right, bottom (or None)
    filled_pixels: int  # pixels no piece covered, inpainted


def assemble(source: ArtworkSource) -> Assembly:
    if source.piece_kind == "jigsaw":
        radius = _LAYOUT_HINT_RADIUS if source.layout_is_hint else _BOARD_RADIUS
        return _assemble_jigsaw(source.pieces, radius)
    if source.background is None:
        raise ValueError(f"{source.key}: a {source.piece_kind} board without a background image")
    if source.piece_kind == "shape":
        return _fill_holes(source.background, source.pieces)
    return _locate_details(source.background, source.pieces)


def _assemble_jigsaw(pieces: tuple[PieceSpec, ...], radius: int) -> Assembly:
    offsets = _register_jigsaw(pieces, radius)
    left = min(x for x, _ in offsets)
    top = min(y for _, y in offsets)
    offsets = [(x - left, y - top) for x, y in offsets]
    width = max(x + piece.size[0] for (x, _), piece in zip(offsets, pieces, strict=True))
    height = max(y + piece.size[1] for (_, y), piece in zip(offsets, pieces, strict=True))
    canvas, covered = _compose(pieces, offsets, (height, width))
    (x0, y0, x1, y1) = _trim_ragged_edges(covered)
    canvas, covered = canvas[y0:y1, x0:x1], covered[y0:y1, x0:x1]
    holes = ~covered
    image = _inpaint(canvas, holes) if holes.any() else canvas
    boxes = tuple(
        (x - x0, y - y0, x - x0 + piece.size[0], y - y0 + piece.size[1])
        for (x, y), piece in zip(offsets, pieces, strict=True)
    )
    return Assembly(image=image, boxes=boxes, filled_pixels=int(holes.sum()))


_SEAM_PAD = 2


@dataclass(frozen=True)
class _SeamView:
    """A piece padded by a margin, with its mask grown by that margin, for comparing seams."""

    mask: np.ndarray
    grown: np.ndarray
    rgb: np.ndarray  # int16, so differences do not wrap
    shaped: bool  # has transparent parts (a jigsaw piece rather than a rectangle)

    @classmethod
    def of(cls, piece: PieceSpec) -> _SeamView:
        mask = np.pad(piece.mask, _SEAM_PAD)
        rgb = np.pad(
            piece.rgba[..., :3].astype(np.int16), ((_SEAM_PAD, _SEAM_PAD), (_SEAM_PAD, _SEAM_PAD), (0, 0))
        )
        return cls(mask=mask, grown=_dilate(mask, _SEAM_PAD), rgb=rgb, shaped=not piece.mask.all())


@dataclass(frozen=True)
class _PairFit:
    """How well piece `second` fits against piece `first` at each relative offset tried."""

    first: int
    second: int
    costs: dict[tuple[int, int], float]  # top-left of `second` minus top-left of `first` -> cost

    @property
    def best(self) -> tuple[int, int]:
        return min(self.costs, key=self.costs.__getitem__)

    @property
    def confidence(self) -> float:
        ranked = sorted(self.costs.values())
        return (ranked[1] if len(ranked) > 1 else _MAX_PAIR_COST) - ranked[0]

    def cost(self, offset: tuple[int, int]) -> float:
        return self.costs.get(offset, _MISFIT_COST)


def _register_jigsaw(pieces: tuple[PieceSpec, ...], radius: int) -> list[tuple[int, int]]:
    """Integer top-left corners that make neighbouring pieces meet without gaps and agree where they overlap.

    Every pair of neighbours is fitted on its own; a spanning tree of the most confident fits gives a first
    layout, which is then improved piece by piece against all fits at once (a flat area can leave a single
    fit ambiguous by a pixel, the loop of fits around it is not).
    """
    guesses = [(round(piece.guess[0]), round(piece.guess[1])) for piece in pieces]
    views = [_SeamView.of(piece) for piece in pieces]
    fits = []
    for first in range(len(pieces)):
        for second in range(first + 1, len(pieces)):
            # Plain rectangles just abut: there is no overlap to compare, the rounded guess is exact.
            if not (views[first].shaped and views[second].shaped):
                continue
            if not _may_touch(pieces[first], pieces[second], radius):
                continue
            relative = (guesses[second][0] - guesses[first][0], guesses[second][1] - guesses[first][1])
            costs = _fit_pair(views[first], views[second], relative, radius)
            if costs is not None:
                fits.append(_PairFit(first, second, costs))
    positions = _place_by_spanning_tree(len(pieces), fits, guesses)
    return _refine_positions(positions, fits)


def _may_touch(first: PieceSpec, second: PieceSpec, radius: int) -> bool:
    """Whether the two pieces' boxes, at the package's positions, come within `radius` of each other."""
    (x_a, y_a), (w_a, h_a) = first.guess, first.size
    (x_b, y_b), (w_b, h_b) = second.guess, second.size
    return (
        x_a - radius < x_b + w_b
        and x_b - radius < x_a + w_a
        and y_a - radius < y_b + h_b
        and y_b - radius < y_a + h_a
    )


def _fit_pair(
    first: _SeamView, second: _SeamView, relative: tuple[int, int], radius: int
) -> dict[tuple[int, int], float] | None:
    """The cost of each offset of `second` within `radius` of `relative`; None when no offset fits.

    The cost of an offset is the mean colour difference where the two pieces overlap, plus the pixels
    left uncovered between them (relative to the overlap), plus a small pull towards the package's own
    positions, which decides between offsets that flat areas (sky, paper) cannot tell apart.
    """
    costs: dict[tuple[int, int], float] = {}
    height_a, width_a = first.mask.shape
    height_b, width_b = second.mask.shape
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            ox, oy = relative[0] + dx, relative[1] + dy
            x0, y0 = max(0, ox), max(0, oy)
            x1, y1 = min(width_a, ox + width_b), min(height_a, oy + height_b)
            if x0 >= x1 or y0 >= y1:
                continue
            in_a = (slice(y0, y1), slice(x0, x1))
            in_b = (slice(y0 - oy, y1 - oy), slice(x0 - ox, x1 - ox))
            mask_a, mask_b = first.mask[in_a], second.mask[in_b]
            overlap = mask_a & mask_b
            count = int(overlap.sum())
            if count < _MIN_PAIR_OVERLAP:
                continue
            gap = int((first.grown[in_a] & second.grown[in_b] & ~mask_a & ~mask_b).sum())
            colour = float(np.abs(first.rgb[in_a][overlap] - second.rgb[in_b][overlap]).mean())
            costs[(ox, oy)] = colour + _GAP_WEIGHT * gap / count + _GUESS_PULL * (abs(dx) + abs(dy))
    if not costs:
        return None
    best = min(costs, key=costs.__getitem__)
    # A best fit on the rim of the search window is a diagonal neighbour or a flat area sliding: unusable.
    if costs[best] > _MAX_PAIR_COST or radius in (abs(best[0] - relative[0]), abs(best[1] - relative[1])):
        return None
    return costs


def _place_by_spanning_tree(
    count: int, fits: list[_PairFit], guesses: list[tuple[int, int]]
) -> list[tuple[int, int]]:
    parent = list(range(count))

    def find(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    neighbours: dict[int, list[tuple[int, tuple[int, int]]]] = {node: [] for node in range(count)}
    for fit in sorted(fits, key=lambda fit: fit.confidence, reverse=True):
        root_a, root_b = find(fit.first), find(fit.second)
        if root_a == root_b:
            continue
        parent[root_a] = root_b
        offset = fit.best
        neighbours[fit.first].append((fit.second, offset))
        neighbours[fit.second].append((fit.first, (-offset[0], -offset[1])))
    positions: dict[int, tuple[int, int]] = {}
    for start in range(count):
        if start in positions:
            continue
        component = _walk_tree(start, neighbours)
        # A component floats freely: anchor it where the package's guesses put it on average.
        shift_x = round(float(np.mean([guesses[node][0] - x for node, (x, _) in component.items()])))
        shift_y = round(float(np.mean([guesses[node][1] - y for node, (_, y) in component.items()])))
        for node, (x, y) in component.items():
            positions[node] = (x + shift_x, y + shift_y)
    return [positions[node] for node in range(count)]


def _walk_tree(
    start: int, neighbours: dict[int, list[tuple[int, tuple[int, int]]]]
) -> dict[int, tuple[int, int]]:
    placed = {start: (0, 0)}
    stack = [start]
    while stack:
        node = stack.pop()
        for other, (dx, dy) in neighbours[node]:
            if other not in placed:
                placed[other] = (placed[node][0] + dx, placed[node][1] + dy)
                stack.append(other)
    return placed


def _refine_positions(positions: list[tuple[int, int]], fits: list[_PairFit]) -> list[tuple[int, int]]:
    """Move single pieces by a pixel or two while that lowers the summed cost of all fits."""
    positions = list(positions)
    fits_of: dict[int, list[_PairFit]] = {node: [] for node in range(len(positions))}
    for fit in fits:
        fits_of[fit.first].append(fit)
        fits_of[fit.second].append(fit)

    def local_cost(node: int, position: tuple[int, int]) -> float:
        total = 0.0
        for fit in fits_of[node]:
            first = position if fit.first == node else positions[fit.first]
            second = position if fit.second == node else positions[fit.second]
            total += fit.cost((second[0] - first[0], second[1] - first[1]))
        return total

    for _ in range(_REFINE_SWEEPS):
        moved = False
        for node in range(len(positions)):
            if not fits_of[node]:
                continue
            x, y = positions[node]
            candidates = [(x + dx, y + dy) for dy in range(-2, 3) for dx in range(-2, 3)]
            best = min(candidates, key=lambda candidate: (local_cost(node, candidate), candidate != (x, y)))
            if best != (x, y):
                positions[node] = best
                moved = True
        if not moved:
            break
    return positions


def _compose(
    pieces: Iterable[PieceSpec], offsets: list[tuple[int, int]], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Paint every pixel from the piece it lies deepest inside (edges of pieces are the least reliable)."""
    canvas = np.zeros((*shape, 3), np.uint8)
    best_depth = np.zeros(shape, np.int16)
    for piece, (x, y) in zip(pieces, offsets, strict=True):
        width, height = piece.size
        region = (slice(y, y + height), slice(x, x + width))
        depth = _depth(piece.mask)
        better = depth > best_depth[region]
        canvas[region][better] = piece.rgba[..., :3][better]
        best_depth[region][better] = depth[better]
    return canvas, best_depth > 0


def _depth(mask: np.ndarray, levels: int = 4) -> np.ndarray:
    """Per pixel, how many erosions (up to `levels`) it survives: 0 outside the mask."""
    depth = np.zeros(mask.shape, np.int16)
    current = mask.copy()
    for _ in range(levels):
        depth += current
        current = _erode(current)
    return depth


def _erode(mask: np.ndarray) -> np.ndarray:
    padded = np.pad(mask, 1, constant_values=False)
    return mask & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]


def _dilate(mask: np.ndarray, steps: int = 1) -> np.ndarray:
    for _ in range(steps):
        padded = np.pad(mask, 1, constant_values=False)
        mask = mask | padded[:-2, 1:-1] | padded[2:, 1:-1] | padded[1:-1, :-2] | padded[1:-1, 2:]
    return mask


def _trim_ragged_edges(covered: np.ndarray) -> tuple[int, int, int, int]:
    """Drop up to a few outer rows/columns that pieces do not fully cover (pieces differ by a pixel)."""
    height, width = covered.shape
    top, bottom, left, right = 0, height, 0, width
    for _ in range(_MAX_EDGE_TRIM):
        if not covered[top, left:right].all():
            top += 1
        if not covered[bottom - 1, left:right].all():
            bottom -= 1
        if not covered[top:bottom, left].all():
            left += 1
        if not covered[top:bottom, right - 1].all():
            right -= 1
    return left, top, right, bottom


def _inpaint(image: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Fill `unknown` pixels from the outside in with the mean of their known 8-neighbours."""
    result = image.astype(np.float32)
    known = ~unknown
    height, width = unknown.shape
    while not known.all():
        padded_values = np.pad(result * known[..., None], ((1, 1), (1, 1), (0, 0)))
        padded_known = np.pad(known, 1).astype(np.float32)
        total = np.zeros_like(result)
        count = np.zeros(unknown.shape, np.float32)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                if dy == dx == 0:
                    continue
                window = (slice(1 + dy, 1 + dy + height), slice(1 + dx, 1 + dx + width))
                total += padded_values[window]
                count += padded_known[window]
        frontier = ~known & (count > 0)
        if not frontier.any():
            break  # nothing known at all: leave the rest as it is
        result[frontier] = total[frontier] / count[frontier][:, None]
        known = known | frontier
    return np.clip(np.rint(result), 0, 255).astype(np.uint8)


def _fill_holes(background: np.ndarray, pieces: tuple[PieceSpec, ...]) -> Assembly:
    """Put each cut-out shape back into its white hole, then inpaint the hole's leftover rim."""
    canvas = background.copy()
    height, width = canvas.shape[:2]
    white = (background >= _WHITE).all(axis=2)
    covered = np.zeros((height, width), bool)
    boxes = []
    for piece in pieces:
        x, y = _best_hole_fit(piece, white, _SHAPE_RADIUS)
        piece_region, canvas_region = _clip(piece.size, (x, y), (width, height))
        mask = piece.mask[piece_region]
        canvas[canvas_region][mask] = piece.rgba[..., :3][piece_region][mask]
        covered[canvas_region] |= mask
        boxes.append((x, y, x + piece.size[0], y + piece.size[1]))
    holes = _reconstruct(seed=white & covered, within=white)
    # The holes' soft, light rim just outside the white, where no shape covered it.
    leftover = _dilate(holes, _HOLE_RIM) & ~covered
    image = _inpaint(canvas, leftover) if leftover.any() else canvas
    return Assembly(image=image, boxes=tuple(boxes), filled_pixels=int(leftover.sum()))


def _best_hole_fit(piece: PieceSpec, white: np.ndarray, radius: int) -> tuple[int, int]:
    height, width = white.shape
    guess = (round(piece.guess[0]), round(piece.guess[1]))
    best: tuple[int, tuple[int, int]] | None = None
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            position = (guess[0] + dx, guess[1] + dy)
            piece_region, canvas_region = _clip(piece.size, position, (width, height))
            mask = piece.mask[piece_region]
            hole = white[canvas_region]
            # Reward hole pixels the shape covers, penalise painted pixels it would hide.
            score = int((mask & hole).sum()) - int((mask & ~hole).sum())
            if best is None or score > best[0]:
                best = (score, position)
    assert best is not None
    return best[1]


def _clip(
    size: tuple[int, int], position: tuple[int, int], canvas_size: tuple[int, int]
) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Matching slices of a piece of `size` at `position` and of the canvas, clipped to the canvas."""
    (width, height), (x, y), (canvas_width, canvas_height) = size, position, canvas_size
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, canvas_width), min(y + height, canvas_height)
    x1, y1 = max(x1, x0), max(y1, y0)
    return (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)), (slice(y0, y1), slice(x0, x1))


def _reconstruct(seed: np.ndarray, within: np.ndarray) -> np.ndarray:
    """The parts of `within` connected to `seed` (morphological reconstruction by dilation)."""
    current = seed & within
    while True:
        grown = _dilate(current) & within
        if (grown == current).all():
            return current
        current = grown


def _locate_details(background: np.ndarray, pieces: tuple[PieceSpec, ...]) -> Assembly:
    """The painting is complete; find where each detail crop sits in it (None if it is not an exact crop)."""
    boxes = tuple(_locate_detail(background, piece, _SHAPE_RADIUS) for piece in pieces)
    return Assembly(image=background, boxes=boxes, filled_pixels=0)


def _locate_detail(background: np.ndarray, piece: PieceSpec, radius: int) -> tuple[int, int, int, int] | None:
    width, height = piece.size
    x, y = round(piece.guess[0]) - radius, round(piece.guess[1]) - radius
    # Every candidate window at once; outside the painting counts as a total mismatch.
    region = np.full((height + 2 * radius, width + 2 * radius, 3), 10_000, np.int32)
    piece_region, canvas_region = _clip(region.shape[1::-1], (x, y), background.shape[1::-1])
    region[piece_region] = background[canvas_region]
    windows = np.lib.stride_tricks.sliding_window_view(region, (height, width, 3))[:, :, 0]
    mask = piece.mask
    difference = np.abs(windows - piece.rgba[..., :3].astype(np.int32)).sum(axis=-1)
    scores = (difference * mask).sum(axis=(-2, -1)) / (3 * max(int(mask.sum()), 1))
    dy, dx = np.unravel_index(int(np.argmin(scores)), scores.shape)
    if scores[dy, dx] > _MAX_DETAIL_SCORE:
        return None
    return (x + int(dx), y + int(dy), x + int(dx) + width, y + int(dy) + height)


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
    return entries
