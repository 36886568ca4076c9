"""Fixtures of the client package's tests.

The tests against the real stack reuse the repository's own fixtures (tests/conftest.py: the exported
model and the demo catalogue; tests/e2e/stack_support.py: the four services as real processes with the
catalogue ingested). Those files are not a package, and pytest lets only the root conftest name plugins,
so they are loaded here by path; where the package's tests run without the repository around them, the
real-stack tests skip."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from scripted_server import ScriptedServer

SUITE = Path(__file__).resolve().parents[3] / "tests"


@pytest.fixture
def server() -> Iterator[ScriptedServer]:
    with ScriptedServer() as running:
        yield running


def _suite_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if (SUITE / "conftest.py").is_file() and (SUITE / "e2e" / "stack_support.py").is_file():
    # tests/conftest.py imports its neighbours (containers), the stack tests `stack_support`.
    sys.path += [str(SUITE), str(SUITE / "e2e")]
    try:
        _suite = _suite_module("artsearch_suite_fixtures", SUITE / "conftest.py")
    except ImportError:  # the repository's test dependencies are not installed: the stack tests skip
        pass
    else:
        model_path = _suite.model_path
        gcompris_catalogue = _suite.gcompris_catalogue
