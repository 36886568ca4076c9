"""bench/visitor_photos.py: which CLI another checkout ingests with (the evaluation is a benchmark run)."""

from __future__ import annotations

from pathlib import Path

from bench.visitor_photos import REPO_ROOT, cli_module


def test_this_checkout_ingests_with_its_tools_package():
    assert cli_module(REPO_ROOT) == "artsearch_tools.cli"


def test_a_checkout_from_before_the_tools_moved_ingests_with_its_own_cli(tmp_path: Path):
    (tmp_path / "artsearch").mkdir()
    assert cli_module(tmp_path) == "artsearch.cli"
