"""The on-disk side of `EdgeArtworkStore`: the folder lock, a collection's folder (collection.json + the
shard folder), recovery after a crash, shard copies and swaps, and snapshot archives. Every function blocks:
the store runs them on its executor threads.

The shard folder. In a collection with regions it holds two engine shards, `artworks/` (one point per
artwork) and `regions/` (the region points, services.search.region_scores), which every copy, build, swap,
snapshot and restore moves as one folder, so that the two never come from different moments. The region
points have a shard of their own because qdrant-edge keeps each named vector's storage dense over all the
points of a segment: beside 20 region points per artwork, the whole-picture vector had 20 empty slots per
artwork, a 1.5 GB collection instead of 132 MB and a whole-picture search 3-4x slower (docs/search.md,
"Regions"). Collections made before regions (and with the first, multivector, layout) hold one engine shard
in the shard folder itself; those made with region points in the artworks' shard are split at their next
open (`open_collection`) or restore (`unpack_snapshot`).

Durability. Every metadata file (collection.json, aliases.json, snapshot archives) is written to a temporary
file, fsync'd, renamed over the old one and its folder fsync'd: a crash, a kill or a power cut leaves the old
file or the new one, never a torn or empty one. Every rename that moves a shard is followed by an fsync of
the collection's folder, and a shard folder about to become the live one is fsync'd file by file first.

A swap puts a new shard folder in place of the live one in renames: `shard` -> `shard.old`, incoming ->
`shard`, and, once the new shard is loaded and has every write, `shard.old` -> `shard.trash` (the commit:
one atomic step) before it is deleted. While `shard.old` exists it is the authoritative copy, so `recover`
can undo a crash at any point. A snapshot restore may change the collection's dimension, so its
collection.json changes with the shard: the old one is first kept as `collection.old.json`, and while
`shard.old` exists that is the authoritative metadata (`recover` puts it back with the old shard); once the
commit rename is done, the new collection.json is.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import qdrant_edge as edge

from artsearch.fault_injection import crash_point
from services.search.payload import INTEGER_FIELDS, KEYWORD_FIELDS, REGION_OF_FIELD
from services.search.store import InvalidStoreRequest, StoreError, StoreUnavailable

COLLECTION_FORMAT = 1
COLLECTION_FILE = "collection.json"
OLD_COLLECTION_FILE = "collection.old.json"  # the metadata of `shard.old` during a restore's swap
LOCK_FILE = ".lock"
ALIASES_FILE = "aliases.json"  # {"format": 1, "aliases": {alias: collection}} in the store's root
SNAPSHOTS_FOLDER = "snapshots"
SHARD = "shard"
BUILDING = "shard.building"
OLD = "shard.old"
TRASH = "shard.trash"
RESTORING = "shard.restoring"
SPLITTING = "shard.splitting"  # in a staged snapshot: its shard being split (`split_region_points`)
# The engine shards inside the shard folder of a collection with regions (see the module docstring).
ARTWORK_SHARD = "artworks"
REGION_SHARD = "regions"
# collection.json keys of the regions layouts (see `layout`).
REGION_SHARD_KEY = "region_shard"
REGION_POINTS = "region_points"  # region points in the artworks' shard: split at the next open
OLD_REGIONS = "regions"
LAYOUT_KEYS = (REGION_SHARD_KEY, REGION_POINTS, OLD_REGIONS)
# The region points' vector in the `region_points` layout (its own shard has one unnamed vector).
SHARED_REGIONS_VECTOR = "regions"
_SPLIT_BATCH = 512


@dataclass
class Shards:
    """A collection's open engine shards: the artworks' and, in a collection with regions, the region
    points' (see the module docstring)."""

    artworks: edge.EdgeShard
    regions: edge.EdgeShard | None = None

    def all(self) -> list[edge.EdgeShard]:
        return [self.artworks] if self.regions is None else [self.artworks, self.regions]

    def flush(self) -> None:
        for shard in self.all():
            shard.flush()

    def close(self) -> None:
        for shard in self.all():
            shard.close()


