"""Model alias names (artsearch/model_aliases.py): deterministic, within the search service's alphabet and
length, distinct for distinct versions, and read back to their version when kept verbatim."""

from __future__ import annotations

import pytest

from artsearch.model_aliases import collection_versions, model_alias, resolved, version_in
from services.search.store import COLLECTION_NAME

VERSIONS = [
    "57934424-g2-d1",
    "1",
    "v2_rc1",
    "1.2.3",
    "model@sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "_leading",
    "trailing_",
    "double__underscore",
    "spaces and / slashes",
    "ünïcödé",
    "x" * 200,
    "@@@",
]


def test_a_plain_version_is_kept_after_the_alias() -> None:
    assert model_alias("artworks", "57934424-g2-d1") == "artworks__57934424-g2-d1"
    assert model_alias("artworks-v2", "v2_rc1") == "artworks-v2__v2_rc1"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("alias", ["artworks", "a", "paintings_v2-x", "c" * 64])
def test_every_name_is_a_valid_collection_name_and_deterministic(alias: str, version: str) -> None:
    name = model_alias(alias, version)
    assert COLLECTION_NAME.fullmatch(name), name
    assert model_alias(alias, version) == name


def test_distinct_versions_and_aliases_give_distinct_names() -> None:
    names = {model_alias(alias, v) for alias in ("artworks", "artworks_", "c" * 64) for v in VERSIONS}
    assert len(names) == 3 * len(VERSIONS)
    # Versions that clean to the same characters, or share a long prefix, still differ (the hash).
    assert model_alias("artworks", "1.2.3") != model_alias("artworks", "1-2-3")
    assert model_alias("artworks", "x" * 100 + "a") != model_alias("artworks", "x" * 100 + "b")


def test_an_unusual_version_is_cleaned_and_hashed() -> None:
    name = model_alias("artworks", "1.2.3")
    assert name.startswith("artworks__1-2-3__h") and len(name) == len("artworks__1-2-3__h") + 10
    long = model_alias("c" * 64, "57934424-g2-d1")
    assert len(long) <= 64 and long.startswith("c" * 40 + "__57934424")


def test_a_verbatim_name_reads_back_to_its_version_a_hashed_one_does_not() -> None:
    assert version_in("artworks__57934424-g2-d1", "artworks") == "57934424-g2-d1"
    assert version_in(model_alias("artworks", "1.2.3"), "artworks") is None
    assert version_in(model_alias("artworks", "x" * 200), "artworks") is None
    assert version_in("artworks__57934424-g2-d1", "artworks-v2") is None
    assert version_in("artworks", "artworks") is None
    assert version_in("artworks__", "artworks") is None
    # "a___x" is the alias "a_" with version "x", never "a" with "_x".
    assert version_in(model_alias("a_", "x"), "a") is None
    assert version_in(model_alias("a_", "x"), "a_") == "x"


@pytest.mark.parametrize(("alias", "version"), [("", "v1"), ("bad name", "v1"), ("d" * 65, "v1"), ("a", "")])
def test_bad_alias_or_empty_version_is_refused(alias: str, version: str) -> None:
    with pytest.raises(ValueError):
        model_alias(alias, version)


def test_collection_versions_reads_the_model_aliases_pointing_at_a_collection() -> None:
    aliases = {
        "artworks": "artworks-2",
        "artworks__v1": "artworks-1",
        "artworks__v2": "artworks-2",
        "artworks-2__v2": "artworks-2",
        "artworks-1__v0": "artworks-1",
        "other__v9": "artworks-1",  # another base: not looked at
        model_alias("artworks", "1.2.3"): "artworks-1",  # hashed: not readable
    }
    assert collection_versions(aliases, "artworks-1", ["artworks", "artworks-1"]) == {"v1", "v0"}
    assert collection_versions(aliases, "artworks-2", ["artworks", "", "artworks"]) == {"v2"}
    assert collection_versions(aliases, "nowhere", ["artworks"]) == set()
    assert resolved(aliases, "artworks") == "artworks-2" and resolved(aliases, "artworks-1") == "artworks-1"
