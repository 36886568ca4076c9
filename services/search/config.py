"""Search service configuration from the environment (the factory that picks the storage engine from it:
backend_factory.py).

Engines, chosen once at start-up:
* `QDRANT_URL` set: a Qdrant server or cluster (`QdrantArtworkStore`), with the QDRANT_* options;
* otherwise embedded storage in SEARCH_DATA_DIR, by SEARCH_ENGINE:
  `edge` (default): qdrant-edge, Qdrant's engine in-process, HNSW-indexed (`EdgeArtworkStore`);
  `qdrant-local`: qdrant-client's local mode, a pure-Python brute force (small catalogues, debugging).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch import fault_injection
from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from services.search.edge_store import VECTOR_DATATYPES, EdgeSettings
from services.search.qdrant_store import QdrantServerSettings
from services.search.region_scores import DEFAULT_REGION_MARGIN
from services.search.store import COLLECTION_NAME, DEFAULT_COLLECTION

ENGINE_EDGE = "edge"
ENGINE_QDRANT_LOCAL = "qdrant-local"
EMBEDDED_ENGINES = (ENGINE_EDGE, ENGINE_QDRANT_LOCAL)

# Sub-folders of SEARCH_DATA_DIR, one per engine, so that switching engines never mixes their files.
EDGE_FOLDER = "edge"
LOCAL_QDRANT_FOLDER = "qdrant"


@dataclass(frozen=True)
class SearchConfig:
    """Where the service listens and which storage it uses: a Qdrant server when `qdrant_url` is set,
    otherwise the embedded `engine` under `data_dir`."""

    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["search"]))
    collection: str = DEFAULT_COLLECTION
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_timeout_s: int = 10
    qdrant_ca_cert: str | None = None
    server: QdrantServerSettings = field(default_factory=QdrantServerSettings)
    data_dir: Path | None = None
    engine: str = ENGINE_EDGE
    edge: EdgeSettings = field(default_factory=EdgeSettings)
    # Subtracted from the best region's similarity in region matching, when a request gives none.
    region_margin: float = DEFAULT_REGION_MARGIN
    # Durability tests only (artsearch/fault_injection.py): the step at which the process kills itself.
    test_crash_at: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> SearchConfig:
        qdrant_url = env.optional("QDRANT_URL")
        data_dir = env.optional("SEARCH_DATA_DIR")
        if qdrant_url is None and data_dir is None:
            raise ConfigError(
                "set QDRANT_URL (a Qdrant server) or SEARCH_DATA_DIR (a folder for embedded storage)"
            )
        if qdrant_url is not None and not qdrant_url.startswith(("http://", "https://")):
            raise ConfigError(f"QDRANT_URL={qdrant_url!r} must start with http:// or https://")
        collection = env.str("SEARCH_COLLECTION", DEFAULT_COLLECTION)
        if not COLLECTION_NAME.fullmatch(collection):
            raise ConfigError(f"SEARCH_COLLECTION={collection!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        engine = env.str("SEARCH_ENGINE", ENGINE_EDGE)
        if engine not in EMBEDDED_ENGINES:
            raise ConfigError(f"SEARCH_ENGINE={engine!r} must be one of {', '.join(EMBEDDED_ENGINES)}")
        upsert_batch = env.int("SEARCH_UPSERT_BATCH", 256, minimum=1)
        return cls(
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["search"]),
            collection=collection,
            qdrant_url=qdrant_url,
            qdrant_api_key=env.optional("QDRANT_API_KEY"),
            qdrant_timeout_s=env.int("QDRANT_TIMEOUT_S", 10, minimum=1),
            qdrant_ca_cert=env.optional("QDRANT_CA_CERT"),
            server=_server_settings(env, upsert_batch),
            data_dir=None if qdrant_url else Path(data_dir or ""),
            engine=engine,
            edge=edge_settings_from_env(env, upsert_batch),
            region_margin=_region_margin(env),
            test_crash_at=fault_injection.crash_point_from_env(env),
        )

    @property
    def backend(self) -> str:
        """Where the artworks live, for logs (never the API key)."""
        if self.qdrant_url:
            return f"qdrant server {self.qdrant_url}"
        return f"embedded {self.engine} in {self.data_dir}"


def _region_margin(env: Env) -> float:
    margin = env.float("SEARCH_REGION_MARGIN", DEFAULT_REGION_MARGIN)
    if not 0.0 <= margin <= 1.0:  # NaN fails both
        raise ConfigError(f"SEARCH_REGION_MARGIN={margin} must be between 0 and 1")
    return margin


def _server_settings(env: Env, upsert_batch: int) -> QdrantServerSettings:
    defaults = QdrantServerSettings()
    return QdrantServerSettings(
        shard_number=env.int("QDRANT_SHARD_NUMBER", defaults.shard_number, minimum=1),
        replication_factor=env.int("QDRANT_REPLICATION_FACTOR", defaults.replication_factor, minimum=1),
        write_consistency_factor=env.int(
            "QDRANT_WRITE_CONSISTENCY", defaults.write_consistency_factor, minimum=1
        ),
        quantization=env.bool("QDRANT_QUANTIZATION", defaults.quantization),
        upsert_batch=upsert_batch,
        retries=env.int("QDRANT_RETRIES", defaults.retries, minimum=0),
        snapshots_path=env.str("QDRANT_SNAPSHOTS_PATH", defaults.snapshots_path),
        search_ef=env.int("QDRANT_HNSW_EF", defaults.search_ef or 0, minimum=0) or None,  # 0: the server's
    )


def edge_settings_from_env(env: Env, upsert_batch: int) -> EdgeSettings:
    """The embedded engine's settings (SEARCH_HNSW_*, SEARCH_QUANTIZATION, SEARCH_VECTOR_DATATYPE,
    SEARCH_VECTORS_ON_DISK, SEARCH_INDEX_*); the benchmark reads them the same way."""
    defaults = EdgeSettings()
    datatype = env.str("SEARCH_VECTOR_DATATYPE", defaults.vector_datatype)
    if datatype not in VECTOR_DATATYPES:
        raise ConfigError(f"SEARCH_VECTOR_DATATYPE={datatype!r} must be one of {', '.join(VECTOR_DATATYPES)}")
    return EdgeSettings(
        hnsw_m=env.int("SEARCH_HNSW_M", defaults.hnsw_m, minimum=4),
        hnsw_ef_construct=env.int("SEARCH_HNSW_EF_CONSTRUCT", defaults.hnsw_ef_construct, minimum=4),
        search_ef=env.int("SEARCH_HNSW_EF", defaults.search_ef or 0, minimum=0) or None,  # 0: Qdrant's
        quantization=env.bool("SEARCH_QUANTIZATION", defaults.quantization),
        vector_datatype=datatype,
        vectors_on_disk=env.bool("SEARCH_VECTORS_ON_DISK", defaults.vectors_on_disk),
        index_threshold=env.int("SEARCH_INDEX_THRESHOLD", defaults.index_threshold, minimum=1),
        index_delay_s=env.float("SEARCH_INDEX_DELAY_S", defaults.index_delay_s, minimum=0.0),
        upsert_batch=upsert_batch,
    )
