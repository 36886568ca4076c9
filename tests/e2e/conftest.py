"""Fixtures of the end-to-end tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from artsearch_tools.catalogue.folder import Catalogue, load_catalogue


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return load_catalogue(gcompris_catalogue)
