"""Influence service configuration from the environment, and the factory that picks the graph backend."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from services.influence.curated import ARTISTS_FILE, DEFAULT_DATA_DIR, INFLUENCES_FILE
from services.influence.graph import InfluenceGraph
from services.influence.memory_graph import InMemoryInfluenceGraph

DEFAULT_MAX_HOPS = 10


@dataclass(frozen=True)
class InfluenceConfig:
    """Where the service listens and which graph it serves: Neo4j when `neo4j_uri` is set, otherwise the
    embedded graph loaded from `data_dir` (additions kept under `state_dir` when set)."""

    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["influence"]))
    data_dir: Path = DEFAULT_DATA_DIR
    state_dir: Path | None = None
    default_max_hops: int = DEFAULT_MAX_HOPS
    neo4j_uri: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> InfluenceConfig:
        state_dir = env.optional("INFLUENCE_STATE_DIR")
        return cls(
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["influence"]),
            data_dir=Path(env.str("INFLUENCE_DATA_DIR", str(DEFAULT_DATA_DIR))),
            state_dir=Path(state_dir) if state_dir else None,
            default_max_hops=env.int("INFLUENCE_MAX_HOPS", DEFAULT_MAX_HOPS, minimum=1),
            neo4j_uri=env.optional("NEO4J_URI"),
        )

    @property
    def backend(self) -> str:
        """Which graph is served, for logs (never credentials)."""
        if self.neo4j_uri:
            return "neo4j"
        persisted = f", additions in {self.state_dir}" if self.state_dir else ", additions not persisted"
        return f"in-memory graph from {self.data_dir}{persisted}"


async def open_influence_graph(config: InfluenceConfig) -> InfluenceGraph:
    """The graph the configuration asks for. Raises ConfigError when it cannot be opened."""
    if config.neo4j_uri:
        raise ConfigError(
            "NEO4J_URI is set but the Neo4j backend is not available yet: unset it to serve the "
            "embedded in-memory graph"
        )
    for name in (ARTISTS_FILE, INFLUENCES_FILE):
        if not (config.data_dir / name).is_file():
            raise ConfigError(f"INFLUENCE_DATA_DIR={config.data_dir} has no {name}")
    try:
        return await asyncio.to_thread(InMemoryInfluenceGraph.load, config.data_dir, config.state_dir)
    except (ValueError, OSError) as error:
        raise ConfigError(f"cannot load the influence graph: {error}") from error
