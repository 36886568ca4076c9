"""`artsearch eval photos` against the four services started as processes with the demo catalogue: the
photos reach the public search route, the painting's own id is looked for, and the result says per kind
how often it came first, with the index size, the query parameters and the latency."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from stack_support import catalogue_stack

from artsearch_tools.evaluation.cli import main as eval_main
from artsearch_tools.evaluation.visitor_search import generator_digest
from artsearch_tools.launcher import ServiceStack

pytestmark = pytest.mark.slow

KINDS = ("phone", "crop", "gallery_wall", "gallery_neighbours", "grey_print")
PAINTINGS = 3


@pytest.fixture(scope="module")
def stack(model_path: Path, catalogue, tmp_path_factory: pytest.TempPathFactory):
    with catalogue_stack(model_path, catalogue, tmp_path_factory.mktemp("stack")) as running:
        yield running


def run_eval(stack: ServiceStack, catalogue_dir: Path, tmp_path: Path, *extra: str) -> dict:
    output = tmp_path / "photos.json"
    status = eval_main(
        [
            "photos",
            "--gateway",
            stack.settings.gateway_url,
            "--catalogue",
            str(catalogue_dir),
            "--search",
            stack.settings.address("search"),
            "--seeds",
            "0",
            "--paintings",
            str(PAINTINGS),
            "--kinds",
            *KINDS,
            "--cache-dir",
            str(tmp_path / "cache"),
            "--output",
            str(output),
            *extra,
        ]
    )
    assert status == 0
    return json.loads(output.read_text())


def test_photos_of_each_kind_are_searched_through_the_gateway(stack, gcompris_catalogue, tmp_path):
    result = run_eval(stack, gcompris_catalogue, tmp_path, "--param", "rerank=false")
    assert result["catalogue"]["paintings"] == PAINTINGS
    assert result["seeds"] == [0] and result["seed_set"] == "development"
    assert list(result["per_kind"]) == list(KINDS)
    for kind in KINDS:
        rates = result["per_kind"][kind]
        assert rates["count"] == PAINTINGS and rates["errors"] == 0, kind
        assert 0.0 <= rates["top1"] <= rates["top5"] <= 1.0
    assert result["overall"]["count"] == PAINTINGS * len(KINDS)
    # Clean phone photos and crops of a painting find it among 36 paintings (the issue: 1.00 at ~7,900).
    assert result["per_kind"]["phone"]["top5"] == 1.0
    assert result["per_kind"]["crop"]["top5"] == 1.0
    # Every miss is listed with what came first instead.
    misses = result["misses"]
    assert len(misses) == round(result["overall"]["count"] * (1 - result["overall"]["top1"]))
    assert all(miss["top"] for miss in misses)
    # What was measured against: the whole demo catalogue in the index, the parameters sent.
    assert result["index"]["count"] >= 36
    assert result["query"]["params"] == {"k": "5", "rerank": "false"}
    assert result["query"]["weights"]
    latency = result["latency_ms"]
    assert latency["queries"] == PAINTINGS * len(KINDS)
    assert 0 < latency["p50"] <= latency["p90"]
    # Where the time went, per step the gateway timed.
    assert {"encode", "search"} <= set(result["gateway_steps_p50_ms"])
    # The photos were made once into the cache, named by the generators' digest.
    photos = list((tmp_path / "cache" / generator_digest()).rglob("*.jpg"))
    assert len(photos) == PAINTINGS * len(KINDS)


def test_cached_photos_are_reused_byte_for_byte(stack, gcompris_catalogue, tmp_path):
    first = run_eval(stack, gcompris_catalogue, tmp_path, "--kinds", "phone")
    cache = tmp_path / "cache" / generator_digest()
    before = {path: path.stat().st_mtime_ns for path in cache.rglob("*.jpg")}
    second = run_eval(stack, gcompris_catalogue, tmp_path, "--kinds", "phone")
    assert {path: path.stat().st_mtime_ns for path in cache.rglob("*.jpg")} == before
    assert first["per_kind"] == second["per_kind"]


def test_an_unknown_kind_or_bad_param_is_refused(stack, gcompris_catalogue, tmp_path):
    with pytest.raises(SystemExit):
        eval_main(["photos", "--kinds", "polaroid"])
    with pytest.raises(ValueError, match="NAME=VALUE"):
        run_eval(stack, gcompris_catalogue, tmp_path, "--param", "rerank")
