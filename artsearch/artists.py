"""Artist names: the one normalisation and the one resolution rule that every service and the gateway use.

Two steps, both deterministic:

1. `normalise_name(name)` canonicalises the string: Unicode NFKD with accents dropped, case-folded, a few
   letters that NFKD keeps (ø, æ, œ, ł, ß, ...) spelled out, "Last, First" turned into "first last",
   apostrophes dropped ("O'Keeffe" -> "okeeffe"), every other run of punctuation or whitespace turned into
   one space ("Toulouse-Lautrec" -> "toulouse lautrec", "J.M.W. Turner" -> "j m w turner").
2. `ArtistIndex.resolve(name)` maps the normalised name to a canonical artist key, in this order:
   a. an exact form of a known artist: its key, its normalised display name or one of its aliases;
   b. the unique-surname rule, for curated artists only: the surname ("gogh"), with its particles
      ("van gogh", "da vinci"), of exactly one curated artist. A surname shared by two curated artists
      ("lippi") resolves to nothing unless an alias says otherwise ("bruegel" -> the Elder).
   An artist's key is the normalised form of its display name ("Vincent van Gogh" -> "vincent van gogh").

`artist_key(name)` = the key `resolve` finds, else the normalised name itself, so that two spellings of an
artist nobody curated ("Jane Doe", "DOE, Jane") still share one key. It uses the curated artist table
(`services/influence/data/artists.csv`, or the file named by ARTSEARCH_ARTISTS_CSV); the influence graph
builds its index from the same file, so the gateway and the graph backends resolve every name identically.
Artists added at run time (ingest) are keyed by their normalised name and never take part in the surname
rule, so their keys are the same with or without the graph's additions.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from artsearch import settings
from artsearch.config import ConfigError, Env

ARTISTS_CSV_ENV = settings.ARTISTS_CSV.name
CURATED_ARTISTS_CSV = (
    Path(__file__).resolve().parent.parent / "services" / "influence" / "data" / "artists.csv"
)
ARTIST_CSV_COLUMNS = ("key", "name", "aliases", "birth_year", "death_year", "movement", "nationality")
ALIAS_SEPARATOR = ";"

# Letters that NFKD leaves alone but that readers treat as plain Latin ones.
_TRANSLITERATION = str.maketrans(
    {
        "ø": "o",
        "æ": "ae",
        "œ": "oe",
        "ł": "l",
        "đ": "d",
        "ð": "d",
        "þ": "th",
        "ß": "ss",
        "\u0131": "i",
        "ħ": "h",
    }
)
# ASCII apostrophe, right/left single quotation marks, grave accent, modifier letter apostrophe.
_APOSTROPHES = re.compile("['\u2019\u2018`\u02bc]")
_SEPARATORS = re.compile(r"[\W_]+")

# A trailing part that qualifies a name rather than being a given name: "Bruegel, Pieter, the Elder".
GENERATIONAL_SUFFIXES = frozenset(
    {"the elder", "the younger", "elder", "younger", "jr", "sr", "junior", "senior", "i", "ii", "iii", "iv"}
)
# Lower-case words that belong to a surname: "van Gogh", "da Vinci", "de Heem", "van der Ast".
# fmt: off
NAME_PARTICLES = frozenset({
    "van", "von", "der", "den", "de", "da", "di", "del", "della", "dei", "degli",
    "du", "des", "la", "le", "ter", "ten", "dos", "das", "do", "y", "d",
})
# fmt: on


@functools.lru_cache(maxsize=65_536)
def normalise_name(name: str) -> str:
    """The canonical string form of an artist name (see the module doc); "" for a blank name."""
    text = unicodedata.normalize("NFKD", name)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.casefold().translate(_TRANSLITERATION)
    text = _reorder_comma_parts(text)
    text = _APOSTROPHES.sub("", text)
    return " ".join(_SEPARATORS.sub(" ", text).split())


def _words(text: str) -> str:
    return " ".join(_SEPARATORS.sub(" ", _APOSTROPHES.sub("", text)).split())


def _reorder_comma_parts(text: str) -> str:
    """Puts "Last, First" in reading order ("gogh, vincent van" -> "vincent van gogh"); a generational
    suffix stays last; more than two comma-separated parts are kept in order (not a "Last, First" name)."""
    if "," not in text:
        return text
    parts = [part.strip() for part in text.split(",") if part.strip()]
    suffix = parts.pop() if len(parts) > 1 and _words(parts[-1]) in GENERATIONAL_SUFFIXES else None
    if len(parts) == 2:
        parts = [parts[1], parts[0]]
    if suffix is not None:
        parts.append(suffix)
    return " ".join(parts)


def _without_generational_suffix(words: list[str]) -> list[str]:
    for size in (2, 1):
        if len(words) > size and " ".join(words[-size:]) in GENERATIONAL_SUFFIXES:
            return words[:-size]
    return words


def surname_forms(normalised: str) -> set[str]:
    """The short forms the unique-surname rule accepts for a normalised multi-word name: the last word,
    and the last word with the particles before it ("vincent van gogh" -> {"gogh", "van gogh"}); a
    generational suffix is ignored ("pieter bruegel the elder" -> {"bruegel"})."""
    words = _without_generational_suffix(normalised.split())
    if len(words) < 2:
        return set()
    forms = {words[-1]}
    start = len(words) - 1
    while start > 1 and words[start - 1] in NAME_PARTICLES:
        start -= 1
        forms.add(" ".join(words[start:]))
    return forms


@dataclass(frozen=True, slots=True)
class ArtistRecord:
    """One artist. `key` is `normalise_name(name)`; years are 0 when unknown."""

    key: str
    name: str
    aliases: tuple[str, ...] = ()
    birth_year: int = 0
    death_year: int = 0
    movement: str = ""
    nationality: str = ""

    @classmethod
    def named(
        cls,
        name: str,
        *,
        aliases: tuple[str, ...] = (),
        birth_year: int = 0,
        death_year: int = 0,
        movement: str = "",
        nationality: str = "",
    ) -> ArtistRecord:
        """A record whose key is derived from its name, the only way keys are made."""
        return cls(normalise_name(name), name.strip(), aliases, birth_year, death_year, movement, nationality)


class AmbiguousArtistData(ValueError):
    """Two curated artists claim the same name or alias: the curated table must be fixed."""


class ArtistIndex:
    """Resolves names to canonical artist keys (see the module doc for the rule)."""

    def __init__(self) -> None:
        self._records: dict[str, ArtistRecord] = {}
        # Exact forms (key, normalised name, normalised aliases) -> key.
        self._forms: dict[str, str] = {}
        # Surname form -> the curated keys that have it; it resolves only when there is one.
        self._surname_keys: dict[str, set[str]] = {}

    @classmethod
    def from_records(cls, curated: Iterable[ArtistRecord]) -> ArtistIndex:
        index = cls()
        for record in curated:
            index.add_curated(record)
        return index

    def add_curated(self, record: ArtistRecord) -> None:
        """Adds a curated artist: its exact forms and its surname forms. Raises AmbiguousArtistData when
        one of its exact forms already names another artist."""
        if record.key in self._records:
            raise AmbiguousArtistData(f"artist key {record.key!r} appears twice")
        exact = self._exact_forms(record)
        for form in exact:
            owner = self._forms.get(form)
            if owner is not None and owner != record.key:
                raise AmbiguousArtistData(f"{form!r} names both {owner!r} and {record.key!r}")
        self._records[record.key] = record
        for form in exact:
            self._forms[form] = record.key
        for name in (record.name, *record.aliases):
            for form in surname_forms(normalise_name(name)):
                self._surname_keys.setdefault(form, set()).add(record.key)

    def add_runtime(self, record: ArtistRecord) -> bool:
        """Adds an artist learnt at run time (ingest) under its key only; False when the key or name is
        taken. Runtime artists never join the surname rule, so curated names resolve the same as before."""
        if record.key in self._records or self.resolve(record.name) is not None:
            return False
        self._records[record.key] = record
        self._forms.setdefault(record.key, record.key)
        return True

    @staticmethod
    def _exact_forms(record: ArtistRecord) -> set[str]:
        forms = {record.key, normalise_name(record.name)}
        forms.update(normalise_name(alias) for alias in record.aliases)
        forms.discard("")
        return forms

    def resolve(self, name: str) -> str | None:
        """The canonical key for `name`, or None when no known artist (or several) answer to it."""
        normalised = normalise_name(name)
        if not normalised:
            return None
        key = self._forms.get(normalised)
        if key is not None:
            return key
        owners = self._surname_keys.get(normalised)
        if owners is not None and len(owners) == 1:
            return next(iter(owners))
        return None

    def key_for(self, name: str) -> str:
        """The canonical key when `name` resolves, else the normalised name ("" for a blank name)."""
        return self.resolve(name) or normalise_name(name)

    def get(self, key: str) -> ArtistRecord | None:
        return self._records.get(key)

    def __contains__(self, key: object) -> bool:
        return key in self._records

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ArtistRecord]:
        return iter(self._records.values())


def _year(raw: str, where: str) -> int:
    raw = raw.strip()
    if not raw:
        return 0
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{where}: year {raw!r} is not an integer") from None


def load_artist_records(path: Path) -> list[ArtistRecord]:
    """Reads an artists CSV (columns ARTIST_CSV_COLUMNS; aliases separated by ';'). Each key must be the
    normalised name, so that a key never depends on who wrote the file."""
    records = []
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = set(ARTIST_CSV_COLUMNS) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            name = (row["name"] or "").strip()
            key = (row["key"] or "").strip()
            if not name or key != normalise_name(name):
                raise ValueError(f"{where}: key {key!r} must be normalise_name({name!r})")
            aliases = tuple(a.strip() for a in (row["aliases"] or "").split(ALIAS_SEPARATOR) if a.strip())
            records.append(
                ArtistRecord(
                    key=key,
                    name=name,
                    aliases=aliases,
                    birth_year=_year(row["birth_year"] or "", where),
                    death_year=_year(row["death_year"] or "", where),
                    movement=(row["movement"] or "").strip(),
                    nationality=(row["nationality"] or "").strip(),
                )
            )
    return records


def curated_artists_csv() -> Path:
    """The curated artist table: ARTSEARCH_ARTISTS_CSV when set, else the influence service's data."""
    configured = settings.ARTISTS_CSV.read(Env())
    return Path(configured) if configured else CURATED_ARTISTS_CSV


@functools.cache
def default_artist_index() -> ArtistIndex:
    """The index built from the curated table, loaded once. Raises ConfigError when the table is missing,
    since keys computed without it would disagree with the influence service's."""
    path = curated_artists_csv()
    if not path.is_file():
        raise ConfigError(
            f"curated artist table {path} not found: set {ARTISTS_CSV_ENV} to the influence service's "
            "data/artists.csv"
        )
    return ArtistIndex.from_records(load_artist_records(path))


def artist_key(name: str) -> str:
    """The one artist key used everywhere: "Van Gogh", "VAN GOGH" and "Gogh, Vincent van" all give
    "vincent van gogh"; an artist outside the curated table gets its normalised name."""
    return default_artist_index().key_for(name)
