"""The search service's settings, each declared once (artsearch/settings.py: how declarations are read and
documented); services/search/config.py reads them into a SearchConfig at start-up ([search.md](search.md))."""

from __future__ import annotations

from artsearch.settings import (
    SEARCH,
    BoolSetting,
    FloatSetting,
    IntSetting,
    OptionalSetting,
    Setting,
    StrSetting,
)

QDRANT_URL = OptionalSetting(
    name="QDRANT_URL",
    doc="Set (http:// or https://): a Qdrant server or cluster; unset: the embedded engine.",
    services=(SEARCH,),
)
QDRANT_API_KEY = OptionalSetting(
    name="QDRANT_API_KEY", doc="The Qdrant server's API key.", services=(SEARCH,)
)
QDRANT_TIMEOUT_S = IntSetting(
    name="QDRANT_TIMEOUT_S",
    doc="Deadline of each call to the Qdrant server, whole seconds.",
    services=(SEARCH,),
    default=10,
    minimum=1,
)
QDRANT_CA_CERT = OptionalSetting(
    name="QDRANT_CA_CERT",
    doc="CA certificate file the Qdrant server's TLS certificate is checked with (unset: the system CAs).",
    services=(SEARCH,),
)
QDRANT_SHARD_NUMBER = IntSetting(
    name="QDRANT_SHARD_NUMBER",
    doc="Shards of a collection this service creates on the server (spread over the cluster's nodes).",
    services=(SEARCH,),
    default=1,
    minimum=1,
)
QDRANT_REPLICATION_FACTOR = IntSetting(
    name="QDRANT_REPLICATION_FACTOR",
    doc="Copies of each shard of a collection this service creates on the server.",
    services=(SEARCH,),
    default=1,
    minimum=1,
)
QDRANT_WRITE_CONSISTENCY = IntSetting(
    name="QDRANT_WRITE_CONSISTENCY",
    doc="Replicas that must acknowledge a write to a collection this service creates.",
    services=(SEARCH,),
    default=1,
    minimum=1,
)
QDRANT_QUANTIZATION = BoolSetting(
    name="QDRANT_QUANTIZATION",
    doc="int8 scalar quantization kept in RAM on the server, the original vectors rescoring the best.",
    services=(SEARCH,),
    default=False,
)
QDRANT_RETRIES = IntSetting(
    name="QDRANT_RETRIES",
    doc="Further tries of a server call after a transient failure (backoff doubling from 0.2 s).",
    services=(SEARCH,),
    default=3,
    minimum=0,
)
QDRANT_SNAPSHOTS_PATH = StrSetting(
    name="QDRANT_SNAPSHOTS_PATH",
    doc="Where the server keeps snapshots (its --snapshots-path), for restores.",
    services=(SEARCH,),
    default="/qdrant/snapshots",
)
QDRANT_HNSW_EF = IntSetting(
    name="QDRANT_HNSW_EF",
    doc="Candidates examined per HNSW search on the server (0: the server's own, its ef_construct).",
    services=(SEARCH,),
    default=400,
    minimum=0,
)
SEARCH_DATA_DIR = OptionalSetting(
    name="SEARCH_DATA_DIR",
    doc="Where the embedded engine keeps its data (and `aliases.json`); one process at a time.",
    services=(SEARCH,),
    default_doc="required without `QDRANT_URL`",
)
SEARCH_ENGINE = StrSetting(
    name="SEARCH_ENGINE",
    doc=(
        "Embedded engine: `edge` (qdrant-edge, HNSW built in a background process) or `qdrant-local` "
        "(qdrant-client's local mode, a pure-Python brute force)."
    ),
    services=(SEARCH,),
    default="edge",
)
SEARCH_UPSERT_BATCH = IntSetting(
    name="SEARCH_UPSERT_BATCH",
    doc="Points per engine or server upsert call (bounds the memory of one write whatever the request size).",
    services=(SEARCH,),
    default=256,
    minimum=1,
)
SEARCH_HNSW_M = IntSetting(
    name="SEARCH_HNSW_M",
    doc="Embedded engine: HNSW links per node (fixed when a collection is created).",
    services=(SEARCH,),
    default=16,
    minimum=4,
)
SEARCH_HNSW_EF_CONSTRUCT = IntSetting(
    name="SEARCH_HNSW_EF_CONSTRUCT",
    doc="Embedded engine: candidates examined while building the HNSW graph.",
    services=(SEARCH,),
    default=100,
    minimum=4,
)
SEARCH_HNSW_EF = IntSetting(
    name="SEARCH_HNSW_EF",
    doc="Embedded engine: candidates examined per HNSW search (0: Qdrant's choice, ef_construct).",
    services=(SEARCH,),
    default=400,
    minimum=0,
)
SEARCH_QUANTIZATION = BoolSetting(
    name="SEARCH_QUANTIZATION",
    doc="Embedded engine: int8 scalar quantization (a quarter of the memory scanned per query).",
    services=(SEARCH,),
    default=False,
)
SEARCH_VECTOR_DATATYPE = StrSetting(
    name="SEARCH_VECTOR_DATATYPE",
    doc="Embedded engine: how vectors are stored, `float16` or `float32`.",
    services=(SEARCH,),
    default="float16",
)
SEARCH_VECTORS_ON_DISK = BoolSetting(
    name="SEARCH_VECTORS_ON_DISK",
    doc="Embedded engine: original vectors left on disk, read through the page cache when needed.",
    services=(SEARCH,),
    default=False,
)
SEARCH_INDEX_THRESHOLD = IntSetting(
    name="SEARCH_INDEX_THRESHOLD",
    doc=(
        "Embedded engine: unindexed points of an engine shard that make a background HNSW build worth it "
        "(the engine keeps it per collection, as it was when the collection was created)."
    ),
    services=(SEARCH,),
    default=2000,
    minimum=1,
)
SEARCH_INDEX_DELAY_S = FloatSetting(
    name="SEARCH_INDEX_DELAY_S",
    doc="Embedded engine: seconds without writes before a background build starts.",
    services=(SEARCH,),
    default=5.0,
    minimum=0.0,
)
SEARCH_REGION_MARGIN = FloatSetting(
    name="SEARCH_REGION_MARGIN",
    doc=(
        "Region matching: subtracted from an artwork's best region similarity before it competes with its "
        "whole picture's (0 to 1; a request may give its own, `SearchRequest.region_margin`) "
        "([search.md](search.md#regions-a-photo-of-a-detail-finds-the-whole))."
    ),
    services=(SEARCH,),
    default=0.06,
)

SETTINGS: tuple[Setting[object], ...] = (
    QDRANT_URL,
    QDRANT_API_KEY,
    QDRANT_TIMEOUT_S,
    QDRANT_CA_CERT,
    QDRANT_SHARD_NUMBER,
    QDRANT_REPLICATION_FACTOR,
    QDRANT_WRITE_CONSISTENCY,
    QDRANT_QUANTIZATION,
    QDRANT_RETRIES,
    QDRANT_SNAPSHOTS_PATH,
    QDRANT_HNSW_EF,
    SEARCH_DATA_DIR,
    SEARCH_ENGINE,
    SEARCH_UPSERT_BATCH,
    SEARCH_HNSW_M,
    SEARCH_HNSW_EF_CONSTRUCT,
    SEARCH_HNSW_EF,
    SEARCH_QUANTIZATION,
    SEARCH_VECTOR_DATATYPE,
    SEARCH_VECTORS_ON_DISK,
    SEARCH_INDEX_THRESHOLD,
    SEARCH_INDEX_DELAY_S,
    SEARCH_REGION_MARGIN,
)
