"""Servers in containers for the tests that want the real thing (Qdrant, Neo4j): they run where a Docker
engine answers and are skipped, not failed, elsewhere."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

QDRANT_TEST_IMAGE = os.environ.get("QDRANT_TEST_IMAGE", "qdrant/qdrant:v1.16.2")


def docker_engine_answers() -> bool:
    """Whether a Docker engine answers (the `docker` client being installed proves nothing)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def qdrant_server() -> Iterator[str]:
    """The URL of a real Qdrant server in a container, for as long as the generator runs."""
    if not docker_engine_answers():
        pytest.skip("no Docker engine answers: the real Qdrant server test needs one")
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer(QDRANT_TEST_IMAGE) as container:
        yield f"http://{container.rest_host_address}"
