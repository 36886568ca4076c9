"""Artist-name normalisation and resolution: the one rule every service and the gateway share."""

from __future__ import annotations

from pathlib import Path

import pytest

from artsearch import artists
from artsearch.artists import (
    AmbiguousArtistData,
    ArtistIndex,
    ArtistRecord,
    artist_key,
    default_artist_index,
    load_artist_records,
    normalise_name,
    surname_forms,
)
from artsearch.config import ConfigError


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Vincent van Gogh", "vincent van gogh"),
        ("VAN GOGH", "van gogh"),
        ("  Vincent   van\tGogh \n", "vincent van gogh"),
        ("Albrecht Dürer", "albrecht durer"),
        ("Frédéric Bazille", "frederic bazille"),
        ("Édouard Manet", "edouard manet"),
        ("Katsushika Ōi", "katsushika oi"),
        ("Constantin Brâncuși", "constantin brancusi"),
        ("Anton Ažbe", "anton azbe"),
        ("Christen Købke", "christen kobke"),
        ("Œuvre Æsop", "oeuvre aesop"),
        ("Weiß", "weiss"),
        ("Pierre-Auguste Renoir", "pierre auguste renoir"),
        ("Henri de Toulouse-Lautrec", "henri de toulouse lautrec"),
        ("J. M. W. Turner", "j m w turner"),
        ("J.M.W. Turner", "j m w turner"),
        ("Georgia O'Keeffe", "georgia okeeffe"),
        ("Georgia O\u2019Keeffe", "georgia okeeffe"),
        ("Jan Davidsz. de Heem", "jan davidsz de heem"),
        ("Gogh, Vincent van", "vincent van gogh"),
        ("Dürer, Albrecht", "albrecht durer"),
        ("Bruegel, Pieter, the Elder", "pieter bruegel the elder"),
        ("Pieter Bruegel, the Elder", "pieter bruegel the elder"),
        ("Pieter Bruegel (the Elder)", "pieter bruegel the elder"),
        ("Renoir, Pierre-Auguste, French, 1841", "renoir pierre auguste french 1841"),
        ("Hokusai,", "hokusai"),
        ("Василий Кандинский", "василии кандинскии"),
        ("snake_case_name", "snake case name"),
        ("", ""),
        ("   ", ""),
        ("?!—", ""),
    ],
)
def test_normalise_name(raw, expected):
    assert normalise_name(raw) == expected


def test_normalise_name_is_idempotent():
    for raw in ["Gogh, Vincent van", "J.M.W. Turner", "Pieter Bruegel, the Elder", "Albrecht Dürer"]:
        once = normalise_name(raw)
        assert normalise_name(once) == once


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("vincent van gogh", {"gogh", "van gogh"}),
        ("leonardo da vinci", {"vinci", "da vinci"}),
        ("rogier van der weyden", {"weyden", "der weyden", "van der weyden"}),
        ("pieter bruegel the elder", {"bruegel"}),
        ("utagawa toyokuni iii", {"toyokuni"}),
        ("claude monet", {"monet"}),
        ("caravaggio", set()),
        ("van gogh", {"gogh"}),
    ],
)
def test_surname_forms(name, expected):
    assert surname_forms(name) == expected


