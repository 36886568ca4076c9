"""`python -m services.search`: serve SearchService until SIGTERM/SIGINT.

Environment: QDRANT_URL (a Qdrant server; with QDRANT_API_KEY and QDRANT_TIMEOUT_S, default 10) or, when
it is unset, SEARCH_DATA_DIR (required then: embedded storage in SEARCH_DATA_DIR/qdrant, one process at a
time); SEARCH_COLLECTION (default collection, "artworks"), HOST, PORT (50052), METRICS_PORT, LOG_LEVEL.
"""

from __future__ import annotations

import logging
import sys

from artsearch.grpc_server import run_service, service_main
from services.search.config import SearchConfig, open_artwork_store
from services.search.server import SearchService, search_registration
from services.search.store import StoreUnavailable

log = logging.getLogger("services.search")


async def serve(config: SearchConfig) -> None:
    store = await open_artwork_store(config)
    log.info("storage open", extra={"backend": config.backend, "collection": config.collection})
    try:
        await run_service(
            [search_registration(SearchService(store))],
            config.listen.address,
            metrics_port=config.listen.metrics_port,
        )
    finally:
        await store.close()


if __name__ == "__main__":
    sys.exit(service_main("search", SearchConfig.from_env, serve, start_errors=(StoreUnavailable,)))
