"""Curated art-historical facts about the GCompris artworks, and the metadata read from the package's strings.

GCompris names each artwork in a ``qsTr("Artist, Title - year")`` string. `artwork_info` parses that string
and normalises it (full artist names, a few typos, years outside the artist's lifetime dropped); style and
genre come from the small curated tables here.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from artsearch_tools.catalogue.folder import slugify

log = logging.getLogger(__name__)


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