def _small_index() -> ArtistIndex:
    return ArtistIndex.from_records(
        [
            ArtistRecord.named("Vincent van Gogh", aliases=("Vincent Willem van Gogh",)),
            ArtistRecord.named("Claude Monet"),
            ArtistRecord.named("Filippo Lippi"),
            ArtistRecord.named("Filippino Lippi"),
            ArtistRecord.named("Pieter Bruegel the Elder", aliases=("Bruegel", "Brueghel")),
            ArtistRecord.named("Pieter Brueghel the Younger"),
            ArtistRecord.named("Michelangelo Buonarroti", aliases=("Michelangelo",)),
            ArtistRecord.named("Caravaggio", aliases=("Michelangelo Merisi da Caravaggio",)),
        ]
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Vincent van Gogh", "vincent van gogh"),
        ("vincent willem van gogh", "vincent van gogh"),
        ("Van Gogh", "vincent van gogh"),
        ("GOGH", "vincent van gogh"),
        ("Gogh, Vincent van", "vincent van gogh"),
        ("Monet", "claude monet"),
        ("Bruegel", "pieter bruegel the elder"),
        ("Brueghel", "pieter bruegel the elder"),
        ("Pieter Brueghel the Younger", "pieter brueghel the younger"),
        ("Michelangelo", "michelangelo buonarroti"),
        ("Buonarroti", "michelangelo buonarroti"),
        ("Michelangelo Merisi da Caravaggio", "caravaggio"),
        # Two curated artists share the surname and no alias decides: nobody.
        ("Lippi", None),
        ("Jane Doe", None),
        ("", None),
        ("?!", None),
    ],
)
def test_index_resolves_forms_aliases_and_unique_surnames(name, expected):
    assert _small_index().resolve(name) == expected


def test_key_for_falls_back_to_the_normalised_name():
    index = _small_index()
    assert index.key_for("DOE, Jane") == "jane doe"
    assert index.key_for("Jane Doe") == "jane doe"
    assert index.key_for("Lippi") == "lippi"
    assert index.key_for("") == ""


def test_conflicting_curated_forms_are_refused():
    with pytest.raises(AmbiguousArtistData, match="bellini"):
        ArtistIndex.from_records(
            [
                ArtistRecord.named("Giovanni Bellini", aliases=("Bellini",)),
                ArtistRecord.named("Gentile Bellini", aliases=("Bellini",)),
            ]
        )
    with pytest.raises(AmbiguousArtistData, match="twice"):
        ArtistIndex.from_records([ArtistRecord.named("Claude Monet"), ArtistRecord.named("CLAUDE MONET")])


def test_runtime_artists_resolve_exactly_but_never_by_surname():
    index = _small_index()
    assert index.add_runtime(ArtistRecord.named("Jane Doe"))
    assert index.resolve("doe, jane") == "jane doe"
    assert index.resolve("Doe") is None
    # A name that already resolves (even by surname) is not a new artist.
    assert not index.add_runtime(ArtistRecord.named("Monet"))
    assert not index.add_runtime(ArtistRecord.named("Jane  DOE"))
    # A runtime artist never makes a curated surname ambiguous.
    assert index.add_runtime(ArtistRecord.named("Oscar Monet Junior"))
    assert index.resolve("Monet") == "claude monet"
    assert len(index) == 10


def test_record_named_derives_the_key():
    record = ArtistRecord.named("  Albrecht Dürer ", birth_year=1471, death_year=1528)
    assert (record.key, record.name, record.birth_year) == ("albrecht durer", "Albrecht Dürer", 1471)


