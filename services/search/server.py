"""gRPC servicer of `artsearch.v1.SearchService`: validates requests, converts protobuf ⇄ store records."""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

import grpc
import numpy as np

from artsearch.grpc_server import ServiceRegistration
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.search.region_scores import DEFAULT_REGION_MARGIN
from services.search.store import (
    COLLECTION_NAME,
    EDITABLE_FIELDS,
    MAX_REGIONS,
    ArtworkFilter,
    ArtworkRecord,
    ArtworkStore,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
    NotFound,
    ScoredArtwork,
    StoreError,
    StoreUnavailable,
    UnsupportedOperation,
)

log = logging.getLogger(__name__)

SERVICE_NAME = search_pb2.DESCRIPTOR.services_by_name["SearchService"].full_name

MAX_LIMIT = 1000
MAX_OFFSET = 10_000
MAX_IDS = 10_000
MAX_UPSERT_ITEMS = 10_000
MAX_SCROLL_LIMIT = 1000
MAX_SNAPSHOT_NAME = 255
MAX_EXTRA_CHANGES = 1000

Request = TypeVar("Request")
Response = TypeVar("Response")


class BadRequest(ValueError):
    """The request breaks the API's rules; the message says how."""


def _status_for(exc: Exception) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, BadRequest | InvalidStoreRequest):
        return grpc.StatusCode.INVALID_ARGUMENT, str(exc)
    if isinstance(exc, NotFound):
        return grpc.StatusCode.NOT_FOUND, str(exc)
    if isinstance(exc, UnsupportedOperation):
        return grpc.StatusCode.UNIMPLEMENTED, str(exc)
    if isinstance(exc, StoreUnavailable):
        log.warning("storage unavailable", extra={"error": str(exc)})
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    if isinstance(exc, StoreError):
        log.error("storage error", extra={"error": str(exc)})
        return grpc.StatusCode.FAILED_PRECONDITION, str(exc)
    log.exception("unexpected error while serving a search request")
    return grpc.StatusCode.INTERNAL, f"internal error in the search service ({type(exc).__name__})"


