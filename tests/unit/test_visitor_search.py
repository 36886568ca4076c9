"""The bookkeeping of `artsearch eval photos`: which seed set a run used, and the rates and latency it
reports from the outcomes of its queries."""

from __future__ import annotations

import argparse

import pytest

from artsearch_tools.evaluation.cli import _query_params, _seed_list
from artsearch_tools.evaluation.visitor_photos import DEVELOPMENT_SEEDS, REPORT_SEEDS
from artsearch_tools.evaluation.visitor_search import (
    Outcome,
    comparison_table,
    markdown_table,
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
