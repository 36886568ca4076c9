"""`python -m services.search`: serve SearchService until SIGTERM/SIGINT.

Settings (environment): declared in services/search/settings.py and artsearch/settings.py (the table of them
all: docs/architecture.md, "Configuration"; docs/search.md explains them). The engine is chosen once at
start-up: QDRANT_URL set, a Qdrant server or cluster; otherwise SEARCH_DATA_DIR (required then) with
SEARCH_ENGINE `edge` (qdrant-edge in SEARCH_DATA_DIR/edge, HNSW-indexed in the background) or `qdrant-local`
(qdrant-client's local mode in SEARCH_DATA_DIR/qdrant, brute force); one process at a time.
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
