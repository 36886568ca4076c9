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
from artsearch import settings as core
from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from services.search import settings
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
        qdrant_url = settings.QDRANT_URL.read(env)
        data_dir = settings.SEARCH_DATA_DIR.read(env)
        if qdrant_url is None and data_dir is None:
            raise ConfigError(
                "set QDRANT_URL (a Qdrant server) or SEARCH_DATA_DIR (a folder for embedded storage)"
            )
        if qdrant_url is not None and not qdrant_url.startswith(("http://", "https://")):
            raise ConfigError(f"QDRANT_URL={qdrant_url!r} must start with http:// or https://")
        collection = core.SEARCH_COLLECTION.read(env)
        if not COLLECTION_NAME.fullmatch(collection):
            raise ConfigError(f"SEARCH_COLLECTION={collection!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        engine = settings.SEARCH_ENGINE.read(env)
        if engine not in EMBEDDED_ENGINES:
            raise ConfigError(f"SEARCH_ENGINE={engine!r} must be one of {', '.join(EMBEDDED_ENGINES)}")
        upsert_batch = settings.SEARCH_UPSERT_BATCH.read(env)
        return cls(
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["search"]),
            collection=collection,
            qdrant_url=qdrant_url,
            qdrant_api_key=settings.QDRANT_API_KEY.read(env),
            qdrant_timeout_s=settings.QDRANT_TIMEOUT_S.read(env),
            qdrant_ca_cert=settings.QDRANT_CA_CERT.read(env),
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
    margin = settings.SEARCH_REGION_MARGIN.read(env)
    if not 0.0 <= margin <= 1.0:  # NaN fails both
        raise ConfigError(f"SEARCH_REGION_MARGIN={margin} must be between 0 and 1")
    return margin


def _server_settings(env: Env, upsert_batch: int) -> QdrantServerSettings:
    return QdrantServerSettings(
        shard_number=settings.QDRANT_SHARD_NUMBER.read(env),
        replication_factor=settings.QDRANT_REPLICATION_FACTOR.read(env),
        write_consistency_factor=settings.QDRANT_WRITE_CONSISTENCY.read(env),
        quantization=settings.QDRANT_QUANTIZATION.read(env),
        upsert_batch=upsert_batch,
        retries=settings.QDRANT_RETRIES.read(env),
        snapshots_path=settings.QDRANT_SNAPSHOTS_PATH.read(env),
        search_ef=settings.QDRANT_HNSW_EF.read(env) or None,  # 0: the server's
    )


def edge_settings_from_env(env: Env, upsert_batch: int) -> EdgeSettings:
    """The embedded engine's settings (SEARCH_HNSW_*, SEARCH_QUANTIZATION, SEARCH_VECTOR_DATATYPE,
    SEARCH_VECTORS_ON_DISK, SEARCH_INDEX_*); the benchmark reads them the same way."""
    datatype = settings.SEARCH_VECTOR_DATATYPE.read(env)
    if datatype not in VECTOR_DATATYPES:
        raise ConfigError(f"SEARCH_VECTOR_DATATYPE={datatype!r} must be one of {', '.join(VECTOR_DATATYPES)}")
    return EdgeSettings(
        hnsw_m=settings.SEARCH_HNSW_M.read(env),
        hnsw_ef_construct=settings.SEARCH_HNSW_EF_CONSTRUCT.read(env),
        search_ef=settings.SEARCH_HNSW_EF.read(env) or None,  # 0: Qdrant's
        quantization=settings.SEARCH_QUANTIZATION.read(env),
        vector_datatype=datatype,
        vectors_on_disk=settings.SEARCH_VECTORS_ON_DISK.read(env),
        index_threshold=settings.SEARCH_INDEX_THRESHOLD.read(env),
        index_delay_s=settings.SEARCH_INDEX_DELAY_S.read(env),
        upsert_batch=upsert_batch,
    )
