"""`ArtworkStore` on qdrant-edge: Qdrant's own engine (HNSW, payload indexes, WAL) inside this process.

Layout under the data folder (one process at a time: a lock file says so):

    <root>/.lock
    <root>/aliases.json                   alias -> collection (requests naming an alias use its collection)
    <root>/<collection>/collection.json   dimension and format of the collection
    <root>/<collection>/shard/artworks/   the artworks' EdgeShard (segments + WAL)
    <root>/<collection>/shard/regions/    the region points' EdgeShard
    <root>/snapshots/<name>.snapshot      tar archives written by create_snapshot

Every collection has an EdgeShard with one unnamed cosine vector per artwork point and one of region points
(services.search.region_scores), each with one unnamed cosine vector and the artwork's filter fields; they
are copied, built, swapped, archived and restored together, as one shard folder (edge_files). Collections
made before regions have their one EdgeShard in `shard/` itself. Payload indexes are created with the
shards, before the first point, so that the HNSW graphs later built over them know the filter fields.

Indexing. New points land in an appendable segment that Qdrant searches exactly (brute force); only its
optimizer turns segments into HNSW-indexed ones. `EdgeShard.optimize()` keeps the GIL for the whole build
(minutes at 100k points), which would freeze every thread of this process, gRPC health checks included.
So the build runs in a child process (`services.search.edge_indexer`) on a copy of the shard, and the
copy replaces the live shard when it is done:

1. quiet for `index_delay_s` after a write, with at least `index_threshold` unindexed points: flush,
   copy `shard/` to `shard.building/` (writes wait for the copy, reads go on), start recording writes;
2. the child optimises the copy at low CPU priority while this process keeps serving from `shard/`;
3. swap (reads and writes wait, about a second): close the shards, `shard` -> `shard.old`,
   `shard.building` -> `shard`, load, replay the recorded writes, flush, drop `shard.old`.

While `shard.old` exists it is the authoritative copy: a crash during a swap is undone at the next open.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import IO, Any, TypeVar

import numpy as np
import qdrant_edge as edge

from artsearch.artists import artist_key
from artsearch.fault_injection import crash_point
from services.search import edge_files
from services.search.edge_files import Shards, Write, apply_write
from services.search.part_scores import masked_part_queries, projections_by_id
from services.search.payload import (
    REGION_OF_FIELD,
    STYLE_LABELS_FIELD,
    changed_fields,
    parse_cursor,
    point_id,
    region_point_id,
    to_indexed,
    to_payload,
    to_record,
    to_region_payload,
)
from services.search.region_scores import (
    RegionSearchScores,
    needed_lookups,
    region_list_limit,
)
from services.search.store import (
    DEFAULT_COLLECTION,
    MAX_REGIONS,
    NO_FILTER,
    AliasChange,
    ArtworkFilter,
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
    UpdatedArtwork,
    as_unit_vector,
    checked_changes,
    checked_collection_name,
    unique_in_order,
    validated_batch,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

SOURCE_ROOT = Path(__file__).resolve().parents[2]
VECTOR_DATATYPES = {
    "float32": edge.VectorStorageDatatype.Float32,
    "float16": edge.VectorStorageDatatype.Float16,
}
# Quantized candidates fetched per result before rescoring with the original vectors.
QUANTIZED_OVERSAMPLING = 2.0
# Part projections score a handful of points: exactly, on the original vectors (never the int8 copies).
_EXACT = edge.SearchParams(exact=True, quantization=edge.QuantizationSearchParams(ignore=True))
SNAPSHOT_SUFFIX = ".snapshot"
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}-\d{8}T\d{6}(\.\d+)?Z" + re.escape(SNAPSHOT_SUFFIX))


@dataclass(frozen=True)
class EdgeSettings:
    """How collections are indexed and searched (fixed when a collection is created, except the search
    and background-build settings)."""

    hnsw_m: int = 16
    hnsw_ef_construct: int = 100
    # Candidates examined per HNSW search; None lets Qdrant choose (ef_construct). 400: on real visitor-photo
    # queries (bench/search_recall.py) 200 missed the exact top-1 in 0.8 % of the artworks' searches and
    # 2.5 % of the region points', 400 in 0 % and 0.8 %, for +0.35 and +1.0 ms (docs/search.md).
    search_ef: int | None = 400
    # int8 scalar quantization: a quarter of the vector memory scanned per query; the original vectors
    # rescore the best candidates.
    quantization: bool = False
    # How the vectors are stored: "float16" (measured at 100k x 2664-d: 0.82 instead of 1.37 GB resident,
    # 1.9 instead of 3.4 GB for a build, recall@10 0.991 instead of 0.9995) or "float32".
    vector_datatype: str = "float16"
    # Original vectors left on disk, read through the page cache when needed (with quantization, only
    # to rescore), instead of kept cached in memory.
    vectors_on_disk: bool = False
    # Unindexed points that make a background HNSW build worth it; below this, exact search is as fast.
    index_threshold: int = 2000
    # Seconds without writes before a build starts (a bulk load is indexed once, at its end).
    index_delay_s: float = 5.0
    # Points per engine call: bounds the memory of one upsert whatever the request size.
    upsert_batch: int = 256
    # Writes recorded during a build beyond this many points: the build is thrown away and redone later.
    max_replay_points: int = 200_000
    # Threads running engine calls (reads release the GIL, so they overlap).
    threads: int = 4


@dataclass
class _Build:
    """A background build in progress: the child process and the writes it will miss."""

    process: asyncio.subprocess.Process | None = None
    replay: list[Write] = field(default_factory=list)
    replay_points: int = 0
    overflowed: bool = False


class _Gate:
    """Engine calls share the gate; a shard swap or close holds it alone."""

    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._sharing = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @contextlib.asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
            self._sharing += 1
        try:
            yield
        finally:
            async with self._condition:
                self._sharing -= 1
                self._condition.notify_all()

    @contextlib.asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        async with self._condition:
            self._exclusive_waiting += 1
            try:
                await self._condition.wait_for(lambda: not self._exclusive and not self._sharing)
            finally:
                self._exclusive_waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            async with self._condition:
                self._exclusive = False
                self._condition.notify_all()


class _Collection:
    """One open collection: its shards and what guards them."""

    def __init__(
        self, name: str, folder: Path, dimension: int, shards: Shards, layout: tuple[bool, bool]
    ) -> None:
        self.name = name
        self.folder = folder
        self.dimension = dimension
        self.shards = shards
        # edge_files.layout: whether the whole vector is the unnamed one among named vectors, and whether
        # the collection has a region shard (collections made before regions, or with the old multivector
        # layout, do not: they are searched and written as without regions).
        self.named, self.regions = layout
        self.gate = _Gate()
        # Serialises writes, so that a copy or a swap sees no write half-done and the replay keeps order.
        self.write_lock = asyncio.Lock()
        self.build: _Build | None = None
        self.build_lock = asyncio.Lock()
        self.build_task: asyncio.Task[None] | None = None
        self.last_write = 0.0
        self.dirty = False  # written since the last build was planned
        self.dropped = False  # replaced by an alias: requests that still hold it must not touch the shard


class EdgeArtworkStore:
    """`ArtworkStore` with a shard folder per collection under `root`. Build it with `open(root)`."""

    def __init__(self, root: Path, lock: IO[bytes], settings: EdgeSettings, default_collection: str) -> None:
        self._root = root
        self._lock = lock
        self._settings = settings
        self._default_collection = default_collection
        self._collections: dict[str, _Collection] = {}
        self._opening = asyncio.Lock()
        # alias -> collection. `_resolve` reads it without a lock: a change replaces the whole dict, so a
        # request sees the aliases before or after a switch, never half of one.
        self._aliases: dict[str, str] = {}
        self._alias_lock = asyncio.Lock()
        self._executor = ThreadPoolExecutor(max_workers=settings.threads, thread_name_prefix="qdrant-edge")
        # Qdrant-edge does not rescore quantized candidates unless asked: without it, scores are int8
        # approximations and near-ties swap. Asked always, since any collection may be quantized (the
        # setting applies when a collection is created); collections without quantization ignore it.
        self._search_params = edge.SearchParams(
            hnsw_ef=settings.search_ef,
            quantization=edge.QuantizationSearchParams(rescore=True, oversampling=QUANTIZED_OVERSAMPLING),
        )
        self._closed = False

    @classmethod
    async def open(
        cls,
        root: Path | str,
        *,
        settings: EdgeSettings | None = None,
        default_collection: str = DEFAULT_COLLECTION,
    ) -> EdgeArtworkStore:
        """The store in folder `root` (created if missing). StoreUnavailable when another process has it."""
        folder = Path(root)
        lock = await asyncio.to_thread(edge_files.lock_folder, folder)
        store = cls(folder, lock, settings or EdgeSettings(), checked_collection_name(default_collection))
        store._aliases = await asyncio.to_thread(edge_files.read_aliases, folder)
        for name in await asyncio.to_thread(store._stored_collection_names):
            collection = await store._collection(name)
            if collection is not None:
                store._plan_build(collection)  # indexes whatever a crash or a restart left unindexed
        return store

    # --- ArtworkStore -------------------------------------------------------------------------------

    async def upsert(self, collection: str, items: Sequence[IndexedArtwork]) -> int:
        name = self._resolve(collection)
        if not items:
            return 0
        unique, dimension = await self._call(validated_batch, items)
        target = await self._collection(name, create_dimension=dimension)
        assert target is not None
        if target.dimension != dimension:
            raise InvalidStoreRequest(
                f"vectors have dimension {dimension}, "
                f"but collection {name!r} holds {target.dimension}-d vectors"
            )
        if not target.regions and any(item.regions is not None for item in unique):
            log.warning(
                "collection made before regions existed: region descriptors not stored",
                extra={"collection": name},
            )
        async with target.write_lock:
            # Read under the write lock, so that the operations below match what is stored.
            stored = await self._stored_regions(target, [item.artwork.id for item in unique])
            operations, points = await self._call(
                _upsert_operations, unique, target.named, stored, self._settings.upsert_batch
            )
            await self._apply(target, operations, points=points)
        return len(unique)

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
        vector = as_unit_vector(query, "query vector")
        masked = masked_part_queries(vector if part_query is None else part_query, parts, len(vector))
        target = await self._collection(self._resolve(collection))
        if target is None:
            return []
        _check_dimension(target, vector.shape[0], "query vector")
        if match_regions and target.regions:
            filters = _to_edge_filter(filter), _to_edge_filter(filter, regions=True)
            params = self._search_params
            return await self._read(
                target,
                lambda shards: _search_regions(
                    shards, vector, (offset, limit), filters, params, masked, region_margin
                ),
            )
        request = edge.QueryRequest(
            limit=limit,
            offset=offset or None,
            query=edge.Query.Nearest(vector),
            filter=_to_edge_filter(filter),
            with_payload=True,
            params=self._search_params,
        )
        points, projections = await self._read(
            target, lambda shards: _search_with_parts(shards.artworks, request, masked)
        )
        return [
            ScoredArtwork(
                to_record(point.payload),
                float(point.score),
                projection,
                whole_score=float(point.score) if match_regions else None,
            )
            for point, projection in zip(points, projections, strict=True)
        ]

    async def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> GetResult:
        requested = unique_in_order(ids)
        target = await self._collection(self._resolve(collection))
        if not requested or target is None:
            return GetResult([], requested)
        by_id = await self._retrieve(target, requested, with_vectors)
        found = [by_id[i] for i in requested if i in by_id]
        return GetResult(found, [i for i in requested if i not in by_id])

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        target = await self._collection(self._resolve(collection))
        requested = unique_in_order(ids)
        if target is None or not requested:
            return 0
        async with target.write_lock:
            # Qdrant does not say how many points a delete removed: look them up first (under the write
            # lock, so that the answer matches what this delete did).
            existing = list(await self._retrieve(target, requested, with_vectors=False))
            regions = [
                point
                for ids in (await self._stored_regions(target, requested) or {}).values()
                for point in ids
            ]
            operations: list[Write] = []
            if regions:
                # The regions first (of every id asked for: also clears regions a crash left orphaned), so
                # that a crash in between leaves an artwork without regions, never regions without artwork.
                operations.append((edge.UpdateOperation.delete_points(regions), True))
            if existing:
                deleted = [point_id(i) for i in existing]
                operations.append((edge.UpdateOperation.delete_points(deleted), False))
            if operations:
                await self._apply(target, operations, points=len(existing))
        return len(existing)

    async def update_metadata(
        self, collection: str, artwork_id: str, changes: MetadataChanges
    ) -> UpdatedArtwork:
        """Atomic: under the collection's write lock (every write of this store takes it, and one process
        holds the folder), the stored record is read and one set-payload operation writes the changed
        fields (and the whole new `extra`) of that point; a search or get sees the record before or after
        it, never half of it, and a delete is wholly before (NotFound) or after. Recorded for replay like
        every write, so a background index build keeps it."""
        changes = checked_changes(artwork_id, changes)
        target = await self._collection(self._resolve(collection))
        if target is None:
            raise NotFound(f"no artwork {artwork_id!r}")
        async with target.write_lock:
            stored = await self._retrieve(target, [artwork_id], with_vectors=False)
            if artwork_id not in stored:
                raise NotFound(f"no artwork {artwork_id!r}")
            previous = stored[artwork_id].artwork
            current = changes.applied_to(previous)
            payload = changed_fields(changes)
            if changes.touches_extra():
                payload["extra"] = dict(current.extra)  # a top-level set replaces the object whole
            operations = [(edge.UpdateOperation.set_payload([point_id(artwork_id)], payload), False)]
            regions = (await self._stored_regions(target, [artwork_id]) or {}).get(artwork_id)
            if regions:
                # Region points carry the filterable fields: rewritten after the artwork's (a crash in
                # between leaves them stale; a region match is checked against the artwork's own payload).
                region_payload = to_region_payload(current)
                operations.append((edge.UpdateOperation.overwrite_payload(regions, region_payload), True))
            await self._apply(target, operations, points=1)
        return UpdatedArtwork(previous, current)

    async def count(self, collection: str, filter: ArtworkFilter = NO_FILTER) -> int:
        target = await self._collection(self._resolve(collection))
        if target is None:
            return 0
        request = edge.CountRequest(exact=True, filter=_to_edge_filter(filter))
        return int(await self._read(target, lambda shards: shards.artworks.count(request)))

    async def scroll(
        self,
        collection: str,
        limit: int,
        cursor: str = "",
        filter: ArtworkFilter = NO_FILTER,
        with_vectors: bool = False,
    ) -> ScrollPage:
        start = parse_cursor(cursor)
        target = await self._collection(self._resolve(collection))
        if target is None:
            return ScrollPage([], "")
        request = edge.ScrollRequest(
            offset=start,
            limit=limit,
            filter=_to_edge_filter(filter),
            with_payload=True,
            with_vector=_whole_vector(target, with_vectors),
        )
        records, following = await self._read(target, lambda shards: shards.artworks.scroll(request))
        items = [to_indexed(record, with_vectors) for record in records]
        return ScrollPage(items, "" if following is None else str(following))

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        target = await self._collection(self._resolve(collection))
        if target is None:
            raise InvalidStoreRequest(f"collection {self._resolve(collection)!r} does not exist")
        stamp = datetime.datetime.now(datetime.UTC)
        name = f"{target.name}-{stamp.strftime('%Y%m%dT%H%M%S.%f')}Z{SNAPSHOT_SUFFIX}"
        path = self._root / edge_files.SNAPSHOTS_FOLDER / name
        # No write may land half-way through the archive; reads go on.
        async with target.write_lock:
            await self._read(target, lambda shards: shards.flush())
            size = await self._call(edge_files.write_archive, target.folder, path)
        log.info("snapshot written", extra={"collection": target.name, "snapshot": name, "bytes": size})
        return SnapshotInfo(name, target.name, size, stamp.isoformat())

    async def restore_snapshot(self, collection: str, name: str) -> int:
        target_name = self._resolve(collection)
        archive = self._snapshot_path(name)
        existing = await self._collection(target_name)  # before unpacking: opening clears leftovers
        staging = self._root / target_name / edge_files.RESTORING
        await self._call(edge_files.unpack_snapshot, archive, staging, self._config_for)
        if existing is None:
            async with self._opening:
                folder = self._root / target_name
                shards, dimension = await self._call(edge_files.restore_into, folder, None)
                layout = await self._call(edge_files.layout, folder)
                existing = _Collection(target_name, folder, dimension, shards, layout)
                self._collections[target_name] = existing
        else:
            await self._cancel_build(existing)
            await _uncancellable(self._swap_snapshot_in(existing))
        log.info("snapshot restored", extra={"collection": target_name, "snapshot": name})
        self._plan_build(existing)
        return await self.count(target_name)

    async def set_alias(self, alias: str, collection: str, replace_collection: bool = False) -> AliasChange:
        alias, collection = checked_collection_name(alias), checked_collection_name(collection)
        async with self._alias_lock:
            self._resolve("")  # raises when closed
            if alias == collection:
                raise InvalidStoreRequest(f"alias {alias!r} cannot point at itself")
            if collection in self._aliases:
                raise InvalidStoreRequest(f"{collection!r} is an alias: point {alias!r} at a collection")
            if await self._collection(collection) is None:
                raise NotFound(f"collection {collection!r} does not exist")
            replaced = None if alias in self._aliases else await self._collection(alias)
            if replaced is not None:
                self._check_replaceable(alias, replace_collection)
            aliases = {**self._aliases, alias: collection}
            await self._call(edge_files.write_aliases, self._root, aliases)
            previous = self._aliases.get(alias, "")
            self._aliases = aliases  # the switch: from here every request naming `alias` uses `collection`
            if replaced is not None:
                await self._drop(replaced)
        log.info("alias set", extra={"alias": alias, "collection": collection, "previous": previous})
        return AliasChange(alias, collection, previous, replaced.name if replaced else "")

    def _check_replaceable(self, name: str, replace_collection: bool) -> None:
        if not replace_collection:
            raise InvalidStoreRequest(
                f"{name!r} is a collection; set replace_collection to drop it and put the alias in its place"
            )
        pointing = sorted(alias for alias, target in self._aliases.items() if target == name)
        if pointing:
            raise InvalidStoreRequest(f"collection {name!r} cannot be replaced: aliases {pointing} use it")

    async def delete_alias(self, alias: str) -> str:
        alias = checked_collection_name(alias)
        async with self._alias_lock:
            if alias not in self._aliases:
                raise NotFound(f"alias {alias!r} does not exist")
            aliases = {name: target for name, target in self._aliases.items() if name != alias}
            await self._call(edge_files.write_aliases, self._root, aliases)
            previous, self._aliases = self._aliases[alias], aliases
        return previous

    async def list_aliases(self) -> dict[str, str]:
        return dict(sorted(self._aliases.items()))

    async def _drop(self, collection: _Collection) -> None:
        """Closes and deletes a collection no request can reach any more (its name is now an alias)."""
        self._collections.pop(collection.name, None)
        await self._cancel_build(collection)
        async with collection.build_lock, collection.write_lock, collection.gate.exclusive():
            collection.dropped = True
            await self._call(collection.shards.close)
            await self._call(edge_files.drop_collection, collection.folder)
        log.info("collection dropped", extra={"collection": collection.name})

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for collection in list(self._collections.values()):
            await self._cancel_build(collection)  # a background build: its child is killed
            async with collection.build_lock, collection.gate.exclusive():
                await self._call(collection.shards.close)
        self._collections.clear()
        self._executor.shutdown(wait=True)
        self._lock.close()  # releases the lock

    # --- indexing -----------------------------------------------------------------------------------

    async def build_index(self, collection: str) -> bool:
        """Builds the HNSW index of everything written so far, now, and waits for it (bulk loads and
        benchmarks; the service relies on the background builds). True when something was indexed."""
        target = await self._collection(self._resolve(collection))
        if target is None:
            return False
        return await self._run_build(target, only_when_needed=False)

    async def index_status(self, collection: str) -> tuple[int, int]:
        """(points, points in HNSW-indexed segments) of a collection; (0, 0) when it does not exist."""
        target = await self._collection(self._resolve(collection))
        if target is None:
            return 0, 0
        infos = await self._shard_infos(target)
        return sum(int(i.points_count) for i in infos), sum(int(i.indexed_vectors_count) for i in infos)

    async def _shard_infos(self, collection: _Collection) -> list[Any]:
        """Each engine shard's info (points, indexed points), in `Shards.all()` order."""
        return await self._read(collection, lambda shards: [shard.info() for shard in shards.all()])

    async def _needs_build(self, collection: _Collection) -> bool:
        """Whether an engine shard holds as many unindexed points as its optimizer indexes from (its own
        threshold, `edge_files.indexing_thresholds`; the setting where it names none): the optimizer
        decides per shard, and a build it would leave as it was costs a copy and a swap that holds reads up
        (one after every burst of writes, and at every start, when the shards' unindexed points were summed
        against the setting)."""
        infos = await self._shard_infos(collection)
        thresholds = await self._call(edge_files.indexing_thresholds, collection.folder / edge_files.SHARD)
        return any(
            int(info.points_count) - int(info.indexed_vectors_count)
            >= (threshold or self._settings.index_threshold)
            for info, threshold in zip(infos, thresholds, strict=True)
        )

    def _plan_build(self, collection: _Collection) -> None:
        collection.dirty = True
        if self._closed or (collection.build_task is not None and not collection.build_task.done()):
            return
        collection.build_task = asyncio.get_running_loop().create_task(self._build_when_quiet(collection))

    async def _build_when_quiet(self, collection: _Collection) -> None:
        try:
            while True:
                quiet_for = time.monotonic() - collection.last_write
                if quiet_for < self._settings.index_delay_s:
                    await asyncio.sleep(self._settings.index_delay_s - quiet_for)
                    continue
                if not collection.dirty:
                    return
                collection.dirty = False
                await self._run_build(collection, only_when_needed=True)
        except asyncio.CancelledError:
            raise
        except Exception:  # a failed build leaves the live shard as it was: log and carry on serving
            log.exception("background index build failed", extra={"collection": collection.name})

    async def _run_build(self, collection: _Collection, only_when_needed: bool) -> bool:
        """One build at a time per collection: copy, index the copy in a child process, swap it in."""
        async with collection.build_lock:
            if only_when_needed and not await self._needs_build(collection):
                return False
            started = time.monotonic()
            build = _Build()
            copy = collection.folder / edge_files.BUILDING
            async with collection.write_lock:
                await self._read(collection, lambda shards: shards.flush())
                await self._call(edge_files.copy_shard, collection.folder / edge_files.SHARD, copy)
                collection.build = build
            crash_point("build.copied")
            copied = time.monotonic()
            try:
                report = await self._index_copy(build, copy)
                indexed = time.monotonic()
                if not report.get("optimized"):
                    # The copy is the live shard as it was: swapping it in would only hold reads up.
                    log.info("index build: nothing to index", extra={"collection": collection.name, **report})
                    return False
                if not await _uncancellable(self._swap_build_in(collection, build)):
                    return False
            finally:
                collection.build = None
                await self._call(edge_files.remove_tree, copy)
        log.info(
            "index built",
            extra={
                "collection": collection.name,
                "copy_seconds": round(copied - started, 2),
                "swap_seconds": round(time.monotonic() - indexed, 2),
                "replayed_points": build.replay_points,
                **report,
            },
        )
        return bool(report.get("optimized"))

    async def _index_copy(self, build: _Build, copy: Path) -> dict[str, Any]:
        """Runs the child process that optimises the copy; kills it if this build is cancelled."""
        build.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "services.search.edge_indexer",
            str(copy),
            str(os.getpid()),  # the child dies with this process rather than outlive it as an orphan
            cwd=SOURCE_ROOT,  # where `services` is importable from, whatever this process's directory
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        crash_point("build.indexing")
        try:
            stdout, stderr = await build.process.communicate()
        except BaseException:
            if build.process.returncode is None:
                build.process.kill()
                await build.process.wait()
            raise
        if build.process.returncode != 0:
            raise StoreError(f"index build failed: {stderr.decode(errors='replace')[-500:]}")
        return dict(json.loads(stdout.decode() or "{}"))

    async def _swap_build_in(self, collection: _Collection, build: _Build) -> bool:
        async with collection.write_lock:
            if build.overflowed:
                log.warning("index build dropped: too many writes meanwhile; it will be redone")
                self._plan_build(collection)
                return False
            async with collection.gate.exclusive():
                collection.shards = await self._swap(
                    collection,
                    partial(edge_files.swap_in, collection.folder, collection.shards, build.replay),
                )
        return True

    async def _swap_snapshot_in(self, collection: _Collection) -> None:
        async with collection.build_lock, collection.write_lock, collection.gate.exclusive():
            shards, dimension = await self._swap(
                collection, partial(edge_files.restore_into, collection.folder, collection.shards)
            )
            collection.shards, collection.dimension = shards, dimension
            collection.named, collection.regions = await self._call(edge_files.layout, collection.folder)

    async def _cancel_build(self, collection: _Collection) -> None:
        task = collection.build_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # --- collections --------------------------------------------------------------------------------

    def _resolve(self, collection: str) -> str:
        """The collection a request means: the name given (or the default), through its alias if any."""
        if self._closed:
            raise StoreUnavailable("the store is closed")
        name = checked_collection_name(collection or self._default_collection)
        return self._aliases.get(name, name)

    def _stored_collection_names(self) -> list[str]:
        return sorted(p.parent.name for p in self._root.glob(f"*/{edge_files.COLLECTION_FILE}"))

    async def _collection(self, name: str, create_dimension: int | None = None) -> _Collection | None:
        """The open collection `name`; opened from disk, or created when `create_dimension` is given;
        None when it does not exist."""
        found = self._collections.get(name)
        if found is not None:
            return found
        async with self._opening:
            found = self._collections.get(name)
            if found is None:
                folder = self._root / name
                opened = await self._call(
                    edge_files.open_collection,
                    folder,
                    create_dimension,
                    self._config_for,
                    True,  # every new collection can hold region points
                )
                if opened is None:
                    return None
                dimension, shards = opened
                layout = await self._call(edge_files.layout, folder)
                found = _Collection(name, folder, dimension, shards, layout)
                self._collections[name] = found
                if create_dimension is not None:
                    log.info("collection ready", extra={"collection": name, "dimension": dimension})
        return found

    def _config_for(self, dimension: int) -> edge.EdgeConfig:
        return edge_config(dimension, self._settings)

    def _snapshot_path(self, name: str) -> Path:
        if not SNAPSHOT_NAME.fullmatch(name):
            raise InvalidStoreRequest(f"invalid snapshot name {name!r}")
        path = self._root / edge_files.SNAPSHOTS_FOLDER / name
        if not path.is_file():
            raise InvalidStoreRequest(f"no snapshot named {name!r}")
        return path

    # --- engine calls -------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, partial(function, *args))
        except StoreError:
            raise
        except Exception as exc:  # qdrant-edge raises plain Exception with the engine's message
            raise StoreUnavailable(f"qdrant-edge failed: {exc}") from exc

    async def _read(self, collection: _Collection, call: Callable[[Shards], T]) -> T:
        async with collection.gate.shared():
            if collection.dropped:
                raise StoreUnavailable(f"collection {collection.name!r} was replaced meanwhile: try again")
            return await self._call(call, collection.shards)

    async def _swap(self, collection: _Collection, replace: Callable[[], T]) -> T:
        """Runs a shard replacement (the caller holds the gate alone); if it fails, the collection keeps
        serving from its old shard, reopened."""
        try:
            return await self._call(replace)
        except edge_files.SwapFailed as failed:
            collection.shards = failed.shards
            raise StoreError(str(failed)) from failed

    async def _retrieve(
        self, collection: _Collection, ids: Sequence[str], with_vectors: bool
    ) -> dict[str, IndexedArtwork]:
        point_ids = [point_id(i) for i in ids]
        records = await self._read(
            collection,
            lambda shards: shards.artworks.retrieve(
                point_ids, with_payload=True, with_vector=_whole_vector(collection, with_vectors)
            ),
        )
        items = [to_indexed(record, with_vectors) for record in records]
        return {item.artwork.id: item for item in items}

    async def _stored_regions(
        self, collection: _Collection, artwork_ids: Sequence[str]
    ) -> dict[str, list[str]] | None:
        """{artwork id: the ids of its stored region points} of these artworks (those with any); None in a
        collection without region points. Writes know from it what to delete or rewrite, so that an
        artwork without regions costs no engine operation (and a crash point) more than before."""
        if not collection.regions:
            return None
        request = edge.ScrollRequest(
            limit=len(artwork_ids) * MAX_REGIONS,
            filter=_regions_of(artwork_ids),
            with_payload=[REGION_OF_FIELD],
            with_vector=False,
        )
        records, _ = await self._read(collection, lambda shards: _region_shard(shards).scroll(request))
        stored: dict[str, list[str]] = {}
        for record in records:
            stored.setdefault(str((record.payload or {}).get(REGION_OF_FIELD)), []).append(str(record.id))
        return stored

    async def _apply(self, collection: _Collection, operations: list[Write], points: int) -> None:
        """Applies writes (the caller holds the write lock), and records them for a build in progress."""

        def apply_all(shards: Shards) -> None:
            for operation in operations:
                apply_write(shards, operation)
                crash_point("write.applied")  # an engine batch in, the call not answered yet

        await self._read(collection, apply_all)
        collection.last_write = time.monotonic()
        build = collection.build
        if build is not None and not build.overflowed:
            build.replay.extend(operations)
            build.replay_points += points
            if build.replay_points > self._settings.max_replay_points:
                build.overflowed = True
                build.replay.clear()
        self._plan_build(collection)