# ---- the curated table and the shared artist_key -------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "key"),
    [
        (["Van Gogh", "Vincent van Gogh", "vincent willem van gogh", "VAN GOGH", "Vincent Van Gogh"],
         "vincent van gogh"),
        (["Hokusai", "Katsushika Hokusai", "HOKUSAI, Katsushika"], "katsushika hokusai"),
        (["Hiroshige", "Utagawa Hiroshige", "Ando Hiroshige", "Andō Hiroshige"], "utagawa hiroshige"),
        (["Leonardo", "Leonardo da Vinci", "Da Vinci"], "leonardo da vinci"),
        (["Dürer", "Albrecht Durer", "Albrecht Dürer", "Duerer"], "albrecht durer"),
        (["Bruegel", "Pieter Bruegel the Elder", "Brueghel", "Pieter Brueghel", "Bruegel, Pieter, the Elder"],
         "pieter bruegel the elder"),
        (["Michelangelo", "Michelangelo Buonarroti"], "michelangelo buonarroti"),
        (["Renoir", "Pierre-Auguste Renoir", "Auguste Renoir"], "pierre auguste renoir"),
        (["Bazille", "Frédéric Bazille", "Frederic Bazille"], "frederic bazille"),
        (["Bellini", "Giovanni Bellini"], "giovanni bellini"),
        (["Arcimboldo", "Giuseppe Arcimboldo", "Arcimboldi"], "giuseppe arcimboldo"),
        (["Kandinsky", "Wassily Kandinsky", "Vasily Kandinsky", "Василий Кандинский"], "wassily kandinsky"),
        (["Cassatt", "Mary Cassatt"], "mary cassatt"),
        (["Gauguin", "Paul Gauguin"], "paul gauguin"),
        (["Bosschaert", "Ambrosius Bosschaert", "Ambrosius Bosschaert the Elder"],
         "ambrosius bosschaert the elder"),
        (["Titian", "Tiziano Vecellio"], "titian"),
        (["Rembrandt", "Rembrandt van Rijn"], "rembrandt van rijn"),
        (["Turner", "J.M.W. Turner", "Joseph Mallord William Turner"], "j m w turner"),
        (["Toulouse-Lautrec", "Lautrec", "Henri de Toulouse-Lautrec"], "henri de toulouse lautrec"),
        (["Velázquez", "Velasquez", "Diego Velázquez"], "diego velazquez"),
        (["Monet", "Claude Monet"], "claude monet"),
    ],
)  # fmt: skip
def test_artist_key_maps_variants_of_curated_artists_to_one_key(names, key):
    assert {artist_key(name) for name in names} == {key}


def test_artist_key_of_an_uncurated_artist_is_its_normalised_name():
    assert artist_key("Jane Q. Doe") == "jane q doe"
    assert artist_key("DOE, Jane Q.") == "jane q doe"
    assert artist_key("Lippi") == "lippi"  # Filippo and Filippino: ambiguous on purpose


@pytest.fixture
def fresh_default_index():
    default_artist_index.cache_clear()
    yield
    default_artist_index.cache_clear()


def test_artist_key_reads_the_table_named_by_the_environment(tmp_path, monkeypatch, fresh_default_index):
    table = tmp_path / "artists.csv"
    table.write_text(
        "key,name,aliases,birth_year,death_year,movement,nationality\n"
        "jane doe,Jane Doe,The Doe,1900,1990,Modernism,Nowhere\n",
        encoding="utf-8",
    )
    monkeypatch.setenv(artists.ARTISTS_CSV_ENV, str(table))
    assert artist_key("the doe") == "jane doe"
    assert artist_key("Van Gogh") == "van gogh"  # not in this table


def test_a_missing_table_fails_fast(tmp_path, monkeypatch, fresh_default_index):
    monkeypatch.setenv(artists.ARTISTS_CSV_ENV, str(tmp_path / "nope.csv"))
    with pytest.raises(ConfigError, match=artists.ARTISTS_CSV_ENV):
        artist_key("Van Gogh")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_load_artist_records_parses_aliases_and_years(tmp_path):
    path = _write(
        tmp_path / "a.csv",
        "key,name,aliases,birth_year,death_year,movement,nationality\n"
        "albrecht durer,Albrecht Dürer,Durer; Albrecht Duerer ;,1471,1528,Northern Renaissance,German\n"
        "jane doe,Jane Doe,,,,,\n",
    )
    durer, doe = load_artist_records(path)
    assert durer.aliases == ("Durer", "Albrecht Duerer")
    assert (durer.birth_year, durer.death_year, durer.nationality) == (1471, 1528, "German")
    assert (doe.aliases, doe.birth_year, doe.movement) == ((), 0, "")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("key,name\nx,X\n", "missing columns"),
        ("key,name,aliases,birth_year,death_year,movement,nationality\nwrong,Jane Doe,,,,,\n", "must be"),
        (
            "key,name,aliases,birth_year,death_year,movement,nationality\njane doe,Jane Doe,,c.1900,,,\n",
            "year",
        ),
    ],
)
def test_load_artist_records_rejects_malformed_tables(tmp_path, body, message):
    with pytest.raises(ValueError, match=message):
        load_artist_records(_write(tmp_path / "a.csv", body))
