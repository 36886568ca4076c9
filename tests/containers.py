"""Containers for tests: the Docker engine check, third-party servers that want the real thing (Qdrant,
Neo4j), and the rules every container test follows.

- Where no engine answers, tests that need one skip, saying why (`make docker-engine` installs and starts
  one as root; `make test` runs it). With ARTSEARCH_DOCKER_ENGINE=require (CI), they fail instead.
- A third-party image is used only when it is local or can be pulled: with no registry reachable (as on
  this project's machines) its tests skip with that reason instead of erroring on the pull.
- Ryuk (testcontainers' reaper) is off: its image cannot be pulled either. Fixtures remove what they start.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator

import pytest

QDRANT_TEST_IMAGE = os.environ.get("QDRANT_TEST_IMAGE", "qdrant/qdrant:v1.16.2")
NEO4J_TEST_IMAGE = os.environ.get("NEO4J_TEST_IMAGE", "neo4j:5.26-community")

os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")


@functools.cache
def docker_engine_answers() -> bool:
    """Whether a Docker engine answers (the `docker` client being installed proves nothing)."""
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def require_docker_engine(what: str) -> None:
    """Skip (or, with ARTSEARCH_DOCKER_ENGINE=require, fail) unless an engine answers."""
    if docker_engine_answers():
        return
    reason = f"no Docker engine answers ({what} needs one): run `make docker-engine` as root"
    if os.environ.get("ARTSEARCH_DOCKER_ENGINE") == "require":
        pytest.fail(reason)
    pytest.skip(reason)


@functools.cache
def _image_obtainable(image: str) -> str | None:
    """None when `image` is local or was pulled now; otherwise why not."""
    import docker
    from docker.errors import APIError, ImageNotFound

    client = docker.from_env(timeout=30)
    try:
        client.images.get(image)
        return None
    except ImageNotFound:
        pass
    try:
        client.images.pull(image)
    except APIError as error:
        return f"{image} is not local and cannot be pulled here ({error.explanation or error})"
    return None


def require_image(image: str, what: str) -> None:
    """Skip unless an engine answers and `image` is local or pullable (never an error on a failed pull)."""
    require_docker_engine(what)
    problem = _image_obtainable(image)
    if problem is not None:
        pytest.skip(f"{what}: {problem}")


def qdrant_server() -> Iterator[str]:
    """The URL of a real Qdrant server in a container, for as long as the generator runs."""
    require_image(QDRANT_TEST_IMAGE, "the real Qdrant server tests")
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer(QDRANT_TEST_IMAGE) as container:
        yield f"http://{container.rest_host_address}"
