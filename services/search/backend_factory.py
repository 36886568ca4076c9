"""The search service's backend factory: a Qdrant server when QDRANT_URL is set, else the embedded
engine (qdrant-edge, or qdrant-client local) in SEARCH_DATA_DIR."""

from __future__ import annotations

import asyncio

from artsearch import fault_injection
from artsearch.artists import artist_key
from artsearch.config import ConfigError
from services.search.config import EDGE_FOLDER, ENGINE_QDRANT_LOCAL, LOCAL_QDRANT_FOLDER, SearchConfig
from services.search.edge_store import EdgeArtworkStore
from services.search.qdrant_store import QdrantArtworkStore
from services.search.store import ArtworkStore


async def open_artwork_store(config: SearchConfig) -> ArtworkStore:
    """The store the configuration asks for: a Qdrant server, else the embedded engine in the data dir.

    Loads the curated artist table first (artist filters need `artist_key`), so that a missing table
    stops the service at start-up with a ConfigError instead of failing requests later.
    """
    await asyncio.to_thread(artist_key, "")
    fault_injection.arm(config.test_crash_at)  # None (always, outside durability tests): inert
    if config.qdrant_url:
        return await QdrantArtworkStore.open(
            url=config.qdrant_url,
            api_key=config.qdrant_api_key,
            timeout_s=config.qdrant_timeout_s,
            ca_cert=config.qdrant_ca_cert,
            default_collection=config.collection,
            settings=config.server,
        )
    if config.data_dir is None:
        raise ConfigError("embedded storage needs SEARCH_DATA_DIR")
    if config.engine == ENGINE_QDRANT_LOCAL:
        return await QdrantArtworkStore.open(
            path=config.data_dir / LOCAL_QDRANT_FOLDER, default_collection=config.collection
        )
    return await EdgeArtworkStore.open(
        config.data_dir / EDGE_FOLDER, settings=config.edge, default_collection=config.collection
    )