def _rpc(
    handler: Callable[[SearchService, Request, grpc.aio.ServicerContext], Awaitable[Response]],
) -> Callable[[SearchService, Request, grpc.aio.ServicerContext], Awaitable[Response]]:
    """Every failure becomes a status with a message: bad input INVALID_ARGUMENT, a storage outage
    UNAVAILABLE, anything unforeseen INTERNAL (logged); the exception never escapes the handler."""

    @functools.wraps(handler)
    async def guarded(self: SearchService, request: Request, context: grpc.aio.ServicerContext) -> Response:
        try:
            return await handler(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            code, message = _status_for(exc)
        await context.abort(code, message)  # raises: the RPC ends with this status

    return guarded


class SearchService(search_pb2_grpc.SearchServiceServicer):
    """Serves `SearchService` from any `ArtworkStore`."""

    def __init__(self, store: ArtworkStore, region_margin: float = DEFAULT_REGION_MARGIN) -> None:
        self._store = store
        self._region_margin = region_margin  # when a request gives none

    @_rpc
    async def Upsert(
        self, request: search_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        collection = _collection(request.collection)
        if len(request.items) > MAX_UPSERT_ITEMS:
            raise BadRequest(f"too many items: {len(request.items)} > {MAX_UPSERT_ITEMS} per request")
        # Thousands of vectors to copy out of protobuf: CPU work, off the event loop.
        items = await asyncio.to_thread(_items_from_proto, request.items)
        upserted = await self._store.upsert(collection, items)
        return search_pb2.UpsertResponse(upserted=upserted)

    @_rpc
    async def Search(
        self, request: search_pb2.SearchRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SearchResponse:
        collection = _collection(request.collection)
        if not 1 <= request.limit <= MAX_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_LIMIT}, got {request.limit}")
        if not 0 <= request.offset <= MAX_OFFSET:
            raise BadRequest(f"offset must be between 0 and {MAX_OFFSET}, got {request.offset}")
        query = np.asarray(request.query.values, dtype=np.float32)
        part_query = (
            np.asarray(request.part_query.values, dtype=np.float32)
            if request.HasField("part_query")
            else None
        )
        hits = await self._store.search(
            collection,
            query,
            request.limit,
            request.offset,
            _filter_from_proto(request.filter),
            parts=[(part.offset, part.length) for part in request.parts],
            part_query=part_query,
            match_regions=request.match_regions,
            region_margin=_region_margin(request, self._region_margin),
        )
        return search_pb2.SearchResponse(
            hits=[_scored_to_proto(hit) for hit in hits],
            regions_matched=request.match_regions and any(hit.region_score is not None for hit in hits),
        )

    @_rpc
    async def Get(
        self, request: search_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.GetResponse:
        collection = _collection(request.collection)
        ids = _ids(request.ids)
        found, missing = await self._store.get(collection, ids, with_vectors=request.with_embeddings)
        return search_pb2.GetResponse(items=[_indexed_to_proto(item) for item in found], missing_ids=missing)

    @_rpc
    async def Delete(
        self, request: search_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.DeleteResponse:
        deleted = await self._store.delete(_collection(request.collection), _ids(request.ids))
        return search_pb2.DeleteResponse(deleted=deleted)

    @_rpc
    async def Count(
        self, request: search_pb2.CountRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.CountResponse:
        count = await self._store.count(_collection(request.collection), _filter_from_proto(request.filter))
        return search_pb2.CountResponse(count=count)

    @_rpc
    async def Scroll(
        self, request: search_pb2.ScrollRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ScrollResponse:
        collection = _collection(request.collection)
        if not 1 <= request.limit <= MAX_SCROLL_LIMIT:
            raise BadRequest(f"limit must be between 1 and {MAX_SCROLL_LIMIT}, got {request.limit}")
        page = await self._store.scroll(
            collection,
            request.limit,
            request.cursor,
            _filter_from_proto(request.filter),
            with_vectors=request.with_embeddings,
        )
        items = await asyncio.to_thread(lambda: [_indexed_to_proto(item) for item in page.items])
        return search_pb2.ScrollResponse(items=items, next_cursor=page.next_cursor)

    @_rpc
    async def CreateSnapshot(
        self, request: search_pb2.CreateSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.Snapshot:
        snapshot = await self._store.create_snapshot(_collection(request.collection))
        return search_pb2.Snapshot(
            name=snapshot.name,
            collection=snapshot.collection,
            size_bytes=snapshot.size_bytes,
            created_at=snapshot.created_at,
        )

    @_rpc
    async def RestoreSnapshot(
        self, request: search_pb2.RestoreSnapshotRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.RestoreSnapshotResponse:
        collection = _collection(request.collection)
        if not request.name or len(request.name) > MAX_SNAPSHOT_NAME or "/" in request.name:
            raise BadRequest(f"invalid snapshot name {request.name!r}")
        count = await self._store.restore_snapshot(collection, request.name)
        return search_pb2.RestoreSnapshotResponse(count=count)

    @_rpc
    async def SetAlias(
        self, request: search_pb2.SetAliasRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.SetAliasResponse:
        alias = _name("alias", request.alias)
        if not request.collection:
            previous = await self._store.delete_alias(alias)
            return search_pb2.SetAliasResponse(alias=alias, previous_collection=previous)
        collection = _name("collection", request.collection)
        change = await self._store.set_alias(alias, collection, request.replace_collection)
        log.info(
            "alias switched",
            extra={"alias": alias, "collection": collection, "previous": change.previous_collection},
        )
        return search_pb2.SetAliasResponse(
            alias=change.alias,
            collection=change.collection,
            previous_collection=change.previous_collection,
            replaced_collection=change.replaced_collection,
        )

    @_rpc
    async def ListAliases(
        self, request: search_pb2.ListAliasesRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.ListAliasesResponse:
        aliases = await self._store.list_aliases()
        return search_pb2.ListAliasesResponse(
            aliases=[search_pb2.CollectionAlias(alias=a, collection=c) for a, c in aliases.items()]
        )

    @_rpc
    async def UpdateArtwork(
        self, request: search_pb2.UpdateArtworkRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.UpdateArtworkResponse:
        collection = _collection(request.collection)
        if not request.id:
            raise BadRequest("id is empty")
        updated = await self._store.update_metadata(collection, request.id, _changes_from_proto(request))
        return search_pb2.UpdateArtworkResponse(
            artwork=_artwork_to_proto(updated.current), previous=_artwork_to_proto(updated.previous)
        )


def search_registration(service: SearchService) -> ServiceRegistration:
    return ServiceRegistration(
        SERVICE_NAME, lambda server: search_pb2_grpc.add_SearchServiceServicer_to_server(service, server)
    )


# --- validation -------------------------------------------------------------------------------------


def _collection(name: str) -> str:
    """The collection name as given; empty means the store's default collection."""
    if name and not COLLECTION_NAME.fullmatch(name):
        raise BadRequest(f"invalid collection name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ -")
    return name


def _name(field: str, name: str) -> str:
    """A required alias or collection name."""
    if not COLLECTION_NAME.fullmatch(name):
        raise BadRequest(f"invalid {field} name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ -")
    return name


def _ids(ids: Sequence[str]) -> list[str]:
    if len(ids) > MAX_IDS:
        raise BadRequest(f"too many ids: {len(ids)} > {MAX_IDS} per request")
    for index, artwork_id in enumerate(ids):
        if not artwork_id:
            raise BadRequest(f"ids[{index}] is empty")
    return list(ids)


def _non_empty_values(field: str, values: Sequence[str]) -> tuple[str, ...]:
    for index, value in enumerate(values):
        if not value.strip():
            raise BadRequest(f"filter.{field}[{index}] is empty")
    return tuple(values)


def _filter_from_proto(message: search_pb2.Filter) -> ArtworkFilter:
    year_min = message.year_min if message.HasField("year_min") else None
    year_max = message.year_max if message.HasField("year_max") else None
    if year_min is not None and year_max is not None and year_min > year_max:
        raise BadRequest(f"filter.year_min ({year_min}) is greater than filter.year_max ({year_max})")
    return ArtworkFilter(
        artists=_non_empty_values("artists", message.artists),
        styles=_non_empty_values("styles", message.styles),
        genres=_non_empty_values("genres", message.genres),
        year_min=year_min,
        year_max=year_max,
        exclude_ids=_non_empty_values("exclude_ids", message.exclude_ids),
        exclude_style_labels=_non_empty_values("exclude_style_labels", message.exclude_style_labels),
    )


def _changes_from_proto(request: search_pb2.UpdateArtworkRequest) -> MetadataChanges:
    extra_changes = len(request.set_extra) + len(request.remove_extra)
    if extra_changes > MAX_EXTRA_CHANGES:
        raise BadRequest(f"too many extra keys: {extra_changes} > {MAX_EXTRA_CHANGES} per request")
    return MetadataChanges(
        **{name: getattr(request, name) for name in EDITABLE_FIELDS if request.HasField(name)},
        set_extra=dict(request.set_extra),
        remove_extra=tuple(request.remove_extra),
    )


# --- conversions ------------------------------------------------------------------------------------


def _items_from_proto(items: Sequence[search_pb2.IndexedArtwork]) -> list[IndexedArtwork]:
    return [_indexed_from_proto(index, item) for index, item in enumerate(items)]


def _indexed_from_proto(index: int, item: search_pb2.IndexedArtwork) -> IndexedArtwork:
    if not item.artwork.id:
        raise BadRequest(f"items[{index}] has no artwork id")
    vector = np.asarray(item.embedding.values, dtype=np.float32)
    if len(item.regions) > MAX_REGIONS:
        raise BadRequest(f"items[{index}] has {len(item.regions)} regions, more than {MAX_REGIONS}")
    lengths = {len(region.values) for region in item.regions}
    if len(lengths) > 1 or (lengths and lengths != {len(vector)}):
        raise BadRequest(f"items[{index}] regions must all have the embedding's {len(vector)} values")
    regions = (
        np.asarray([region.values for region in item.regions], dtype=np.float32) if item.regions else None
    )
    return IndexedArtwork(_artwork_from_proto(item.artwork), vector, regions)


def _region_margin(request: search_pb2.SearchRequest, default: float) -> float:
    if not request.HasField("region_margin"):
        return default
    if not 0.0 <= request.region_margin <= 1.0:  # NaN fails both
        raise BadRequest(f"region_margin must be between 0 and 1, got {request.region_margin}")
    return request.region_margin


def _scored_to_proto(hit: ScoredArtwork) -> search_pb2.ScoredArtwork:
    message = search_pb2.ScoredArtwork(
        artwork=_artwork_to_proto(hit.artwork), score=hit.score, part_projections=hit.part_projections
    )
    if hit.whole_score is not None:
        message.whole_score = hit.whole_score
    if hit.region_score is not None:
        message.region_score = hit.region_score
    message.region_matched = hit.region_matched
    return message


def _artwork_from_proto(artwork: common_pb2.Artwork) -> ArtworkRecord:
    return ArtworkRecord(
        id=artwork.id,
        title=artwork.title,
        artist=artwork.artist,
        style=artwork.style,
        genre=artwork.genre,
        year=artwork.year,
        image_uri=artwork.image_uri,
        catalogue=artwork.catalogue,
        extra=dict(artwork.extra),
    )


def _artwork_to_proto(record: ArtworkRecord) -> common_pb2.Artwork:
    return common_pb2.Artwork(
        id=record.id,
        title=record.title,
        artist=record.artist,
        style=record.style,
        genre=record.genre,
        year=record.year,
        image_uri=record.image_uri,
        catalogue=record.catalogue,
        extra=dict(record.extra),
    )


def _indexed_to_proto(item: IndexedArtwork) -> search_pb2.IndexedArtwork:
    message = search_pb2.IndexedArtwork(artwork=_artwork_to_proto(item.artwork))
    if item.vector is not None:
        message.embedding.values.extend(item.vector.tolist())
    return message
