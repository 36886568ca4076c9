"""Search service configuration from the environment, and the factory that picks the storage engine."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path

from artsearch.artists import artist_key
from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from services.search.qdrant_store import QdrantArtworkStore
from services.search.store import DEFAULT_COLLECTION, ArtworkStore

_COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# Sub-folder of SEARCH_DATA_DIR for Qdrant's local storage, so other engines can live beside it.
LOCAL_QDRANT_FOLDER = "qdrant"


@dataclass(frozen=True)
class SearchConfig:
    """Where the service listens and which storage it uses: a Qdrant server when `qdrant_url` is set,
    otherwise embedded storage under `data_dir`."""

    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["search"]))
    collection: str = DEFAULT_COLLECTION
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    qdrant_timeout_s: int = 10
    data_dir: Path | None = None

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
        if not _COLLECTION_NAME.fullmatch(collection):
            raise ConfigError(f"SEARCH_COLLECTION={collection!r} must be 1 to 64 of A-Z a-z 0-9 _ -")
        return cls(
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["search"]),
            collection=collection,
            qdrant_url=qdrant_url,
            qdrant_api_key=env.optional("QDRANT_API_KEY"),
            qdrant_timeout_s=env.int("QDRANT_TIMEOUT_S", 10, minimum=1),
            data_dir=None if qdrant_url else Path(data_dir or ""),
        )

    @property
    def backend(self) -> str:
        """Where the artworks live, for logs (never the API key)."""
        return (
            f"qdrant server {self.qdrant_url}" if self.qdrant_url else f"embedded qdrant in {self.data_dir}"
        )


async def open_artwork_store(config: SearchConfig) -> ArtworkStore:
    """The store the configuration asks for: a Qdrant server, else embedded storage under the data dir.

    Loads the curated artist table first (artist filters need `artist_key`), so that a missing table
    stops the service at start-up with a ConfigError instead of failing requests later.
    """
    await asyncio.to_thread(artist_key, "")
    if config.qdrant_url:
        return await QdrantArtworkStore.open(
            url=config.qdrant_url,
            api_key=config.qdrant_api_key,
            timeout_s=config.qdrant_timeout_s,
            default_collection=config.collection,
        )
    if config.data_dir is None:
        raise ConfigError("embedded storage needs SEARCH_DATA_DIR")
    return await QdrantArtworkStore.open(
        path=config.data_dir / LOCAL_QDRANT_FOLDER, default_collection=config.collection
    )
