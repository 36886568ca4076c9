"""Fixtures shared by the whole suite: where the generated artefacts live, and the services' log lines."""

from __future__ import annotations

import io
import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from containers import qdrant_server

from artsearch.jsonlog import JsonFormatter

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = REPO_ROOT.parent / "shared"


def _artefact(env_name: str, default: Path, make_target: str) -> Path:
    path = Path(os.environ.get(env_name, default))
    if not path.exists():
        pytest.fail(f"{path} is missing: run `make {make_target}` (the `make test` target does)")
    return path


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def model_path() -> Path:
    """The exported EfficientNet-Lite0 ONNX model (`make model`)."""
    return _artefact("ARTSEARCH_MODEL_PATH", REPO_ROOT / "models/efficientnet-lite0/model.onnx", "model")


@pytest.fixture(scope="session")
def int8_model_path() -> Path:
    """The same network quantized to int8 (`make model`; artsearch_tools/model_export/quantize_onnx.py)."""
    default = REPO_ROOT / "models/efficientnet-lite0-int8/model.onnx"
    return _artefact("ARTSEARCH_INT8_MODEL_PATH", default, "model")


@pytest.fixture(scope="session")
def gcompris_catalogue() -> Path:
    """The demo catalogue folder extracted from Debian's gcompris-qt-data (`make catalogue`)."""
    return _artefact("ARTSEARCH_GCOMPRIS_DIR", REPO_ROOT / "data/catalogues/gcompris", "catalogue")


@pytest.fixture
def json_log_lines() -> Iterator[Callable[[], list[dict]]]:
    """Reads every line logged so far, formatted as the services write them (JsonFormatter)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("test"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


@pytest.fixture(scope="session")
def qdrant_server_url() -> Iterator[str]:
    """A real Qdrant server in a container; skipped (not failed) where no Docker engine answers."""
    yield from qdrant_server()
