"""Fixtures of the container tests: every image built once per session (the current code), the folder of
catalogues the gateway and the CLI image mount, and what an earlier killed run left in Docker removed.

Where no Docker engine answers these tests skip, saying why (`make docker-engine`); CI sets
ARTSEARCH_DOCKER_ENGINE=require, which makes that a failure."""

from __future__ import annotations

from pathlib import Path

import pytest
from containers import require_docker_engine
from image_support import build_images, docker_client, remove_leftovers


@pytest.fixture(scope="session")
def images() -> None:
    require_docker_engine("the container tests")
    remove_leftovers(docker_client())
    build_images()


@pytest.fixture(scope="session")
def catalogues(gcompris_catalogue: Path) -> Path:
    """The folder of catalogues (IMAGE_ROOT=/catalogues in the gateway, the CLI's input)."""
    return gcompris_catalogue.parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The first container test may build every image (minutes on a fresh machine: the base from Debian,
    then each image's dependencies): more than the suite's 300 s per test."""
    for item in items:
        if "tests/images/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(1200))
