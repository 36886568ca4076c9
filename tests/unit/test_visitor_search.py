"""The bookkeeping of `artsearch eval photos`: which seed set a run used, and the rates and latency it
reports from the outcomes of its queries."""

from __future__ import annotations

import argparse

import pytest
from PIL import Image

from artsearch_tools.catalogue.folder import Catalogue, CatalogueEntry
from artsearch_tools.evaluation.cli import _query_params, _seed_list
from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, REPORT_SEEDS
from artsearch_tools.evaluation.visitor_search import (
    Outcome,
    PaintingFiles,
    _neighbours_digest,
    _photo_path,
    comparison_table,
    markdown_table,
    prepare_photos,
    seed_set_name,
    summarise,
)


def outcome(kind: str, rank: int | None, latency: float = 10.0, error: str | None = None) -> Outcome:
    return Outcome("p", kind, 0, rank, None if error else "top", latency, error)


def test_seed_sets_are_named_and_parsed():
    assert _seed_list("report") == REPORT_SEEDS
    assert _seed_list("development") == DEVELOPMENT_SEEDS
    assert _seed_list("3,4") == (3, 4)
    with pytest.raises(argparse.ArgumentTypeError):
        _seed_list("three")
    assert seed_set_name(REPORT_SEEDS) == "report"
    assert seed_set_name(DEVELOPMENT_SEEDS[:1]) == "development"
    assert seed_set_name((REPORT_SEEDS[0],)) == "custom (includes report seeds)"
    assert seed_set_name((12345,)) == "custom"


def test_query_params_are_name_value_pairs():
    assert _query_params(["rerank=false", "pool=200"]) == {"rerank": "false", "pool": "200"}
    with pytest.raises(ValueError, match="NAME=VALUE"):
        _query_params(["rerank"])


def test_rates_per_kind_overall_and_latency_of_answered_queries():
    outcomes = [
        outcome("gallery_wall", 1, 10),
        outcome("gallery_wall", 3, 20),
        outcome("gallery_wall", None, 30),
        outcome("gallery_wall", None, 500, error="HTTP 503: busy"),
        outcome("phone", 1, 40),
        outcome("phone", 1, 50),
    ]
    result = summarise(outcomes, ["gallery_wall", "phone", "book"])
    wall = result["per_kind"]["gallery_wall"]
    assert wall == {"count": 4, "top1": 0.25, "top5": 0.5, "errors": 1}
    assert result["per_kind"]["phone"] == {"count": 2, "top1": 1.0, "top5": 1.0, "errors": 0}
    assert result["per_kind"]["book"]["count"] == 0
    assert result["overall"]["top1"] == round(3 / 6, 4)
    assert result["hard_kinds"]["count"] == 4 and result["clean_kinds"]["count"] == 2
    # The failed query's 500 ms is not a search latency.
    assert result["latency_ms"]["queries"] == 5
    assert result["latency_ms"]["p50"] == 30
    assert len(result["misses"]) == 3
    assert {"error": "HTTP 503: busy"}.items() <= result["misses"][-1].items()


def test_markdown_table_has_a_row_per_kind_and_the_overall_row():
    result = summarise([outcome("glare", 1), outcome("book", 2)], ["glare", "book"])
    result.update({"index": {"count": 6072}, "seed_set": "report", "seeds": list(REPORT_SEEDS)})
    table = markdown_table(result)
    assert "| glare | 1.00 | 1.00 | 1 |" in table
    assert "| book | 0.00 | 1.00 | 1 |" in table
    assert "| **overall** | 0.50 | 1.00 | 2 |" in table
    assert "index 6072 points" in table


def test_comparison_table_puts_before_and_after_side_by_side():
    before = summarise([outcome("glare", None, 40), outcome("book", 1, 40)], ["glare", "book"])
    after = summarise([outcome("glare", 1, 50), outcome("book", 1, 50)], ["glare", "book"])
    table = comparison_table(before, after)
    assert "| glare | 0.00 | 1.00 | 0.00 | 1.00 |" in table
    assert "| **overall** | 0.50 | 1.00 | 0.50 | 1.00 |" in table
    assert "| single-query p50 latency | 40.0 ms | 50.0 ms (1.25 x) | | |" in table


def test_a_neighbour_photo_is_cached_by_the_other_paintings_too(tmp_path):
    entry = CatalogueEntry(id="wave", filename="wave.jpg", title="The Great Wave", artist="Hokusai")
    digests = {"wave": "aaa", "lisa": "bbb", "spring": "ccc"}
    neighbours = _neighbours_digest(digests, "wave")
    # Its own picture is in the file name already; another painting beside it changes the photo.
    assert neighbours == _neighbours_digest({**digests, "wave": "zzz"}, "wave")
    assert neighbours != _neighbours_digest({**digests, "spring": "ddd"}, "wave")
    assert neighbours != _neighbours_digest({k: digests[k] for k in ("wave", "spring", "lisa")}, "wave")
    wall = _photo_path(tmp_path, entry, "aaa", 0, "gallery_wall", neighbours)
    hung = _photo_path(tmp_path, entry, "aaa", 0, "gallery_neighbours", neighbours)
    assert wall == tmp_path / "0" / "gallery_wall" / "wave.aaa.jpg"
    assert hung == tmp_path / "0" / "gallery_neighbours" / f"wave.aaa.{neighbours}.jpg"


def test_painting_files_decode_only_the_painting_taken(tmp_path):
    paths = []
    for number, colour in enumerate(("red", "blue")):
        path = tmp_path / f"{number}.png"
        Image.new("RGB", (20, 10), colour).save(path)
        paths.append(str(path))
    paths.append(str(tmp_path / "missing.png"))  # never read: not taken
    files = PaintingFiles(paths)
    assert len(files) == 3
    assert files[1].getpixel((0, 0)) == (0, 0, 255)
    assert files[0].mode == "RGB" and files[0].size == (20, 10)


def test_a_neighbour_kind_needs_two_paintings_in_the_catalogue(tmp_path):
    entry = CatalogueEntry(id="wave", filename="wave.jpg", title="The Great Wave")
    alone = Catalogue(name="one", root=tmp_path, entries=[entry], problems=[])
    with pytest.raises(ValueError, match="gallery_neighbours hangs other paintings"):
        prepare_photos(alone, [0], ["glare", "gallery_neighbours"], tmp_path / "cache")
