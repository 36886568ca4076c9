"""`ArtworkStore` on Qdrant, through the real `qdrant-client` API: a Qdrant server, or embedded local storage.

One unnamed vector per point, cosine distance. Qdrant point ids must be unsigned ints or UUIDs, so each
artwork id maps to a deterministic UUID (uuid5) and the artwork id itself lives in the payload: upserts
are idempotent and every replica computes the same point id.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from artsearch.artists import artist_key
from services.search.store import (
    DEFAULT_COLLECTION,
    NO_FILTER,
    ArtworkFilter,
    ArtworkRecord,
    GetResult,
    IndexedArtwork,
    InvalidStoreRequest,
    ScoredArtwork,
    StoreError,
    StoreUnavailable,
    as_unit_vector,
    unique_in_order,
    validated_batch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

# Changing this namespace changes every point id: existing collections would have to be re-indexed.
ARTWORK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:artsearch:artwork")

# Points per upsert request: keeps a batch of 1280-d vectors well under Qdrant's 32 MB request limit.
UPSERT_CHUNK = 256

# Payload fields that filters use, and their index types (a Qdrant server uses them; local mode does not).
PAYLOAD_INDEXES: Mapping[str, models.PayloadSchemaType] = {
    "id": models.PayloadSchemaType.KEYWORD,
    "artist_key": models.PayloadSchemaType.KEYWORD,
    "style": models.PayloadSchemaType.KEYWORD,
    "genre": models.PayloadSchemaType.KEYWORD,
    "year": models.PayloadSchemaType.INTEGER,
}


def point_id(artwork_id: str) -> str:
    """The Qdrant point id of an artwork: the same on every call, in every process."""
    return str(uuid.uuid5(ARTWORK_ID_NAMESPACE, artwork_id))


class LocalQdrantClient:
    """Embedded Qdrant storage (`QdrantClient(path=...)`) with the async call style of `AsyncQdrantClient`.

    Local mode is a pure-Python brute force that also writes SQLite on every upsert. Run inline it would
    stall the event loop (health checks included) for the whole call, so every call runs on one
    dedicated thread instead; one thread, because the client and its SQLite connection are not
    thread-safe and must stay on the thread that created them.
    """

    def __init__(self, client: QdrantClient, executor: ThreadPoolExecutor) -> None:
        self._client = client
        self._executor = executor

    @classmethod
    async def open(cls, path: Path) -> LocalQdrantClient:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant-local")
        loop = asyncio.get_running_loop()
        try:
            client = await loop.run_in_executor(executor, partial(QdrantClient, path=str(path)))
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(client, executor)

    async def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(method, *args, **kwargs))

    async def collection_exists(self, collection_name: str) -> bool:
        return await self._call(self._client.collection_exists, collection_name)

    async def get_collection(self, collection_name: str) -> models.CollectionInfo:
        return await self._call(self._client.get_collection, collection_name)

    async def create_collection(self, collection_name: str, **kwargs: Any) -> bool:
        return await self._call(self._client.create_collection, collection_name, **kwargs)

    async def create_payload_index(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:
        return await self._call(self._client.create_payload_index, collection_name, **kwargs)

    async def upsert(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:
        return await self._call(self._client.upsert, collection_name, **kwargs)

    async def query_points(self, collection_name: str, **kwargs: Any) -> models.QueryResponse:
        return await self._call(self._client.query_points, collection_name, **kwargs)

    async def retrieve(self, collection_name: str, **kwargs: Any) -> list[models.Record]:
        return await self._call(self._client.retrieve, collection_name, **kwargs)

    async def delete(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:
        return await self._call(self._client.delete, collection_name, **kwargs)

    async def count(self, collection_name: str, **kwargs: Any) -> models.CountResult:
        return await self._call(self._client.count, collection_name, **kwargs)

    async def close(self) -> None:
        try:
            await self._call(self._client.close)
        finally:
            self._executor.shutdown(wait=False)


QdrantCalls = AsyncQdrantClient | LocalQdrantClient


class QdrantArtworkStore:
    """`ArtworkStore` over a Qdrant client. Build it with `open(url=...)`, `open(path=...)` or
    `open(location=":memory:")` (in-process, the same client API as a server: for tests)."""

    def __init__(
        self,
        client: QdrantCalls,
        *,
        default_collection: str = DEFAULT_COLLECTION,
        create_payload_indexes: bool = True,
    ) -> None:
        self._client = client
        self._default_collection = default_collection
        self._create_payload_indexes = create_payload_indexes
        # A collection's dimension never changes while it exists, so it is read once and kept.
        self._dimensions: dict[str, int] = {}
        self._creation_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    async def open(
        cls,
        *,
        url: str | None = None,
        api_key: str | None = None,
        timeout_s: int | None = None,
        path: Path | str | None = None,
        location: str | None = None,
        default_collection: str = DEFAULT_COLLECTION,
        check_compatibility: bool = True,
    ) -> QdrantArtworkStore:
        """A store on a Qdrant server (`url`, optional `api_key`/`timeout_s`), on embedded storage in the
        folder `path` (created if missing; one process at a time), or on a client `location`.
        `check_compatibility`: let the client compare its version with the server's (it warns)."""
        if sum(option is not None for option in (url, path, location)) != 1:
            raise ValueError("give exactly one of url, path or location")
        if path is not None:
            folder = Path(path)
            await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
            try:
                local = await LocalQdrantClient.open(folder)
            except RuntimeError as exc:  # the folder is locked by another process
                raise StoreUnavailable(f"cannot open local Qdrant storage at {folder}: {exc}") from exc
            # Local mode ignores payload indexes (and warns when asked for them).
            return cls(local, default_collection=default_collection, create_payload_indexes=False)
        client = AsyncQdrantClient(
            url=url,
            location=location,
            api_key=api_key,
            timeout=timeout_s,
            check_compatibility=check_compatibility,
        )
        return cls(client, default_collection=default_collection)

    # --- ArtworkStore -------------------------------------------------------------------------------

    async def upsert(self, collection: str, items: Sequence[IndexedArtwork]) -> int:
        name = self._resolve(collection)
        if not items:
            return 0
        # Checking and converting thousands of vectors is CPU work: off the event loop.
        points, dimension = await asyncio.to_thread(_to_points, items)
        await self._ensure_collection(name, dimension)
        try:
            await self._write(name, points)
        except _CollectionGone:  # deleted by another client since this store saw it: start it afresh
            self._dimensions.pop(name, None)
            await self._ensure_collection(name, dimension)
            await self._write(name, points)
        return len(points)

    async def _write(self, name: str, points: Sequence[models.PointStruct]) -> None:
        for start in range(0, len(points), UPSERT_CHUNK):
            with _backend_errors(f"upsert into {name!r}"):
                await self._client.upsert(name, points=points[start : start + UPSERT_CHUNK], wait=True)

    async def search(
        self,
        collection: str,
        query: np.ndarray | Sequence[float],
        limit: int,
        offset: int = 0,
        filter: ArtworkFilter = NO_FILTER,
    ) -> list[ScoredArtwork]:
        name = self._resolve(collection)
        vector = as_unit_vector(query, "query vector")
        dimension = await self._dimension(name)
        if dimension is None:
            return []
        if vector.shape[0] != dimension:
            raise InvalidStoreRequest(
                f"query vector has dimension {vector.shape[0]}, "
                f"but collection {name!r} holds {dimension}-d vectors"
            )
        response = await self._read(
            name,
            lambda: self._client.query_points(
                name,
                query=vector.tolist(),
                limit=limit,
                offset=offset or None,
                query_filter=_to_qdrant_filter(filter),
                with_payload=True,
                with_vectors=False,
            ),
        )
        if response is None:
            return []
        return [ScoredArtwork(_to_record(point.payload), float(point.score)) for point in response.points]

    async def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> GetResult:
        name = self._resolve(collection)
        requested = unique_in_order(ids)
        if not requested or await self._dimension(name) is None:
            return GetResult([], requested)
        records = await self._read(
            name,
            lambda: self._client.retrieve(
                name, ids=[point_id(i) for i in requested], with_payload=True, with_vectors=with_vectors
            ),
        )
        by_id = {str(record.payload.get("id")): record for record in records or () if record.payload}
        found = [_to_indexed(by_id[i], with_vectors) for i in requested if i in by_id]
        return GetResult(found, [i for i in requested if i not in by_id])

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        name = self._resolve(collection)
        # Qdrant does not say how many points a delete removed: look them up first.
        existing = (await self.get(name, ids)).found
        if not existing:
            return 0
        selector = models.PointIdsList(points=[point_id(item.artwork.id) for item in existing])
        result = await self._read(
            name, lambda: self._client.delete(name, points_selector=selector, wait=True)
        )
        return 0 if result is None else len(existing)

    async def count(self, collection: str, filter: ArtworkFilter = NO_FILTER) -> int:
        name = self._resolve(collection)
        if await self._dimension(name) is None:
            return 0
        result = await self._read(
            name, lambda: self._client.count(name, count_filter=_to_qdrant_filter(filter), exact=True)
        )
        return 0 if result is None else int(result.count)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()

    # --- collections --------------------------------------------------------------------------------

    def _resolve(self, collection: str) -> str:
        return collection or self._default_collection

    async def _dimension(self, name: str) -> int | None:
        """The collection's vector size, or None when it does not exist."""
        if name in self._dimensions:
            return self._dimensions[name]
        with _backend_errors(f"look up collection {name!r}"):
            if not await self._client.collection_exists(name):
                return None
            try:
                info = await self._client.get_collection(name)
            except UnexpectedResponse as exc:
                if exc.status_code == 404:  # deleted in between by another client
                    return None
                raise
        vectors = info.config.params.vectors
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(f"collection {name!r} has named vectors: it was not created by this service")
        self._dimensions[name] = vectors.size
        return vectors.size

    async def _ensure_collection(self, name: str, dimension: int) -> None:
        existing = await self._dimension(name)
        if existing is None:
            async with self._creation_lock:
                existing = await self._dimension(name) or await self._create_collection(name, dimension)
        if existing != dimension:
            raise InvalidStoreRequest(
                f"vectors have dimension {dimension}, but collection {name!r} holds {existing}-d vectors"
            )

    async def _create_collection(self, name: str, dimension: int) -> int:
        vectors = models.VectorParams(size=dimension, distance=models.Distance.COSINE)
        try:
            with _backend_errors(f"create collection {name!r}"):
                await self._client.create_collection(name, vectors_config=vectors)
        except (InvalidStoreRequest, ValueError):
            # Another process created it first (a server answers 409, local mode raises ValueError):
            # its dimension is what counts.
            existing = await self._dimension(name)
            if existing is None:
                raise
            return existing
        log.info("created collection", extra={"collection": name, "dimension": dimension})
        if self._create_payload_indexes:
            for field_name, schema in PAYLOAD_INDEXES.items():
                with _backend_errors(f"index {field_name!r} of {name!r}"):
                    await self._client.create_payload_index(
                        name, field_name=field_name, field_schema=schema, wait=True
                    )
        self._dimensions[name] = dimension
        return dimension

    async def _read(self, name: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Runs a call on an existing collection; None if the collection vanished meanwhile."""
        try:
            with _backend_errors(f"access collection {name!r}"):
                return await call()
        except _CollectionGone:
            self._dimensions.pop(name, None)
            return None


class _CollectionGone(StoreError):
    """A server answered 404 for a collection this store knew: someone else deleted it."""


@contextlib.contextmanager
def _backend_errors(action: str) -> Iterator[None]:
    """Turns qdrant-client and transport failures into the store's own errors."""
    try:
        yield
    except StoreError:
        raise
    except UnexpectedResponse as exc:
        detail = _response_detail(exc)
        if exc.status_code == 404:
            raise _CollectionGone(f"{action}: not found ({detail})") from exc
        if exc.status_code in (400, 409, 422):
            raise InvalidStoreRequest(f"Qdrant rejected the request to {action}: {detail}") from exc
        raise StoreUnavailable(f"Qdrant failed to {action}: HTTP {exc.status_code} {detail}") from exc
    except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
        raise StoreUnavailable(f"Qdrant is unreachable (while trying to {action}): {exc}") from exc


def _response_detail(exc: UnexpectedResponse) -> str:
    try:
        status = exc.structured().get("status")
    except Exception:  # a body that is not JSON
        return exc.content.decode("utf-8", "replace")[:300]
    return str(status.get("error", status)) if isinstance(status, dict) else str(status)


# --- conversions ------------------------------------------------------------------------------------


def _to_points(items: Sequence[IndexedArtwork]) -> tuple[list[models.PointStruct], int]:
    unique, dimension = validated_batch(items)
    return [_to_point(item) for item in unique], dimension


def _to_point(item: IndexedArtwork) -> models.PointStruct:
    vector = np.asarray(item.vector, dtype=np.float32)
    payload = _to_payload(item.artwork)
    return models.PointStruct(id=point_id(item.artwork.id), vector=vector.tolist(), payload=payload)


def _to_payload(artwork: ArtworkRecord) -> dict[str, Any]:
    return {
        "id": artwork.id,
        "title": artwork.title,
        "artist": artwork.artist,
        "artist_key": artist_key(artwork.artist),
        "style": artwork.style,
        "genre": artwork.genre,
        "year": int(artwork.year),
        "image_uri": artwork.image_uri,
        "catalogue": artwork.catalogue,
        "extra": dict(artwork.extra),
    }


def _to_record(payload: Mapping[str, Any] | None) -> ArtworkRecord:
    payload = payload or {}
    return ArtworkRecord(
        id=str(payload.get("id", "")),
        title=str(payload.get("title", "")),
        artist=str(payload.get("artist", "")),
        style=str(payload.get("style", "")),
        genre=str(payload.get("genre", "")),
        year=int(payload.get("year") or 0),
        image_uri=str(payload.get("image_uri", "")),
        catalogue=str(payload.get("catalogue", "")),
        extra={str(k): str(v) for k, v in (payload.get("extra") or {}).items()},
    )


def _to_indexed(record: models.Record, with_vectors: bool) -> IndexedArtwork:
    vector = None
    if with_vectors and record.vector is not None:
        vector = np.asarray(record.vector, dtype=np.float32)
    return IndexedArtwork(_to_record(record.payload), vector)


def _to_qdrant_filter(artwork_filter: ArtworkFilter) -> models.Filter | None:
    if artwork_filter.is_empty():
        return None
    must: list[models.Condition] = []
    any_of = {
        "artist_key": [artist_key(a) for a in artwork_filter.artists],
        "style": list(artwork_filter.styles),
        "genre": list(artwork_filter.genres),
    }
    for key, values in any_of.items():
        if values:
            must.append(models.FieldCondition(key=key, match=models.MatchAny(any=unique_in_order(values))))
    if artwork_filter.year_min is not None or artwork_filter.year_max is not None:
        year_range = models.Range(gte=artwork_filter.year_min, lte=artwork_filter.year_max)
        must.append(models.FieldCondition(key="year", range=year_range))
    must_not: list[models.Condition] = []
    if artwork_filter.exclude_ids:
        excluded = models.MatchAny(any=unique_in_order(artwork_filter.exclude_ids))
        must_not.append(models.FieldCondition(key="id", match=excluded))
    return models.Filter(must=must or None, must_not=must_not or None)
