"""`python -m services.search`: serve SearchService until SIGTERM/SIGINT.

Environment: QDRANT_URL (a Qdrant server; with QDRANT_API_KEY and QDRANT_TIMEOUT_S, default 10) or, when
it is unset, SEARCH_DATA_DIR (required then: embedded storage in SEARCH_DATA_DIR/qdrant, one process at a
time); SEARCH_COLLECTION (default collection, "artworks"), HOST, PORT (50052), METRICS_PORT, LOG_LEVEL.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from artsearch.config import ConfigError, Env
from artsearch.grpc_server import run_service
from artsearch.jsonlog import configure_logging
from services.search.config import SearchConfig, open_artwork_store
from services.search.server import SearchService, search_registration
from services.search.store import StoreUnavailable

log = logging.getLogger("services.search")


async def serve(config: SearchConfig) -> None:
    store = await open_artwork_store(config)
    log.info("storage open", extra={"backend": config.backend, "collection": config.collection})
    try:
        await run_service(
            [search_registration(SearchService(store))], config.address, metrics_port=config.metrics_port
        )
    finally:
        await store.close()


def main() -> int:
    try:
        configure_logging("search", "INFO")  # so that a configuration error is logged as JSON too
        config = SearchConfig.from_env(Env())
        configure_logging("search", config.log_level)
        asyncio.run(serve(config))
    except (ConfigError, StoreUnavailable) as error:
        log.error("cannot start: %s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
