"""The paired latency benchmark's choices that decide what it measures (the run itself needs two stacks and
their indexes: bench/visitor_photos_latency.py, docs/evaluation.md)."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

import pytest

from artsearch_tools.evaluation.visitor_photos import VISITOR_KINDS
from artsearch_tools.evaluation.visitor_search import Outcome, PhotoQuery
from bench.visitor_photos_latency import _env_setting, p50_by_kind, spread_over_kinds

KINDS = tuple(VISITOR_KINDS)


def photos(paintings: int) -> list[PhotoQuery]:
    # As prepare_photos makes them: painting by painting, each with every kind in turn.
    return [PhotoQuery(f"p{i}", kind, 0, Path(f"{i}-{kind}.jpg")) for i in range(paintings) for kind in KINDS]


def test_a_limited_run_takes_as_many_photos_of_each_kind_in_their_order():
    queries = photos(36)
    chosen = spread_over_kinds(queries, 10 * len(KINDS))
    # Every n-th photo of this list (n kinds) would hold one kind only.
    assert len({q.kind for q in queries[:: len(KINDS)]}) == 1
    assert Counter(q.kind for q in chosen) == dict.fromkeys(KINDS, 10)
    assert chosen == sorted(chosen, key=queries.index)
    assert len({q.painting_id for q in chosen}) > 20  # spread over the paintings, not the first ten


def test_a_limit_above_the_photos_takes_them_all():
    queries = photos(3)
    assert spread_over_kinds(queries, 100) == queries


def test_an_after_setting_is_name_equals_value():
    assert _env_setting("ORT_THREADS=1") == ("ORT_THREADS", "1")
    assert _env_setting("A=b=c") == ("A", "b=c")
    for bad in ("ORT_THREADS", "=1"):
        with pytest.raises(argparse.ArgumentTypeError):
            _env_setting(bad)


def test_each_kinds_median_counts_its_answered_queries_only():
    outcomes = [
        Outcome("a", "glare", 0, 1, "a", 30.0),
        Outcome("b", "glare", 0, 1, "b", 50.0),
        Outcome("c", "glare", 0, None, None, 900.0, error="HTTP 503"),
        Outcome("a", "book", 0, 2, "x", 70.0),
    ]
    assert p50_by_kind(outcomes, ["glare", "book", "screen"]) == {"glare": 40.0, "book": 70.0, "screen": None}