def engine_shard_folders(shard_folder: Path) -> list[Path]:
    """The engine shards' folders in a shard folder: `artworks/` and `regions/`, or the folder itself."""
    if (shard_folder / ARTWORK_SHARD).is_dir():
        return [shard_folder / ARTWORK_SHARD, shard_folder / REGION_SHARD]
    return [shard_folder]


# Bytes a stored vector value takes, by the datatype edge_config.json names.
BYTES_PER_VALUE = {"float32": 4, "float16": 2, "uint8": 1}
ENGINE_CONFIG_FILE = "edge_config.json"


def indexing_thresholds(shard_folder: Path) -> list[int | None]:
    """Per engine shard (in `Shards.all()` order), how many unindexed points its optimizer indexes from: its
    indexing threshold is in KB of vector storage (its own edge_config.json, as it was created), so a
    point's bytes depend on the vectors' sizes and datatype. None where the config names no threshold or
    vectors (the engine's own default applies, which the store does not guess)."""
    thresholds: list[int | None] = []
    for folder in engine_shard_folders(shard_folder):
        config = json.loads((folder / ENGINE_CONFIG_FILE).read_text())
        threshold_kb = (config.get("optimizers") or {}).get("indexing_threshold")
        largest = max(
            (
                int(vector["size"]) * BYTES_PER_VALUE.get(str(vector.get("datatype", "float32")), 4)
                for vector in (config.get("vectors") or {}).values()
            ),
            default=0,
        )
        # The optimizer indexes a segment once any one vector's storage reaches the threshold.
        thresholds.append(-(-int(threshold_kb) * 1024 // largest) if threshold_kb and largest else None)
    return thresholds


def load_shards(shard_folder: Path) -> Shards:
    loaded = [edge.EdgeShard.load(str(folder)) for folder in engine_shard_folders(shard_folder)]
    return Shards(*loaded)


def create_shards(shard_folder: Path, config: edge.EdgeConfig, regions: bool) -> Shards:
    """New empty engine shards (with the region points' own when `regions`) and their payload indexes
    (before the first point, so that the HNSW graphs later built know the filter fields), flushed."""
    if not regions:
        return Shards(_create_engine_shard(shard_folder, config))
    shard_folder.mkdir(parents=True)
    return Shards(
        _create_engine_shard(shard_folder / ARTWORK_SHARD, config),
        _create_engine_shard(shard_folder / REGION_SHARD, config),
    )


def _create_engine_shard(folder: Path, config: edge.EdgeConfig) -> edge.EdgeShard:
    shard = edge.EdgeShard.create(str(folder), config)
    for field_name in KEYWORD_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(field_name, edge.PayloadSchemaType.Keyword))
    for field_name in INTEGER_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(field_name, edge.PayloadSchemaType.Integer))
    shard.flush()
    return shard


def lock_folder(folder: Path) -> IO[bytes]:
    """An exclusive lock on `folder` (created if missing), held while the returned file stays open."""
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).open("ab")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise StoreUnavailable(f"embedded storage {folder} is already accessed by another process") from None
    return lock


def open_collection(
    folder: Path,
    create_dimension: int | None,
    config_for: Callable[[int], edge.EdgeConfig],
    regions: bool = False,
) -> tuple[int, Shards] | None:
    """The collection in `folder` as (dimension, open shards); created when `create_dimension` is given,
    with `config_for(dimension)` and its payload indexes, with a shard for region points when `regions`
    (see `layout`); None when it does not exist. A collection with region points in the artworks' shard
    is split first (one-off: it reads and writes every point)."""
    meta_file = folder / COLLECTION_FILE
    recover(folder)
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != COLLECTION_FORMAT:
            raise StoreError(f"{meta_file} has format {meta.get('format')!r}, expected {COLLECTION_FORMAT}")
        if meta.get(REGION_POINTS):
            return _split_live(folder, config_for)
        return int(meta["dimension"]), load_shards(folder / SHARD)
    if create_dimension is None:
        return None
    # A folder without collection.json is a creation that did not finish: start it again.
    remove_tree(folder)
    folder.mkdir(parents=True)
    shards = create_shards(folder / SHARD, config_for(create_dimension), regions)
    fsync_tree(folder / SHARD)
    # The commit of a creation: a folder without collection.json is not a collection (see above).
    write_json(
        meta_file, {"format": COLLECTION_FORMAT, "dimension": create_dimension, REGION_SHARD_KEY: regions}
    )
    return create_dimension, shards


