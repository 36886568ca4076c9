"""The influence service's settings, each declared once (artsearch/settings.py: how declarations are read and
documented); services/influence/config.py reads them into an InfluenceConfig at start-up
([influence.md](influence.md))."""

from __future__ import annotations

from artsearch.settings import INFLUENCE, FloatSetting, IntSetting, OptionalSetting, Setting, StrSetting

INFLUENCE_DATA_DIR = StrSetting(
    name="INFLUENCE_DATA_DIR",
    doc="Folder of the curated `artists.csv` + `influences.csv` (the embedded graph, or Neo4j's seed).",
    services=(INFLUENCE,),
    default_doc="bundled `services/influence/data`",
)
INFLUENCE_STATE_DIR = OptionalSetting(
    name="INFLUENCE_STATE_DIR",
    doc="Where artists and influences added at run time persist (unset: not persisted).",
    services=(INFLUENCE,),
)
INFLUENCE_MAX_HOPS = IntSetting(
    name="INFLUENCE_MAX_HOPS",
    doc="Default hop bound of a distance query.",
    services=(INFLUENCE,),
    default=10,
    minimum=1,
)
NEO4J_URI = OptionalSetting(
    name="NEO4J_URI",
    doc=(
        "`bolt://` or `neo4j://` address; set: the Neo4j backend (a snapshot in memory, refreshed); unset: "
        "the in-memory curated graph."
    ),
    services=(INFLUENCE,),
)
NEO4J_USER = OptionalSetting(
    name="NEO4J_USER", doc="Neo4j user (with `NEO4J_PASSWORD`, or neither).", services=(INFLUENCE,)
)
NEO4J_PASSWORD = OptionalSetting(
    name="NEO4J_PASSWORD", doc="Neo4j password (with `NEO4J_USER`, or neither).", services=(INFLUENCE,)
)
NEO4J_DATABASE = OptionalSetting(
    name="NEO4J_DATABASE",
    doc="Neo4j database (unset: the server's default).",
    services=(INFLUENCE,),
)
NEO4J_DIALECT = StrSetting(
    name="NEO4J_DIALECT",
    doc="Cypher dialect of the server: `neo4j` or `falkordb`.",
    services=(INFLUENCE,),
    default="neo4j",
)
NEO4J_REFRESH_S = FloatSetting(
    name="NEO4J_REFRESH_S",
    doc="How often, in seconds, the snapshot checks for other writers (0: never).",
    services=(INFLUENCE,),
    default=30.0,
    minimum=0,
    deprecated_names=("NEO4J_REFRESH_SECONDS",),
)
NEO4J_CONNECT_TIMEOUT_S = FloatSetting(
    name="NEO4J_CONNECT_TIMEOUT_S",
    doc="Seconds to connect, or to get a pooled connection.",
    services=(INFLUENCE,),
    default=5.0,
    minimum=0.1,
    deprecated_names=("NEO4J_CONNECT_TIMEOUT",),
)
NEO4J_QUERY_TIMEOUT_S = FloatSetting(
    name="NEO4J_QUERY_TIMEOUT_S",
    doc=(
        "Bound on one query and on a write's wait for the write lock, seconds: a hung database answers "
        "`UNAVAILABLE`, never holds the lock."
    ),
    services=(INFLUENCE,),
    default=10.0,
    minimum=0.1,
)
NEO4J_REFRESH_TIMEOUT_S = FloatSetting(
    name="NEO4J_REFRESH_TIMEOUT_S",
    doc="Bound on one full read of the graph, seconds.",
    services=(INFLUENCE,),
    default=60.0,
    minimum=0.1,
)

SETTINGS: tuple[Setting[object], ...] = (
    INFLUENCE_DATA_DIR,
    INFLUENCE_STATE_DIR,
    INFLUENCE_MAX_HOPS,
    NEO4J_URI,
    NEO4J_USER,
    NEO4J_PASSWORD,
    NEO4J_DATABASE,
    NEO4J_DIALECT,
    NEO4J_REFRESH_S,
    NEO4J_CONNECT_TIMEOUT_S,
    NEO4J_QUERY_TIMEOUT_S,
    NEO4J_REFRESH_TIMEOUT_S,
)
