"""Influence service configuration from the environment (the factory that picks the graph backend from it:
backend_factory.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch import fault_injection
from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from services.influence import settings
from services.influence.bolt_store import Neo4jSettings
from services.influence.curated import DEFAULT_DATA_DIR
from services.influence.cypher import DIALECTS

DEFAULT_MAX_HOPS: int = settings.INFLUENCE_MAX_HOPS.default  # type: ignore[assignment]


def neo4j_settings_from_env(env: Env) -> Neo4jSettings | None:
    """NEO4J_URI (unset: no Neo4j), NEO4J_USER + NEO4J_PASSWORD (both or neither), NEO4J_DATABASE (the
    server's default when unset), NEO4J_DIALECT (neo4j | falkordb), NEO4J_REFRESH_S (how often the
    snapshot checks for other writers; 0 = never), NEO4J_CONNECT_TIMEOUT_S, NEO4J_QUERY_TIMEOUT_S (one query,
    and a write's wait for the lock), NEO4J_REFRESH_TIMEOUT_S (one full read of the graph)."""
    uri = settings.NEO4J_URI.read(env)
    if uri is None:
        return None
    dialect = settings.NEO4J_DIALECT.read(env)
    if dialect not in DIALECTS:
        raise ConfigError(f"environment variable NEO4J_DIALECT={dialect!r} is not one of {sorted(DIALECTS)}")
    user, password = settings.NEO4J_USER.read(env), settings.NEO4J_PASSWORD.read(env)
    if (user is None) != (password is None):
        raise ConfigError("set both NEO4J_USER and NEO4J_PASSWORD, or neither (a server without auth)")
    return Neo4jSettings(
        uri=uri,
        user=user,
        password=password,
        database=settings.NEO4J_DATABASE.read(env),
        dialect=dialect,
        refresh_seconds=settings.NEO4J_REFRESH_S.read(env),
        connect_timeout=settings.NEO4J_CONNECT_TIMEOUT_S.read(env),
        query_timeout=settings.NEO4J_QUERY_TIMEOUT_S.read(env),
        refresh_timeout=settings.NEO4J_REFRESH_TIMEOUT_S.read(env),
    )


@dataclass(frozen=True)
class InfluenceConfig:
    """Where the service listens and which graph it serves: Neo4j when `neo4j` is set (seeded with the
    curated table in `data_dir`), otherwise the embedded graph loaded from `data_dir` (additions kept under
    `state_dir` when set)."""

    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["influence"]))
    data_dir: Path = DEFAULT_DATA_DIR
    state_dir: Path | None = None
    default_max_hops: int = DEFAULT_MAX_HOPS
    neo4j: Neo4jSettings | None = None
    # Durability tests only (artsearch/fault_injection.py): the step at which the process kills itself.
    test_crash_at: str | None = None

    @property
    def neo4j_uri(self) -> str | None:
        return self.neo4j.uri if self.neo4j is not None else None

    @classmethod
    def from_env(cls, env: Env) -> InfluenceConfig:
        state_dir = settings.INFLUENCE_STATE_DIR.read(env)
        return cls(
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["influence"]),
            data_dir=Path(settings.INFLUENCE_DATA_DIR.read(env, str(DEFAULT_DATA_DIR))),
            state_dir=Path(state_dir) if state_dir else None,
            default_max_hops=settings.INFLUENCE_MAX_HOPS.read(env),
            neo4j=neo4j_settings_from_env(env),
            test_crash_at=fault_injection.crash_point_from_env(env),
        )

    @property
    def backend(self) -> str:
        """Which graph is served, for logs (never credentials)."""
        if self.neo4j is not None:
            return f"neo4j at {self.neo4j.uri} ({self.neo4j.dialect} dialect), snapshot in memory"
        persisted = f", additions in {self.state_dir}" if self.state_dir else ", additions not persisted"
        return f"in-memory graph from {self.data_dir}{persisted}"
