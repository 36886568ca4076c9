"""`python -m services.search`: serve SearchService until SIGTERM/SIGINT.

Settings (environment): declared in services/search/settings.py and artsearch/settings.py, the table of
them all in docs/architecture.md, "Configuration"; docs/search.md explains them. In short:
* QDRANT_URL: a Qdrant server or cluster (http:// or https://), with QDRANT_API_KEY, QDRANT_TIMEOUT_S
  (10), QDRANT_CA_CERT, QDRANT_RETRIES (3), QDRANT_HNSW_EF (400), and for the collections this service creates
  QDRANT_SHARD_NUMBER (1), QDRANT_REPLICATION_FACTOR (1), QDRANT_WRITE_CONSISTENCY (1),
  QDRANT_QUANTIZATION (false); QDRANT_SNAPSHOTS_PATH (/qdrant/snapshots) for restores;
* otherwise SEARCH_DATA_DIR (required then) and SEARCH_ENGINE: `edge` (default; qdrant-edge in
  SEARCH_DATA_DIR/edge, HNSW-indexed in the background: SEARCH_HNSW_M, SEARCH_HNSW_EF_CONSTRUCT,
  SEARCH_HNSW_EF, SEARCH_VECTOR_DATATYPE, SEARCH_QUANTIZATION, SEARCH_VECTORS_ON_DISK,
  SEARCH_INDEX_THRESHOLD, SEARCH_INDEX_DELAY_S) or `qdrant-local`
  (qdrant-client's local mode in SEARCH_DATA_DIR/qdrant, brute force); one process at a time;
* SEARCH_COLLECTION (default collection, "artworks"), SEARCH_UPSERT_BATCH (256), ARTSEARCH_HOST,
  ARTSEARCH_PORT (50052), METRICS_PORT, LOG_LEVEL.
"""

from __future__ import annotations

import logging
import sys

from artsearch.grpc_server import run_service, service_main
from services.search.backend_factory import open_artwork_store
from services.search.config import SearchConfig
from services.search.server import SearchService, search_registration
from services.search.store import StoreUnavailable

log = logging.getLogger("services.search")


async def serve(config: SearchConfig) -> None:
    store = await open_artwork_store(config)
    log.info("storage open", extra={"backend": config.backend, "collection": config.collection})
    try:
        await run_service(
            [search_registration(SearchService(store, config.region_margin))],
            config.listen,
        )
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(service_main("search", SearchConfig.from_env, serve, start_errors=(StoreUnavailable,)))
