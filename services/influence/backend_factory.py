"""The influence service's backend factory: Neo4j (or FalkorDB) over Bolt when NEO4J_URI is set, else
the in-memory graph from the curated files."""

from __future__ import annotations

import asyncio
from pathlib import Path

from artsearch import fault_injection
from artsearch.config import ConfigError
from services.influence.bolt_store import BoltGraphStore, Neo4jSettings
from services.influence.config import InfluenceConfig
from services.influence.curated import ARTISTS_FILE, INFLUENCES_FILE, load_curated
from services.influence.graph import InfluenceGraph
from services.influence.memory_graph import InMemoryInfluenceGraph
from services.influence.neo4j_graph import Neo4jInfluenceGraph


async def open_influence_graph(config: InfluenceConfig) -> InfluenceGraph:
    """The graph the configuration asks for. Raises ConfigError when it cannot be opened."""
    fault_injection.arm(config.test_crash_at)  # None (always, outside durability tests): inert
    for name in (ARTISTS_FILE, INFLUENCES_FILE):
        if not (config.data_dir / name).is_file():
            raise ConfigError(f"INFLUENCE_DATA_DIR={config.data_dir} has no {name}")
    if config.neo4j is not None:
        return await _open_neo4j_graph(config.neo4j, config.data_dir)
    try:
        return await asyncio.to_thread(InMemoryInfluenceGraph.load, config.data_dir, config.state_dir)
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot load the influence graph: {error}") from error


async def _open_neo4j_graph(settings: Neo4jSettings, data_dir: Path) -> Neo4jInfluenceGraph:
    try:
        curated = await asyncio.to_thread(load_curated, data_dir)
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot load the curated influence data: {error}") from error
    store = BoltGraphStore.connect(settings)
    try:
        await store.verify()
        return await Neo4jInfluenceGraph.open(store, curated, settings.refresh_seconds)
    except Exception as error:
        await store.close()
        hint = " (FalkorDB? set NEO4J_DIALECT=falkordb)" if settings.dialect == "neo4j" else ""
        raise ConfigError(
            f"cannot open the influence graph in Neo4j at {settings.uri}{hint}: {error}"
        ) from error
