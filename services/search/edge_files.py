"""The on-disk side of `EdgeArtworkStore`: the folder lock, a collection's folder (collection.json + the
shard), recovery after a crash, shard copies and swaps, and snapshot archives. Every function blocks:
the store runs them on its executor threads.

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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import qdrant_edge as edge

from artsearch.fault_injection import crash_point
from services.search.payload import INTEGER_FIELDS, KEYWORD_FIELDS
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
# collection.json keys of the regions layouts (see `layout`).
REGION_POINTS = "region_points"
OLD_REGIONS = "regions"


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
) -> tuple[int, edge.EdgeShard] | None:
    """The collection in `folder` as (dimension, open shard); created when `create_dimension` is given,
    with `config_for(dimension)` and its payload indexes, recording `regions` (whether that config has the
    region points' vector: see `layout`); None when it does not exist."""
    meta_file = folder / COLLECTION_FILE
    recover(folder)
    if meta_file.is_file():
        meta = json.loads(meta_file.read_text())
        if meta.get("format") != COLLECTION_FORMAT:
            raise StoreError(f"{meta_file} has format {meta.get('format')!r}, expected {COLLECTION_FORMAT}")
        return int(meta["dimension"]), edge.EdgeShard.load(str(folder / SHARD))
    if create_dimension is None:
        return None
    # A folder without collection.json is a creation that did not finish: start it again.
    remove_tree(folder)
    folder.mkdir(parents=True)
    shard = edge.EdgeShard.create(str(folder / SHARD), config_for(create_dimension))
    for field_name in KEYWORD_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(field_name, edge.PayloadSchemaType.Keyword))
    for field_name in INTEGER_FIELDS:
        shard.update(edge.UpdateOperation.create_field_index(field_name, edge.PayloadSchemaType.Integer))
    shard.flush()
    fsync_tree(folder / SHARD)
    # The commit of a creation: a folder without collection.json is not a collection (see above).
    write_json(
        meta_file, {"format": COLLECTION_FORMAT, "dimension": create_dimension, REGION_POINTS: regions}
    )
    return create_dimension, shard


def layout(folder: Path) -> tuple[bool, bool]:
    """(named, region points) of the collection, as collection.json says. `named`: its whole-picture vector
    is the unnamed one among named vectors (reads ask for it by name). `region points`: it holds region
    points with the `regions` vector (services.search.region_scores). A collection made before regions
    existed has neither key; one made with the first regions layout (a MaxSim multivector in the artwork's
    point, never released) has `"regions": true`: named, but searched and written as without regions."""
    meta = json.loads((folder / COLLECTION_FILE).read_text())
    region_points = bool(meta.get(REGION_POINTS, False))
    return region_points or bool(meta.get(OLD_REGIONS, False)), region_points


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
    """The incoming shard could not be loaded; the live one is back and open again (`shard`)."""

    def __init__(self, message: str, shard: edge.EdgeShard) -> None:
        super().__init__(message)
        self.shard = shard


def swap_in(folder: Path, current: edge.EdgeShard, replay: list[edge.UpdateOperation]) -> edge.EdgeShard:
    """The built copy in place of the live shard, with the writes it missed applied again."""
    shard = replace_shard(folder, folder / BUILDING, current, "build")
    for operation in replay:
        shard.update(operation)
    shard.flush()
    fsync_tree(folder / SHARD)  # durable before the commit makes it the only copy
    crash_point("build.swap_replayed")
    finish_replace(folder, "build")
    return shard


def replace_shard(folder: Path, incoming: Path, current: edge.EdgeShard | None, step: str) -> edge.EdgeShard:
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
        return edge.EdgeShard.load(str(live))
    except Exception as exc:
        remove_tree(live)
        if not old.exists():
            raise StoreError(f"cannot load the new shard: {exc}") from exc
        old.rename(live)
        _put_back_old_metadata(folder)
        fsync_dir(folder)
        reopened = edge.EdgeShard.load(str(live))
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


def unpack_snapshot(archive: Path, staging: Path) -> None:
    """Extracts a snapshot next to the live shard and checks that the engine can load it."""
    remove_tree(staging)
    staging.mkdir(parents=True)
    try:
        with tarfile.open(archive, "r") as opened:
            opened.extractall(staging, filter="data")
        meta = json.loads((staging / COLLECTION_FILE).read_text())
        if meta.get("format") != COLLECTION_FORMAT or not (staging / SHARD).is_dir():
            raise InvalidStoreRequest(f"{archive.name} is not a snapshot of this engine")
        int(meta["dimension"])
        edge.EdgeShard.load(str(staging / SHARD)).close()
        fsync_tree(staging)  # durable before the swap makes it the collection
    except InvalidStoreRequest:
        remove_tree(staging)
        raise
    except Exception as exc:  # tar, JSON and engine errors alike: the archive is unusable
        remove_tree(staging)
        raise InvalidStoreRequest(f"snapshot {archive.name} cannot be restored: {exc}") from exc


def restore_into(folder: Path, current: edge.EdgeShard | None) -> tuple[edge.EdgeShard, int]:
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
    layout_keys = {key: bool(staged[key]) for key in (REGION_POINTS, OLD_REGIONS) if key in staged}
    write_json(meta, {"format": COLLECTION_FORMAT, "dimension": dimension, **layout_keys})
    crash_point("restore.metadata_written")
    finish_replace(folder, "restore")
    remove_tree(staging)
    return shard, dimension
