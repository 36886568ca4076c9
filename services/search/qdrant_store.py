"""`ArtworkStore` on Qdrant through the real `qdrant-client` API: a Qdrant server (one node or a distributed
cluster), or qdrant-client's local mode (a pure-Python brute force, for small data and tests).

One unnamed cosine vector per artwork point, and in collections with regions, region points with the
named vector "regions" (services.search.region_scores); point ids and payload as in `payload.py`. A server
collection is created with the configured shard number, replication factor, write consistency and
optional int8 scalar quantization, and with its payload indexes before the first point. Every call is
idempotent (deterministic point ids), so transient failures (transport errors, 429, 5xx) are retried with
exponential backoff before the store gives up with StoreUnavailable.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import numpy as np
from qdrant_client import AsyncQdrantClient, QdrantClient, models
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from artsearch.artists import artist_key
from services.search.part_scores import masked_part_queries, projections_by_id
from services.search.payload import (
    INTEGER_FIELDS,
    KEYWORD_FIELDS,
    REGION_OF_FIELD,
    STYLE_LABELS_FIELD,
    changed_fields,
    extra_path,
    parse_cursor,
    point_id,
    region_point_id,
    to_indexed,
    to_payload,
    to_record,
    to_region_payload,
)
from services.search.region_scores import (
    REGIONS_VECTOR,
    RegionSearchScores,
    needed_lookups,
    region_list_limit,
)
from services.search.store import (
    DEFAULT_COLLECTION,
    NO_FILTER,
    AliasChange,
    ArtworkFilter,
    ArtworkRecord,
    GetResult,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
    NotFound,
    ScoredArtwork,
    ScrollPage,
    SnapshotInfo,
    StoreError,
    StoreUnavailable,
    UnsupportedOperation,
    UpdatedArtwork,
    as_unit_vector,
    checked_changes,
    checked_collection_name,
    unique_in_order,
    validated_batch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["QdrantArtworkStore", "QdrantServerSettings", "point_id"]

# Payload fields that filters use, and their index types (a Qdrant server uses them; local mode does not).
PAYLOAD_INDEXES: Mapping[str, models.PayloadSchemaType] = {
    **{name: models.PayloadSchemaType.KEYWORD for name in KEYWORD_FIELDS},
    **{name: models.PayloadSchemaType.INTEGER for name in INTEGER_FIELDS},
}

# HTTP statuses worth another try: overloaded, restarting or failing over.
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
# Part projections score a handful of points: exactly, on the original vectors (never the int8 copies).
_EXACT = models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))


@dataclass(frozen=True)
class QdrantServerSettings:
    """How collections are laid out on a Qdrant server or cluster, and how hard calls are retried.

    `shard_number` > 1 spreads a collection over the nodes of a distributed cluster (and over cores on
    one node); `replication_factor` copies each shard to that many nodes; `write_consistency_factor` is
    how many replicas must acknowledge a write. They apply when this service creates a collection.
    """

    shard_number: int = 1
    replication_factor: int = 1
    write_consistency_factor: int = 1
    # int8 scalar quantization kept in RAM, the original vectors rescoring the best candidates.
    quantization: bool = False
    # Points per upsert request: keeps a batch of ~2k-d vectors well under Qdrant's 32 MB request limit.
    upsert_batch: int = 256
    # Further tries after a transient failure, and the first pause (doubled at each try).
    retries: int = 3
    retry_backoff_s: float = 0.2
    # Where the server keeps snapshots (its --snapshots-path; the official image's default), for restores.
    snapshots_path: str = "/qdrant/snapshots"
    # Candidates examined per HNSW search; None: the server's (the collection's ef_construct, 100). As the
    # embedded engine's SEARCH_HNSW_EF (the same engine): at the gateway's pool of 100, ef 100 found 0.94 of
    # the exact top 100 of visitor photos, 400 found 0.998 (bench/search_recall.py, docs/search.md).
    search_ef: int | None = 400

    def search_params(self) -> models.SearchParams | None:
        return None if self.search_ef is None else models.SearchParams(hnsw_ef=self.search_ef)


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

    async def query_batch_points(self, collection_name: str, **kwargs: Any) -> list[models.QueryResponse]:
        return await self._call(self._client.query_batch_points, collection_name, **kwargs)

    async def retrieve(self, collection_name: str, **kwargs: Any) -> list[models.Record]:
        return await self._call(self._client.retrieve, collection_name, **kwargs)

    async def delete(self, collection_name: str, **kwargs: Any) -> models.UpdateResult:
        return await self._call(self._client.delete, collection_name, **kwargs)

    async def batch_update_points(self, collection_name: str, **kwargs: Any) -> list[models.UpdateResult]:
        return await self._call(self._client.batch_update_points, collection_name, **kwargs)

    async def count(self, collection_name: str, **kwargs: Any) -> models.CountResult:
        return await self._call(self._client.count, collection_name, **kwargs)

    async def scroll(self, collection_name: str, **kwargs: Any) -> tuple[list[models.Record], Any]:
        return await self._call(self._client.scroll, collection_name, **kwargs)

    async def update_collection_aliases(self, **kwargs: Any) -> bool:
        return await self._call(self._client.update_collection_aliases, **kwargs)

    async def get_aliases(self) -> models.CollectionsAliasesResponse:
        return await self._call(self._client.get_aliases)

    async def delete_collection(self, collection_name: str) -> bool:
        return await self._call(self._client.delete_collection, collection_name)

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
        settings: QdrantServerSettings | None = None,
        server: bool = True,
    ) -> None:
        self._client = client
        self._default_collection = checked_collection_name(default_collection)
        self._settings = settings or QdrantServerSettings()
        if not server:  # local mode scans every point, and warns at every search that asks for an ef
            self._settings = replace(self._settings, search_ef=None)
        # A server builds payload indexes and takes snapshots; local mode does neither.
        self._server = server
        # A collection's dimension never changes while it exists, so it is read once and kept.
        self._dimensions: dict[str, int] = {}
        # Read with its dimension: whether each collection's whole vector is the unnamed one among named
        # vectors, and whether it holds region points (services.search.region_scores; collections made
        # before them, or with the old regions multivector, do not: searched and written without regions).
        self._named: dict[str, bool] = {}
        self._regions: dict[str, bool] = {}
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
        settings: QdrantServerSettings | None = None,
        ca_cert: str | None = None,
        check_compatibility: bool = True,
    ) -> QdrantArtworkStore:
        """A store on a Qdrant server (`url`: http:// or https://, optional `api_key`, `timeout_s`, and
        `ca_cert`, a CA bundle to verify the server's TLS certificate with), on embedded storage in the
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
            return cls(local, default_collection=default_collection, settings=settings, server=False)
        tls: dict[str, Any] = {"verify": ca_cert} if ca_cert else {}
        client = AsyncQdrantClient(
            url=url,
            location=location,
            api_key=api_key,
            timeout=timeout_s,
            check_compatibility=check_compatibility,
            **tls,
        )
        return cls(client, default_collection=default_collection, settings=settings, server=url is not None)

    # --- ArtworkStore -------------------------------------------------------------------------------

    async def upsert(self, collection: str, items: Sequence[IndexedArtwork]) -> int:
        name = self._resolve(collection)
        if not items:
            return 0
        # Checking and converting thousands of vectors is CPU work: off the event loop.
        unique, dimension = await asyncio.to_thread(validated_batch, items)
        await self._ensure_collection(name, dimension)
        try:
            await self._write(name, unique)
        except _CollectionGone:  # deleted by another client since this store saw it: start it afresh
            self._dimensions.pop(name, None)
            await self._ensure_collection(name, dimension)
            await self._write(name, unique)
        return len(unique)

    async def _write(self, name: str, items: Sequence[IndexedArtwork]) -> None:
        """Per batch of artworks, in this order: their points, a delete of their old region points (an
        upsert replaces an artwork with its regions, or without any), their new region points, `batch`
        points a request. A failure in between leaves at worst these artworks with their old regions or
        none, never a region without its artwork."""
        named, regions = self._named.get(name, False), self._regions.get(name, False)
        if not regions and any(item.regions is not None for item in items):
            log.warning(
                "collection made before regions existed: region descriptors not stored",
                extra={"collection": name},
            )
        batch = self._settings.upsert_batch
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            points = await asyncio.to_thread(lambda chunk=chunk: [_to_point(item, named) for item in chunk])
            await self._upsert_points(name, points)
            if not regions:
                continue
            selector = models.FilterSelector(filter=_regions_of([item.artwork.id for item in chunk]))
            await self._call(
                f"replace regions in {name!r}",
                lambda selector=selector: self._client.delete(  # type: ignore[misc]
                    name, points_selector=selector, wait=True
                ),
            )
            region_points = await asyncio.to_thread(
                lambda chunk=chunk: [point for item in chunk for point in _region_points(item)]
            )
            for first in range(0, len(region_points), batch):
                await self._upsert_points(name, region_points[first : first + batch])

    async def _upsert_points(self, name: str, points: list[models.PointStruct]) -> None:
        await self._call(f"upsert into {name!r}", lambda: self._client.upsert(name, points=points, wait=True))

    async def search(
        self,
        collection: str,
        query: np.ndarray | Sequence[float],
        limit: int,
        offset: int = 0,
        filter: ArtworkFilter = NO_FILTER,
        parts: Sequence[tuple[int, int]] = (),
        part_query: np.ndarray | None = None,
        match_regions: bool = False,
        region_margin: float = 0.0,
    ) -> list[ScoredArtwork]:
        name = self._resolve(collection)
        vector = as_unit_vector(query, "query vector")
        masked = masked_part_queries(vector if part_query is None else part_query, parts, len(vector))
        dimension = await self._dimension(name)
        if dimension is None:
            return []
        if vector.shape[0] != dimension:
            dimension = await self._fresh_dimension(name)  # an alias may have moved (another replica)
        if vector.shape[0] != dimension:
            raise InvalidStoreRequest(
                f"query vector has dimension {vector.shape[0]}, "
                f"but collection {name!r} holds {dimension}-d vectors"
            )
        if match_regions and self._regions.get(name, False):
            return await self._search_regions(name, vector, (offset, limit), filter, masked, region_margin)
        response = await self._read(
            name,
            lambda: self._client.query_points(
                name,
                query=vector.tolist(),
                limit=limit,
                offset=offset or None,
                query_filter=_to_qdrant_filter(filter),
                search_params=self._settings.search_params(),
                with_payload=True,
                with_vectors=False,
            ),
        )
        if response is None:
            return []
        projections = await self._part_projections(name, [point.id for point in response.points], masked)
        return [
            ScoredArtwork(
                to_record(point.payload),
                float(point.score),
                projections.get(point.id, ()),
                whole_score=float(point.score) if match_regions else None,
            )
            for point in response.points
        ]

    async def _search_regions(
        self,
        name: str,
        vector: np.ndarray,
        page: tuple[int, int],
        artwork_filter: ArtworkFilter,
        masked: Sequence[np.ndarray | None],
        margin: float,
    ) -> list[ScoredArtwork]:
        """Region matching (services.search.region_scores): the whole vector and the regions searched in
        one batch request, the scores each hit lacks looked up exactly, the two lists merged."""
        query = vector.tolist()
        offset, limit = page
        depth = offset + limit
        qdrant_filter = _to_qdrant_filter(artwork_filter)
        params = self._settings.search_params()
        requests = [
            models.QueryRequest(
                query=query, filter=qdrant_filter, limit=depth, with_payload=True, params=params
            ),
            models.QueryRequest(
                query=query,
                using=REGIONS_VECTOR,
                filter=_to_qdrant_filter(artwork_filter, regions=True),
                limit=region_list_limit(depth),
                with_payload=[REGION_OF_FIELD],
                params=params,
            ),
        ]
        answers = await self._read(name, lambda: self._client.query_batch_points(name, requests=requests))
        if answers is None:
            return []
        whole_points, region_points = answers[0].points, answers[1].points
        scores = RegionSearchScores.of(whole_points, region_points)
        by_regions = needed_lookups(scores.whole, scores.regions, depth, margin)
        if by_regions:
            # Their artwork points, scored and read; the filter checked on the artwork's own payload. A
            # region whose artwork point is gone or does not pass (a failure between writes) is dropped.
            scores.add_artworks(await self._exact_points(name, query, by_regions, qdrant_filter))
        hits = scores.page(offset, limit, margin)
        projections = await self._part_projections(name, [hit.point_id for hit in hits], masked)
        return [
            ScoredArtwork(
                to_record(scores.payloads[hit.point_id]),
                hit.score,
                projections.get(hit.point_id, ()),
                whole_score=hit.whole_score,
                region_score=hit.region_score,
                region_matched=hit.region_matched,
            )
            for hit in hits
            if not masked or hit.point_id in projections  # a hit deleted meanwhile is left out
        ]

    async def _exact_points(
        self, name: str, query: list[float], point_ids: list[Any], within: models.Filter | None
    ) -> list[models.ScoredPoint]:
        """These artwork points (only those that pass `within`) scored exactly by `query`, with payloads."""
        conditions: list[models.Condition] = [models.HasIdCondition(has_id=point_ids)]
        only_these = models.Filter(must=conditions if within is None else [*conditions, within])
        response = await self._read(
            name,
            lambda: self._client.query_points(
                name,
                query=query,
                query_filter=only_these,
                limit=len(point_ids),
                with_payload=True,
                search_params=_EXACT,
            ),
        )
        return [] if response is None else list(response.points)

    async def _part_projections(
        self, name: str, point_ids: list[Any], masked: Sequence[np.ndarray | None]
    ) -> dict[Any, tuple[float, ...]]:
        """The hits scored again, exactly, by each masked query (part_scores), in one batch request."""
        if not masked or not point_ids:
            return {}
        only_these = models.Filter(must=[models.HasIdCondition(has_id=point_ids)])
        queries = [
            models.QueryRequest(query=vector.tolist(), filter=only_these, limit=len(point_ids), params=_EXACT)
            for vector in masked
            if vector is not None
        ]
        answers = (
            await self._read(name, lambda: self._client.query_batch_points(name, requests=queries))
            if queries
            else []
        )
        if answers is None:  # the collection went away meanwhile
            return {}
        scores = [{point.id: point.score for point in answer.points} for answer in answers]
        return projections_by_id(point_ids, masked, scores)

    async def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> GetResult:
        name = self._resolve(collection)
        requested = unique_in_order(ids)
        if not requested or await self._dimension(name) is None:
            return GetResult([], requested)
        records = await self._read(
            name,
            lambda: self._client.retrieve(
                name,
                ids=[point_id(i) for i in requested],
                with_payload=True,
                with_vectors=self._whole_vector(name, with_vectors),
            ),
        )
        by_id = {str(record.payload.get("id")): record for record in records or () if record.payload}
        found = [to_indexed(by_id[i], with_vectors) for i in requested if i in by_id]
        return GetResult(found, [i for i in requested if i not in by_id])

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        name = self._resolve(collection)
        # Qdrant does not say how many points a delete removed: look them up first.
        existing = (await self.get(name, ids)).found
        if self._regions.get(name, False) and ids:
            # The regions first (of every id asked for: also clears regions a failure left orphaned), so
            # that a failure in between leaves an artwork without regions, never regions without artwork.
            regions = models.FilterSelector(filter=_regions_of(unique_in_order(ids)))
            await self._read(name, lambda: self._client.delete(name, points_selector=regions, wait=True))
        if not existing:
            return 0
        selector = models.PointIdsList(points=[point_id(item.artwork.id) for item in existing])
        result = await self._read(
            name, lambda: self._client.delete(name, points_selector=selector, wait=True)
        )
        return 0 if result is None else len(existing)

    async def update_metadata(
        self, collection: str, artwork_id: str, changes: MetadataChanges
    ) -> UpdatedArtwork:
        """One request of up to three payload operations on the point, applied in order: set the changed
        top-level fields (derived ones included), set the given keys inside `extra`, delete the removed
        `extra` keys. Qdrant writes only the keys an operation names, so concurrent edits of different
        fields or different extra keys (from any replica) both stay; and an operation on a point that does
        not exist fails (404; local mode: KeyError) instead of creating it, so an edit racing a delete
        never brings the artwork back: it answers NotFound.

        Atomicity: each operation is atomic on the point. On a server the three are not one transaction:
        a reader may see the fields changed before the extra keys, and a delete landing between two of
        them stops the rest (NotFound; the point stays deleted). Local mode and `:memory:` run the whole
        request in one call that nothing else interleaves with. `previous` is read just before the
        request and `current` just after it: another client's edit may fall in between (last writer wins
        on the same field)."""
        changes = checked_changes(artwork_id, changes)
        name = self._resolve(collection)
        previous = await self._stored_record(name, artwork_id)
        operations = _payload_operations(point_id(artwork_id), changes)
        if self._regions.get(name, False):
            # Region points carry the filterable fields: rewritten after the artwork's (on a server, a
            # failure in between leaves them stale; a region match is checked against the artwork's own
            # payload, see _search_regions).
            region_payload = to_region_payload(changes.applied_to(previous))
            overwrite = models.SetPayload(payload=region_payload, filter=_regions_of([artwork_id]))
            operations.append(models.OverwritePayloadOperation(overwrite_payload=overwrite))
        try:
            await self._call(
                f"edit artwork {artwork_id!r} in {name!r}",
                lambda: self._client.batch_update_points(name, update_operations=operations, wait=True),
            )
        except (_CollectionGone, KeyError):  # the point (or its collection) is gone: nothing was created
            raise NotFound(f"no artwork {artwork_id!r}") from None
        return UpdatedArtwork(previous, await self._stored_record(name, artwork_id))

    async def _stored_record(self, name: str, artwork_id: str) -> ArtworkRecord:
        found = (await self.get(name, [artwork_id])).found
        if not found:
            raise NotFound(f"no artwork {artwork_id!r}")
        return found[0].artwork

    async def count(self, collection: str, filter: ArtworkFilter = NO_FILTER) -> int:
        name = self._resolve(collection)
        if await self._dimension(name) is None:
            return 0
        result = await self._read(
            name,
            lambda: self._client.count(
                name, count_filter=self._artworks_only(name, _to_qdrant_filter(filter)), exact=True
            ),
        )
        return 0 if result is None else int(result.count)

    async def scroll(
        self,
        collection: str,
        limit: int,
        cursor: str = "",
        filter: ArtworkFilter = NO_FILTER,
        with_vectors: bool = False,
    ) -> ScrollPage:
        name = self._resolve(collection)
        start = parse_cursor(cursor)
        if await self._dimension(name) is None:
            return ScrollPage([], "")
        result = await self._read(
            name,
            lambda: self._client.scroll(
                name,
                scroll_filter=self._artworks_only(name, _to_qdrant_filter(filter)),
                limit=limit,
                offset=start,
                with_payload=True,
                with_vectors=self._whole_vector(name, with_vectors),
            ),
        )
        if result is None:
            return ScrollPage([], "")
        records, following = result
        items = [to_indexed(record, with_vectors) for record in records]
        return ScrollPage(items, "" if following is None else str(following))

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        name = self._resolve(collection)
        self._require_server("snapshots")
        if await self._dimension(name) is None:
            raise InvalidStoreRequest(f"collection {name!r} does not exist")
        client = self._server_client()
        description = await self._call(f"snapshot {name!r}", lambda: client.create_snapshot(name, wait=True))
        if description is None:
            raise StoreUnavailable(f"Qdrant did not describe the snapshot of {name!r}")
        created = description.creation_time or datetime.datetime.now(datetime.UTC).isoformat()
        return SnapshotInfo(description.name, name, int(description.size), str(created))

    async def restore_snapshot(self, collection: str, name: str) -> int:
        """Recovers a snapshot the server holds (in `settings.snapshots_path`, under the collection it was
        taken from: single-node servers; a cluster restores per node with Qdrant's own tools)."""
        target = self._resolve(collection)
        self._require_server("snapshots")
        client = self._server_client()
        source = _snapshot_collection(name)
        location = f"file://{self._settings.snapshots_path.rstrip('/')}/{source}/{name}"
        await self._call(
            f"restore snapshot {name!r} into {target!r}",
            lambda: client.recover_snapshot(target, location=location, wait=True),
        )
        self._dimensions.pop(target, None)
        return await self.count(target)

    async def set_alias(self, alias: str, collection: str, replace_collection: bool = False) -> AliasChange:
        """One `update_collection_aliases` call (delete + create when the alias moves): atomic on the
        server. With `replace_collection`, the collection named `alias` is deleted first (a separate call:
        for that moment the name answers as an empty collection)."""
        alias, collection = checked_collection_name(alias), checked_collection_name(collection)
        if alias == collection:
            raise InvalidStoreRequest(f"alias {alias!r} cannot point at itself")
        aliases = await self.list_aliases()
        if collection in aliases:
            raise InvalidStoreRequest(f"{collection!r} is an alias: point {alias!r} at a collection")
        if not await self._exists(collection):
            raise NotFound(f"collection {collection!r} does not exist")
        replaced = ""
        if alias not in aliases and await self._exists(alias):
            self._check_replaceable(alias, replace_collection, aliases)
            await self._call(f"drop collection {alias!r}", lambda: self._client.delete_collection(alias))
            replaced = alias
        operations: list[models.AliasOperations] = []
        if alias in aliases:
            operations.append(models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias)))
        operations.append(
            models.CreateAliasOperation(
                create_alias=models.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
        await self._call(
            f"point alias {alias!r} at {collection!r}",
            lambda: self._client.update_collection_aliases(change_aliases_operations=operations),
        )
        self._dimensions.pop(alias, None)
        return AliasChange(alias, collection, aliases.get(alias, ""), replaced)

    @staticmethod
    def _check_replaceable(name: str, replace_collection: bool, aliases: Mapping[str, str]) -> None:
        if not replace_collection:
            raise InvalidStoreRequest(
                f"{name!r} is a collection; set replace_collection to drop it and put the alias in its place"
            )
        pointing = sorted(alias for alias, target in aliases.items() if target == name)
        if pointing:
            raise InvalidStoreRequest(f"collection {name!r} cannot be replaced: aliases {pointing} use it")

    async def delete_alias(self, alias: str) -> str:
        alias = checked_collection_name(alias)
        aliases = await self.list_aliases()
        if alias not in aliases:
            raise NotFound(f"alias {alias!r} does not exist")
        operation = models.DeleteAliasOperation(delete_alias=models.DeleteAlias(alias_name=alias))
        await self._call(
            f"remove alias {alias!r}",
            lambda: self._client.update_collection_aliases(change_aliases_operations=[operation]),
        )
        self._dimensions.pop(alias, None)
        return aliases[alias]

    async def list_aliases(self) -> dict[str, str]:
        response = await self._call("list aliases", lambda: self._client.get_aliases())
        return dict(sorted((a.alias_name, a.collection_name) for a in response.aliases))

    async def _exists(self, name: str) -> bool:
        return bool(await self._call(f"look up {name!r}", lambda: self._client.collection_exists(name)))

    async def _fresh_dimension(self, name: str) -> int | None:
        """The dimension read again from the server: the cached one is stale when `name` is an alias that
        moved to a collection of another dimension."""
        self._dimensions.pop(name, None)
        return await self._dimension(name)

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            await self._client.close()

    # --- collections --------------------------------------------------------------------------------

    def _resolve(self, collection: str) -> str:
        return checked_collection_name(collection or self._default_collection)

    def _whole_vector(self, name: str, with_vectors: bool) -> bool | list[str]:
        """What to read back of a point's vectors: the whole picture's alone."""
        return [""] if with_vectors and self._named.get(name, False) else with_vectors

    def _artworks_only(self, name: str, qdrant_filter: models.Filter | None) -> models.Filter | None:
        """`qdrant_filter` restricted to artwork points (count and scroll list artworks, not regions)."""
        if not self._regions.get(name, False):
            return qdrant_filter
        artwork: models.Condition = models.IsEmptyCondition(is_empty=models.PayloadField(key=REGION_OF_FIELD))
        return models.Filter(must=[artwork] if qdrant_filter is None else [artwork, qdrant_filter])

    def _require_server(self, what: str) -> None:
        if not self._server:
            raise UnsupportedOperation(f"qdrant-client's local mode has no {what}: use a Qdrant server")

    def _server_client(self) -> AsyncQdrantClient:
        assert isinstance(self._client, AsyncQdrantClient)
        return self._client

    async def _dimension(self, name: str) -> int | None:
        """The collection's vector size, or None when it does not exist."""
        if name in self._dimensions:
            return self._dimensions[name]
        if not await self._call(f"look up collection {name!r}", lambda: self._client.collection_exists(name)):
            return None
        try:
            info = await self._call(f"look up collection {name!r}", lambda: self._client.get_collection(name))
        except _CollectionGone:  # deleted in between by another client
            return None
        vectors = info.config.params.vectors
        named = regions = False
        if isinstance(vectors, dict) and "" in vectors:  # made with regions (see _collection_options)
            named = True
            region_vector = vectors.get(REGIONS_VECTOR)
            # The old layout's regions were a multivector in the artwork's point: searched as without.
            regions = region_vector is not None and region_vector.multivector_config is None
            vectors = vectors[""]
        if not isinstance(vectors, models.VectorParams):
            raise StoreError(f"collection {name!r} has named vectors: it was not created by this service")
        self._dimensions[name], self._named[name], self._regions[name] = vectors.size, named, regions
        return vectors.size

    async def _ensure_collection(self, name: str, dimension: int) -> None:
        existing = await self._dimension(name)
        if existing is not None and existing != dimension:
            existing = await self._fresh_dimension(name)
        if existing is None:
            async with self._creation_lock:
                existing = await self._dimension(name) or await self._create_collection(name, dimension)
        if existing != dimension:
            raise InvalidStoreRequest(
                f"vectors have dimension {dimension}, but collection {name!r} holds {existing}-d vectors"
            )

    async def _create_collection(self, name: str, dimension: int) -> int:
        try:
            await self._call(
                f"create collection {name!r}",
                lambda: self._client.create_collection(name, **self._collection_options(dimension)),
            )
        except (InvalidStoreRequest, ValueError):
            # Another process created it first (a server answers 409, local mode raises ValueError):
            # its dimension is what counts.
            existing = await self._dimension(name)
            if existing is None:
                raise
            return existing
        log.info("created collection", extra={"collection": name, "dimension": dimension})
        if self._server:
            # Before the first point: the HNSW graph is then built knowing the filter fields.
            for field_name, schema in PAYLOAD_INDEXES.items():
                await self._call(
                    f"index {field_name!r} of {name!r}",
                    lambda field_name=field_name, schema=schema: self._client.create_payload_index(
                        name, field_name=field_name, field_schema=schema, wait=True
                    ),
                )
        self._dimensions[name], self._named[name], self._regions[name] = dimension, True, True
        return dimension

    def _collection_options(self, dimension: int) -> dict[str, Any]:
        # The whole picture's vector keeps the default name (""), on artwork points; region points have
        # only the "regions" vector, HNSW-indexed and quantized like the whole one (region_scores: not a
        # MaxSim multivector in the artwork's point, which had to be scanned without a graph).
        options: dict[str, Any] = {
            "vectors_config": {
                "": models.VectorParams(size=dimension, distance=models.Distance.COSINE),
                REGIONS_VECTOR: models.VectorParams(size=dimension, distance=models.Distance.COSINE),
            }
        }
        if not self._server:
            return options  # local mode has no shards, replicas or quantization
        settings = self._settings
        options.update(
            shard_number=settings.shard_number,
            replication_factor=settings.replication_factor,
            write_consistency_factor=settings.write_consistency_factor,
        )
        if settings.quantization:
            options["quantization_config"] = models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=0.99, always_ram=True
                )
            )
        return options

    async def _call(self, action: str, call: Callable[[], Awaitable[T]]) -> T:
        """Runs one client call, retrying transient failures; store errors say what failed."""
        pause = self._settings.retry_backoff_s
        for attempt in range(self._settings.retries + 1):
            try:
                with _backend_errors(action):
                    return await call()
            except _Transient as exc:
                if attempt == self._settings.retries:
                    raise StoreUnavailable(str(exc)) from exc.__cause__
                log.warning("retrying Qdrant call", extra={"action": action, "error": str(exc)})
                await asyncio.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")

    async def _read(self, name: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """Runs a call on an existing collection; None if the collection vanished meanwhile."""
        try:
            return await self._call(f"access collection {name!r}", call)
        except _CollectionGone:
            self._dimensions.pop(name, None)
            return None


class _CollectionGone(StoreError):
    """A server answered 404 for a collection this store knew: someone else deleted it."""


class _Transient(StoreUnavailable):
    """A failure that another try may not meet: the server was unreachable, overloaded or restarting."""


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
        if exc.status_code in TRANSIENT_STATUSES:
            raise _Transient(f"Qdrant failed to {action}: HTTP {exc.status_code} {detail}") from exc
        raise StoreUnavailable(f"Qdrant failed to {action}: HTTP {exc.status_code} {detail}") from exc
    except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
        raise _Transient(f"Qdrant is unreachable (while trying to {action}): {exc}") from exc
    except NotImplementedError as exc:  # local mode lacks some server features
        raise UnsupportedOperation(f"cannot {action} here: {exc}") from exc


def _response_detail(exc: UnexpectedResponse) -> str:
    try:
        status = exc.structured().get("status")
    except Exception:  # a body that is not JSON
        return exc.content.decode("utf-8", "replace")[:300]
    return str(status.get("error", status)) if isinstance(status, dict) else str(status)


# --- conversions ------------------------------------------------------------------------------------


def _to_point(item: IndexedArtwork, named: bool) -> models.PointStruct:
    """The artwork's point: its whole vector (by its name, "", where the collection has named vectors)."""
    whole = np.asarray(item.vector, dtype=np.float32).tolist()
    vector: Any = {"": whole} if named else whole
    return models.PointStruct(id=point_id(item.artwork.id), vector=vector, payload=to_payload(item.artwork))


def _region_points(item: IndexedArtwork) -> list[models.PointStruct]:
    """The artwork's region points (none when it has no regions)."""
    if item.regions is None:
        return []
    payload = to_region_payload(item.artwork)
    rows = np.asarray(item.regions, dtype=np.float32).tolist()
    return [
        models.PointStruct(
            id=region_point_id(item.artwork.id, index), vector={REGIONS_VECTOR: row}, payload=payload
        )
        for index, row in enumerate(rows)
    ]


def _regions_of(artwork_ids: Sequence[str]) -> models.Filter:
    """The region points of these artworks."""
    belongs = models.FieldCondition(key=REGION_OF_FIELD, match=models.MatchAny(any=list(artwork_ids)))
    return models.Filter(must=[belongs])


def _payload_operations(point: str, changes: MetadataChanges) -> list[models.UpdateOperation]:
    operations: list[models.UpdateOperation] = []
    fields = changed_fields(changes)
    if fields:
        operations.append(
            models.SetPayloadOperation(set_payload=models.SetPayload(payload=fields, points=[point]))
        )
    if changes.set_extra:
        # Keys of a payload set under `key` are taken literally (dots included), merged into `extra`.
        extra = dict(changes.set_extra)
        operations.append(
            models.SetPayloadOperation(
                set_payload=models.SetPayload(payload=extra, points=[point], key="extra")
            )
        )
    if changes.remove_extra:
        keys = [extra_path(key) for key in changes.remove_extra]
        operations.append(
            models.DeletePayloadOperation(delete_payload=models.DeletePayload(keys=keys, points=[point]))
        )
    return operations


def _snapshot_collection(name: str) -> str:
    """The collection a server snapshot was taken from: Qdrant names collection snapshots
    `<collection>-<peer id>-<YYYY-MM-DD-HH-MM-SS>.snapshot`."""
    stem = name.removesuffix(".snapshot")
    parts = stem.split("-")
    if stem == name or len(parts) < 8 or "/" in name:
        raise InvalidStoreRequest(f"invalid snapshot name {name!r}")
    return checked_collection_name("-".join(parts[:-7]))


def _to_qdrant_filter(artwork_filter: ArtworkFilter, regions: bool = False) -> models.Filter | None:
    """The filter of artwork points, or with `regions` of region points (the same fields, but excluded
    artworks are named by `region_of`)."""
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
        must_not.append(models.FieldCondition(key=REGION_OF_FIELD if regions else "id", match=excluded))
    if artwork_filter.exclude_style_labels:
        kinds = models.MatchAny(any=unique_in_order(artwork_filter.exclude_style_labels))
        must_not.append(models.FieldCondition(key=STYLE_LABELS_FIELD, match=kinds))
    return models.Filter(must=must or None, must_not=must_not or None)