def layout(folder: Path) -> tuple[bool, bool]:
    """(named, regions) of the collection, as collection.json says. `named`: its whole-picture vector is the
    unnamed one among named vectors (reads ask for it by name). `regions`: its region points have a shard
    of their own (services.search.region_scores). A collection made before regions existed has no layout
    key; one made with the first regions layout (a MaxSim multivector in the artwork's point, never
    released) has `"regions": true`: named, but searched and written as without regions."""
    meta = json.loads((folder / COLLECTION_FILE).read_text())
    return bool(meta.get(OLD_REGIONS, False)), bool(meta.get(REGION_SHARD_KEY, False))


def split_region_points(source: Path, target: Path, config: edge.EdgeConfig) -> None:
    """Writes the engine shard `source`, of the `region_points` layout (region points beside the artworks'
    in one shard, the whole vector named ""), as a shard folder `target` with a shard each (see the module
    docstring), under the store's current settings (`config`); `source` keeps every point."""
    remove_tree(target)
    old = edge.EdgeShard.load(str(source))
    shards = create_shards(target, config, regions=True)
    try:
        region_of = edge.IsEmptyCondition(REGION_OF_FIELD)
        for points in _scrolled(old, edge.Filter(must=[region_of]), ""):
            shards.artworks.update(edge.UpdateOperation.upsert_points(points))
        for points in _scrolled(old, edge.Filter(must_not=[region_of]), SHARED_REGIONS_VECTOR):
            assert shards.regions is not None
            shards.regions.update(edge.UpdateOperation.upsert_points(points))
        shards.flush()
    finally:
        shards.close()
        old.close()
    fsync_tree(target)


def _scrolled(shard: edge.EdgeShard, within: edge.Filter, vector: str) -> Iterator[list[edge.Point]]:
    """The points of `shard` that pass `within`, in batches, with named vector `vector` as their only,
    unnamed, one."""
    offset = None
    while True:
        request = edge.ScrollRequest(
            offset=offset, limit=_SPLIT_BATCH, filter=within, with_payload=True, with_vector=[vector]
        )
        records, offset = shard.scroll(request)
        points = [edge.Point(record.id, _vector(record, vector), record.payload) for record in records]
        if points:
            yield points
        if offset is None:
            return


def _vector(record: Any, name: str) -> list[float]:
    """A record's vector `name` (the engine hands the unnamed one back bare, even among named ones)."""
    stored = record.vector
    if isinstance(stored, dict):
        stored = stored.get(name)
    if stored is None:
        raise StoreError(f"point {record.id} has no vector {name!r}")
    return list(stored)


def _split_live(folder: Path, config_for: Callable[[int], edge.EdgeConfig]) -> tuple[int, Shards]:
    """Splits a `region_points` collection (see `split_region_points`), swapped in as a restore is."""
    meta = json.loads((folder / COLLECTION_FILE).read_text())
    staging = folder / RESTORING
    remove_tree(staging)
    staging.mkdir()
    split_region_points(folder / SHARD, staging / SHARD, config_for(int(meta["dimension"])))
    write_json(
        staging / COLLECTION_FILE,
        {"format": COLLECTION_FORMAT, "dimension": int(meta["dimension"]), REGION_SHARD_KEY: True},
    )
    shards, dimension = restore_into(folder, None)
    return dimension, shards


def recover(folder: Path) -> None:
    """Undoes what a crash in the middle of a swap or a build left behind."""
    old_meta = folder / OLD_COLLECTION_FILE
    if (folder / OLD).exists():  # the swap did not commit: the old shard (and metadata) has every write
        remove_tree(folder / SHARD)
        (folder / OLD).rename(folder / SHARD)
        if old_meta.exists():
            old_meta.replace(folder / COLLECTION_FILE)
        fsync_dir(folder)
    elif old_meta.exists():  # committed: the new collection.json belongs to the live shard
        old_meta.unlink()
        fsync_dir(folder)
    for leftover in (BUILDING, TRASH, RESTORING):
        remove_tree(folder / leftover)


