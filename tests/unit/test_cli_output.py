"""`--json` on the `artsearch` command: every command that prints a result can print it as one JSON
document on stdout instead (scripts parse it), and the human summary stays the default."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from artsearch_tools.cli import build_parser
from artsearch_tools.cli_output import WITHOUT_JSON, emit

REPO_ROOT = Path(__file__).resolve().parents[2]
RESULTS = REPO_ROOT / "bench/results"


def _leaf_commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, command in action.choices.items():
                yield from _leaf_commands(command, (*path, name))
            return
    yield path, parser


def test_every_command_but_the_demo_takes_json():
    leaves = dict(_leaf_commands(build_parser()))
    assert {("ingest",), ("query",), ("eval", "photos"), ("reindex",), ("catalogue",)} <= set(leaves)
    for path, command in leaves.items():
        takes_json = "--json" in command._option_string_actions
        assert takes_json == (path[0] not in WITHOUT_JSON), path


@dataclass
class _Report:
    where: Path
    counts: dict[str, int] = field(default_factory=dict)
    labels: frozenset[str] = frozenset()


def test_emit_prints_the_summary_by_default_and_one_json_document_with_json(capsys: pytest.CaptureFixture):
    report = _Report(Path("/tmp/x"), {"added": 3}, frozenset({"b", "a"}))
    emit(argparse.Namespace(json=False), "3 added", report)
    assert capsys.readouterr().out == "3 added\n"
    emit(argparse.Namespace(json=True), "3 added", report)
    assert json.loads(capsys.readouterr().out) == {
        "where": "/tmp/x",
        "counts": {"added": 3},
        "labels": ["a", "b"],
    }


def test_emit_refuses_what_json_cannot_say(capsys: pytest.CaptureFixture):
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        emit(argparse.Namespace(json=True), "", {"thing": object()})


def _artsearch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artsearch_tools.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_command_prints_its_result_as_json_for_scripts():
    before, after = RESULTS / "visitor_photos_before.json", RESULTS / "visitor_photos.json"
    table = _artsearch("eval", "photos-compare", str(before), str(after))
    assert table.returncode == 0, table.stderr
    assert table.stdout.lstrip().startswith("|")

    document = _artsearch("eval", "photos-compare", str(before), str(after), "--json")
    assert document.returncode == 0, document.stderr
    assert json.loads(document.stdout) == {
        "before": json.loads(before.read_text()),
        "after": json.loads(after.read_text()),
    }