async def _uncancellable(coroutine: Coroutine[Any, Any, T]) -> T:
    """Runs a shard swap to its end even if the caller is cancelled meanwhile (a half-done swap would
    leave the collection without an open shard); the caller's cancellation is raised afterwards."""
    task = asyncio.ensure_future(coroutine)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await task
        raise


def edge_config(dimension: int, settings: EdgeSettings) -> edge.EdgeConfig:
    """The qdrant-edge shard configuration for vectors of `dimension` under these settings: one unnamed
    cosine vector per point, stored, quantized and HNSW-indexed as the settings say. The same for the
    artworks' shard and the region points' (one region per point: services.search.region_scores). Not a
    MaxSim multivector in the artwork's point, as first built: a graph over multivectors is far too slow
    to build, so that layout scanned every region of every artwork per search (37.5 ms at 3,000 artworks x
    20 regions, growing with the collection); nor 20 named vectors with a graph each (20 graph searches per
    query: 8-34 ms); nor region points beside the artworks' in one shard (edge_files: the whole vector's
    dense storage). One graph over all region points is searched like the whole vector's (docs/search.md,
    "Regions")."""
    quantization = (
        edge.ScalarQuantizationConfig(edge.ScalarType.Int8, quantile=0.99, always_ram=True)
        if settings.quantization
        else None
    )
    # Qdrant's own indexing threshold (KB of vector storage) is set to agree with ours (points): a point's
    # bytes are those of its datatype (float16: 2 a value; counted as 4 before 2026-12-07, which made a
    # float16 collection index segments from twice the points: see `_needs_build`).
    bytes_per_value = edge_files.BYTES_PER_VALUE[settings.vector_datatype]
    threshold_kb = max(1, settings.index_threshold * dimension * bytes_per_value // 1024)
    vectors = edge.EdgeVectorParams(
        size=dimension,
        distance=edge.Distance.Cosine,
        datatype=VECTOR_DATATYPES[settings.vector_datatype],
        memory=edge.Memory.Cold if settings.vectors_on_disk else None,
    )
    return edge.EdgeConfig(
        vectors=vectors,
        hnsw_config=edge.HnswIndexConfig(
            m=settings.hnsw_m, ef_construct=settings.hnsw_ef_construct, full_scan_threshold=threshold_kb
        ),
        quantization_config=quantization,
        optimizers=edge.EdgeOptimizersConfig(indexing_threshold=threshold_kb),
    )


def _search_with_parts(
    shard: edge.EdgeShard, request: edge.QueryRequest, masked: Sequence[np.ndarray | None]
) -> tuple[list[edge.ScoredPoint], list[tuple[float, ...]]]:
    """The search's points and, point by point, their projections when parts were asked for: the hits
    scored again, exactly, by each masked query (one batch, in the same engine call: no second thread hop)."""
    points = shard.query(request)
    point_ids = [str(point.id) for point in points]  # qdrant-edge makes a new UUID object on every access
    projections = _projections(shard, point_ids, masked)
    return points, [projections.get(point_id, ()) for point_id in point_ids]


def _projections(
    shard: edge.EdgeShard, point_ids: list[str], masked: Sequence[np.ndarray | None]
) -> dict[str, tuple[float, ...]]:
    """{point id: its part projections}: the points scored exactly by each masked query, in one batch."""
    if not masked or not point_ids:
        return {point_id: () for point_id in point_ids}
    # One filter for every masked query: it parses the 100-odd ids once (0.2 ms a time).
    these = _only(point_ids)
    queries = [
        _exact_query(vector.tolist(), these, len(point_ids)) for vector in masked if vector is not None
    ]
    columns = shard.query_batch(edge.QueryBatchRequest(queries)) if queries else []
    scores = [{str(point.id): point.score for point in column} for column in columns]
    return projections_by_id(point_ids, masked, scores)  # type: ignore[return-value]


def _only(point_ids: list[Any], within: edge.Filter | None = None) -> edge.Filter:
    """These points only (those of them that pass `within`)."""
    these: list[Any] = [edge.HasIdCondition(set(point_ids))]
    return edge.Filter(must=these if within is None else [*these, within])


def _exact_query(query: Any, these: edge.Filter, limit: int, with_payload: bool = False) -> edge.QueryRequest:
    """The points of filter `these` (`_only`: at most `limit`) scored exactly by `query`."""
    return edge.QueryRequest(
        limit=limit, query=edge.Query.Nearest(query), filter=these, with_payload=with_payload, params=_EXACT
    )


def _search_regions(
    shards: Shards,
    vector: np.ndarray,
    page: tuple[int, int],
    filters: tuple[edge.Filter | None, edge.Filter | None],
    params: edge.SearchParams,
    masked: Sequence[np.ndarray | None],
    margin: float,
) -> list[ScoredArtwork]:
    """Region matching (services.search.region_scores), in one call of this thread: the artworks and the
    region points searched (`filters`: for artwork points, for region points), the scores each artwork
    lacks looked up exactly, the lists merged."""
    query = vector.tolist()
    offset, limit = page
    depth = offset + limit
    artwork_filter, region_filter = filters
    whole_points = shards.artworks.query(
        edge.QueryRequest(
            limit=depth,
            query=edge.Query.Nearest(query),
            filter=artwork_filter,
            with_payload=True,
            params=params,
        )
    )
    region_points = _region_shard(shards).query(
        edge.QueryRequest(
            limit=region_list_limit(depth),
            query=edge.Query.Nearest(query),
            filter=region_filter,
            with_payload=[REGION_OF_FIELD],
            params=params,
        )
    )
    scores = RegionSearchScores.of(whole_points, region_points)
    by_regions = needed_lookups(scores.whole, scores.regions, depth, margin)
    if by_regions:
        # Their artwork points, scored and read; the filter checked on the artwork's own payload. A region
        # whose artwork point is gone or does not pass (crash between writes) is dropped.
        these = _only(by_regions, within=artwork_filter or edge.Filter())
        scores.add_artworks(
            shards.artworks.query(_exact_query(query, these, len(by_regions), with_payload=True))
        )
    hits = scores.page(offset, limit, margin)
    projections = _projections(shards.artworks, [str(hit.point_id) for hit in hits], masked)
    return [
        ScoredArtwork(
            to_record(scores.payloads[str(hit.point_id)]),
            hit.score,
            projections.get(str(hit.point_id), ()),
            whole_score=hit.whole_score,
            region_score=hit.region_score,
            region_matched=hit.region_matched,
        )
        for hit in hits
        if str(hit.point_id) in projections  # a hit deleted between the engine's calls is left out
    ]


# --- conversions ------------------------------------------------------------------------------------


def _check_dimension(collection: _Collection, dimension: int, what: str) -> None:
    if dimension != collection.dimension:
        raise InvalidStoreRequest(
            f"{what} has dimension {dimension}, but collection {collection.name!r} holds "
            f"{collection.dimension}-d vectors"
        )


def _upsert_operations(
    items: Sequence[IndexedArtwork], named: bool, stored: dict[str, list[str]] | None, batch: int
) -> tuple[list[Write], int]:
    """The engine operations of an upsert, `batch` points each at most, and their number of points. With
    region points (`stored`: the ids of the artworks' stored region points), per batch of artworks and in
    this order: the artwork points, a delete of their old region points that the new ones do not replace
    (an upsert replaces an artwork with its regions, or without any), their new region points (the same
    ids for the same indexes: they overwrite). A crash in between leaves at worst these artworks with
    their old regions, some of them or none: never a region without its artwork, nor a store the next
    open cannot read."""
    operations: list[Write] = []
    points = 0
    for start in range(0, len(items), batch):
        chunk = items[start : start + batch]
        artwork_points = [_to_point(item, named) for item in chunk]
        operations.append((edge.UpdateOperation.upsert_points(artwork_points), False))
        points += len(chunk)
        if stored is None:
            continue
        region_points = [point for item in chunk for point in _region_points(item)]
        kept = {str(point.id) for point in region_points}
        stale = [i for item in chunk for i in stored.get(item.artwork.id, ()) if i not in kept]
        if stale:
            operations.append((edge.UpdateOperation.delete_points(stale), True))
        for first in range(0, len(region_points), batch):
            operations.append(
                (edge.UpdateOperation.upsert_points(region_points[first : first + batch]), True)
            )
        points += len(region_points)
    return operations, points


def _to_point(item: IndexedArtwork, named: bool) -> edge.Point:
    """The artwork's point: its whole vector (by its name, "", where the collection has named vectors)."""
    vector: Any = {"": item.vector} if named else item.vector
    return edge.Point(point_id(item.artwork.id), vector, to_payload(item.artwork))


def _region_points(item: IndexedArtwork) -> list[edge.Point]:
    """The artwork's region points (none when it has no regions)."""
    if item.regions is None:
        return []
    payload = to_region_payload(item.artwork)
    return [
        edge.Point(region_point_id(item.artwork.id, index), row, payload)
        for index, row in enumerate(item.regions)
    ]


def _regions_of(artwork_ids: Sequence[str]) -> edge.Filter:
    """The region points of these artworks."""
    belongs = edge.FieldCondition(key=REGION_OF_FIELD, match=edge.MatchAny(list(artwork_ids)))
    return edge.Filter(must=[belongs])


def _region_shard(shards: Shards) -> edge.EdgeShard:
    assert shards.regions is not None, "asked for region points of a collection without a region shard"
    return shards.regions


def _whole_vector(collection: _Collection, with_vectors: bool) -> bool | list[str]:
    """What to read back of a point's vectors: the whole picture's alone."""
    return [""] if with_vectors and collection.named else with_vectors


def _to_edge_filter(artwork_filter: ArtworkFilter, regions: bool = False) -> edge.Filter | None:
    """The filter of artwork points, or with `regions` of region points (the same fields, but excluded
    artworks are named by `region_of`)."""
    if artwork_filter.is_empty():
        return None
    must: list[Any] = []
    any_of = {
        "artist_key": [artist_key(a) for a in artwork_filter.artists],
        "style": list(artwork_filter.styles),
        "genre": list(artwork_filter.genres),
    }
    for key, values in any_of.items():
        if values:
            must.append(edge.FieldCondition(key=key, match=edge.MatchAny(unique_in_order(values))))
    if artwork_filter.year_min is not None or artwork_filter.year_max is not None:
        year_range = edge.RangeFloat(gte=artwork_filter.year_min, lte=artwork_filter.year_max)
        must.append(edge.FieldCondition(key="year", range=year_range))
    must_not: list[Any] = []
    if artwork_filter.exclude_ids and regions:
        excluded = edge.MatchAny(unique_in_order(artwork_filter.exclude_ids))
        must_not.append(edge.FieldCondition(key=REGION_OF_FIELD, match=excluded))
    elif artwork_filter.exclude_ids:
        must_not.append(edge.HasIdCondition({point_id(i) for i in artwork_filter.exclude_ids}))
    if artwork_filter.exclude_style_labels:
        kinds = edge.MatchAny(unique_in_order(artwork_filter.exclude_style_labels))
        must_not.append(edge.FieldCondition(key=STYLE_LABELS_FIELD, match=kinds))
    return edge.Filter(must=must or None, must_not=must_not or None)