def copy_shard(source: Path, target: Path) -> None:
    remove_tree(target)
    shutil.copytree(source, target)


class SwapFailed(StoreError):
    """The incoming shard could not be loaded; the live one is back and open again (`shards`)."""

    def __init__(self, message: str, shards: Shards) -> None:
        super().__init__(message)
        self.shards = shards


# A write of the store: the engine operation and whether it goes to the region points' shard.
Write = tuple[edge.UpdateOperation, bool]


def apply_write(shards: Shards, write: Write) -> None:
    operation, to_regions = write
    target = shards.regions if to_regions else shards.artworks
    if target is None:
        raise StoreError("a region write to a collection without a region shard")
    target.update(operation)


def swap_in(folder: Path, current: Shards, replay: list[Write]) -> Shards:
    """The built copy in place of the live shards, with the writes it missed applied again."""
    shard = replace_shard(folder, folder / BUILDING, current, "build")
    for write in replay:
        apply_write(shard, write)
    shard.flush()
    fsync_tree(folder / SHARD)  # durable before the commit makes it the only copy
    crash_point("build.swap_replayed")
    finish_replace(folder, "build")
    return shard


def replace_shard(folder: Path, incoming: Path, current: Shards | None, step: str) -> Shards:
    """Puts the shard folder `incoming` in place of the live one (closed first) and loads it. Until
    `finish_replace`, the old shard stays beside it as `shard.old`, the authoritative copy. `step` names
    the operation at its crash points (fault_injection)."""
    if current is not None:
        current.close()
    crash_point(f"{step}.swap_closed")
    live, old = folder / SHARD, folder / OLD
    if live.exists():
        live.rename(old)
        fsync_dir(folder)
    incoming.rename(live)
    fsync_dir(folder)
    crash_point(f"{step}.swap_renamed")
    try:
        return load_shards(live)
    except Exception as exc:
        remove_tree(live)
        if not old.exists():
            raise StoreError(f"cannot load the new shard: {exc}") from exc
        old.rename(live)
        _put_back_old_metadata(folder)
        fsync_dir(folder)
        reopened = load_shards(live)
        raise SwapFailed(f"cannot load the new shard, kept the old one: {exc}", reopened) from exc


def _put_back_old_metadata(folder: Path) -> None:
    old_meta = folder / OLD_COLLECTION_FILE
    if old_meta.exists():
        old_meta.replace(folder / COLLECTION_FILE)


def finish_replace(folder: Path, step: str) -> None:
    """The commit: from the rename of `shard.old` on, the new shard (and its metadata) is the collection."""
    old = folder / OLD
    if old.exists():
        old.rename(folder / TRASH)  # one atomic step: from here the new shard is the authoritative one
        fsync_dir(folder)
    crash_point(f"{step}.swap_committed")
    old_meta = folder / OLD_COLLECTION_FILE
    if old_meta.exists():
        old_meta.unlink()
        fsync_dir(folder)
    remove_tree(folder / TRASH)


def remove_tree(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)


def read_aliases(root: Path) -> dict[str, str]:
    """alias -> collection as last written; empty when no alias was ever set."""
    path = root / ALIASES_FILE
    if not path.is_file():
        return {}
    meta = json.loads(path.read_text())
    if meta.get("format") != COLLECTION_FORMAT:
        raise StoreError(f"{path} has format {meta.get('format')!r}, expected {COLLECTION_FORMAT}")
    return {str(alias): str(collection) for alias, collection in meta["aliases"].items()}


def write_aliases(root: Path, aliases: dict[str, str]) -> None:
    """Replaces the aliases file in one atomic rename: a crash leaves either the old or the new aliases."""
    write_json(root / ALIASES_FILE, {"format": COLLECTION_FORMAT, "aliases": dict(sorted(aliases.items()))})


def drop_collection(folder: Path) -> None:
    """Deletes a (closed) collection: first its collection.json, so that a crash half-way leaves a folder
    that is no longer a collection (the next creation of that name clears it), then the rest."""
    (folder / COLLECTION_FILE).unlink(missing_ok=True)
    fsync_dir(folder)
    remove_tree(folder)


