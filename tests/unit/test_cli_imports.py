"""`artsearch --help` and every sub-command's `--help` work without the heavy libraries.

The CLI image (deploy/images/cli) installs a small set of distributions: no numpy, pillow, onnxruntime,
scikit-learn, scipy, torch, matplotlib or qdrant-client. Building the parser registers every sub-command,
so each `register` must import those only inside the command it runs. A child process blocks them with a
meta-path finder installed before artsearch_tools.cli is imported, then runs `main([..., "--help"])` for each
command.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BLOCKED = ("numpy", "PIL", "onnxruntime", "sklearn", "scipy", "torch", "matplotlib", "qdrant_client")
COMMANDS = (
    (),
    ("catalogue",),
    ("ingest",),
    ("query",),
    ("demo",),
    ("eval",),
    ("eval", "descriptors"),
    ("eval", "style-blocks"),
    ("eval", "retrieval"),
    ("eval", "retrain"),
    ("eval", "photos"),
    ("eval", "photos-compare"),
    ("retrain",),
    ("reindex",),
    ("import-influences",),
)

CHILD = textwrap.dedent(
    """
    import argparse, contextlib, io, json, sys

    BLOCKED = set(sys.argv[1].split(","))

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked (not in the CLI image)")
            return None

    sys.meta_path.insert(0, Blocker())

    from artsearch_tools.cli import build_parser, main

    def commands(parser, prefix=()):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield (*prefix, name)
                    yield from commands(sub, (*prefix, name))

    found = [list(c) for c in commands(build_parser())]
    results = {}
    for command in [[], *found]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main([*command, "--help"])
            except SystemExit as exit:
                code = exit.code
        results[" ".join(command)] = {"code": code, "stdout": out.getvalue(), "stderr": err.getvalue()}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({"commands": found, "results": results, "loaded": loaded}))
    """
)


@cache
def _run_child() -> dict:
    completed = subprocess.run(
        [sys.executable, "-c", CHILD, ",".join(BLOCKED)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, f"building the parser failed:\n{completed.stderr}"
    return json.loads(completed.stdout)


def test_the_parser_has_exactly_the_commands_checked_here():
    assert sorted(tuple(c) for c in _run_child()["commands"]) == sorted(c for c in COMMANDS if c)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "artsearch")
def test_help_exits_zero_without_the_heavy_libraries(command: tuple[str, ...]):
    result = _run_child()["results"][" ".join(command)]
    assert result["code"] == 0, result["stderr"]
    assert result["stdout"].startswith(f"usage: {' '.join(('artsearch', *command))} ")
    assert "-h, --help" in result["stdout"]


def test_no_heavy_library_was_imported():
    assert _run_child()["loaded"] == []


def test_retrain_label_choices_match_the_trainer():
    pytest.importorskip("numpy")
    from artsearch_tools.training.cli import LABEL_CHOICES
    from artsearch_tools.training.retrain import LABEL_CHOICES as TRAINER_CHOICES

    assert LABEL_CHOICES == TRAINER_CHOICES


def test_version_names_the_installed_distribution():
    import importlib.metadata

    shown = subprocess.run(
        [sys.executable, "-m", "artsearch_tools.cli", "--version"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == f"artsearch {importlib.metadata.version('artsearch')}"