def write_json(path: Path, content: dict[str, Any]) -> None:
    """Replaces `path` atomically and durably (see the module docstring)."""
    partial_file = path.with_suffix(".partial")
    with partial_file.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(content))
        handle.flush()
        os.fsync(handle.fileno())
    partial_file.replace(path)
    fsync_dir(path.parent)


def fsync_dir(folder: Path) -> None:
    """Makes the renames, creations and deletions of entries in `folder` durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_tree(root: Path) -> None:
    """fsyncs every file and folder under `root` (files the engine or a copy wrote but did not sync)."""
    for folder, _, files in os.walk(root):
        for name in files:
            fsync_file(Path(folder, name))
        fsync_dir(Path(folder))


def write_archive(collection_folder: Path, path: Path) -> int:
    """A plain tar of collection.json and the (flushed) shard; returns its size. Not compressed: the
    vectors hardly compress, and the time would go to the engine's preallocated (zero) file tails.
    Durable once it has its name (written as `.partial`, fsync'd, renamed, folder fsync'd)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial_file = path.with_name(path.name + ".partial")
    with partial_file.open("wb") as handle:
        with tarfile.open(fileobj=handle, mode="w") as archive:
            archive.add(collection_folder / COLLECTION_FILE, arcname=COLLECTION_FILE)
            archive.add(collection_folder / SHARD, arcname=SHARD)
        handle.flush()
        os.fsync(handle.fileno())
    partial_file.replace(path)
    fsync_dir(path.parent)
    return path.stat().st_size


def unpack_snapshot(archive: Path, staging: Path, config_for: Callable[[int], edge.EdgeConfig]) -> None:
    """Extracts a snapshot next to the live shard and checks that the engine can load it; a snapshot of
    the `region_points` layout is split (see `split_region_points`)."""
    remove_tree(staging)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r") as opened:
            opened.extractall(staging, filter="data")
        meta = json.loads((staging / COLLECTION_FILE).read_text())
        if meta.get("format") != COLLECTION_FORMAT or not (staging / SHARD).is_dir():
            raise InvalidStoreRequest(f"{archive.name} is not a snapshot of this engine")
        dimension = int(meta["dimension"])
        if meta.get(REGION_POINTS):
            split_region_points(staging / SHARD, staging / SPLITTING, config_for(dimension))
            remove_tree(staging / SHARD)
            (staging / SPLITTING).rename(staging / SHARD)
            split = {"format": COLLECTION_FORMAT, "dimension": dimension, REGION_SHARD_KEY: True}
            write_json(staging / COLLECTION_FILE, split)
        load_shards(staging / SHARD).close()
        fsync_tree(staging)  # durable before the swap makes it the collection
    except InvalidStoreRequest:
        remove_tree(staging)
        raise
    except Exception as exc:  # tar, JSON and engine errors alike: the archive is unusable
        remove_tree(staging)
        raise InvalidStoreRequest(f"snapshot {archive.name} cannot be restored: {exc}") from exc


def restore_into(folder: Path, current: Shards | None) -> tuple[Shards, int]:
    """The unpacked snapshot (see `unpack_snapshot`) in place of the collection's shard, and its metadata in
    place of the collection's, committed together by `finish_replace` (see the module docstring)."""
    staging = folder / RESTORING
    staged = json.loads((staging / COLLECTION_FILE).read_text())
    dimension = int(staged["dimension"])
    crash_point("restore.unpacked")
    meta = folder / COLLECTION_FILE
    if meta.exists():
        shutil.copyfile(meta, folder / OLD_COLLECTION_FILE)
        fsync_file(folder / OLD_COLLECTION_FILE)
        fsync_dir(folder)
    shard = replace_shard(folder, staging / SHARD, current, "restore")
    layout_keys = {key: bool(staged[key]) for key in LAYOUT_KEYS if key in staged}
    write_json(meta, {"format": COLLECTION_FORMAT, "dimension": dimension, **layout_keys})
    crash_point("restore.metadata_written")
    finish_replace(folder, "restore")
    remove_tree(staging)
    return shard, dimension
