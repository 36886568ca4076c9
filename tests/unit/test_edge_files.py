"""The embedded store's files (services/search/edge_files.py): metadata written atomically and durably
(fsync of the file before its rename, of the folder after), recovery of a restore interrupted on either
side of its commit, and each engine shard's indexing threshold read back from its own config. The kills of
a real service process at each step are in tests/services/test_search_durability.py; these pin the
file-level rules."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from services.search import edge_files
from services.search.edge_store import EdgeArtworkStore
from services.search.store import ArtworkRecord, IndexedArtwork


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The paths os.fsync is called on, in order (it still syncs: this only watches)."""
    paths: list[str] = []
    real_fsync: Callable[[int], None] = os.fsync

    def watched(descriptor: int) -> None:
        paths.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    monkeypatch.setattr(os, "fsync", watched)
    yield paths


def test_a_metadata_file_is_synced_before_its_rename_and_its_folder_after(tmp_path: Path, fsynced):
    edge_files.write_json(tmp_path / "collection.json", {"format": 1, "dimension": 8})
    assert fsynced == [str(tmp_path / "collection.partial"), str(tmp_path)]
    assert json.loads((tmp_path / "collection.json").read_text()) == {"format": 1, "dimension": 8}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["collection.json"]


def test_the_aliases_file_is_written_durably(tmp_path: Path, fsynced):
    edge_files.write_aliases(tmp_path, {"artworks": "artworks-2"})
    assert fsynced == [str(tmp_path / "aliases.partial"), str(tmp_path)]
    assert edge_files.read_aliases(tmp_path) == {"artworks": "artworks-2"}


async def test_a_snapshot_archive_is_synced_before_it_gets_its_name(tmp_path: Path, fsynced):
    store = await EdgeArtworkStore.open(tmp_path)
    try:
        await store.upsert("", [IndexedArtwork(ArtworkRecord(id="a"), np.eye(4, dtype=np.float32)[0])])
        fsynced.clear()
        snapshot = await store.create_snapshot("")
    finally:
        await store.close()
    folder = tmp_path / edge_files.SNAPSHOTS_FOLDER
    assert fsynced[-2:] == [str(folder / f"{snapshot.name}.partial"), str(folder)]


def _collection(folder: Path, dimension: int, shard_note: str) -> None:
    """A stand-in collection folder: metadata and a shard folder marked by a note."""
    (folder / edge_files.SHARD).mkdir(parents=True)
    (folder / edge_files.SHARD / "note").write_text(shard_note)
    edge_files.write_json(folder / edge_files.COLLECTION_FILE, {"format": 1, "dimension": dimension})


def _state(folder: Path) -> tuple[int, str, list[str]]:
    dimension = json.loads((folder / edge_files.COLLECTION_FILE).read_text())["dimension"]
    return (
        dimension,
        (folder / edge_files.SHARD / "note").read_text(),
        sorted(p.name for p in folder.iterdir()),
    )


def test_a_restore_interrupted_before_its_commit_is_undone_with_its_metadata(tmp_path: Path):
    """Killed after the new collection.json was written, before `shard.old` was renamed away: the old
    shard comes back, and with it the old dimension (not the snapshot's)."""
    _collection(tmp_path, 16, "old")
    (tmp_path / edge_files.COLLECTION_FILE).replace(tmp_path / edge_files.OLD_COLLECTION_FILE)
    (tmp_path / edge_files.SHARD).rename(tmp_path / edge_files.OLD)
    _collection(tmp_path, 8, "snapshot")
    edge_files.recover(tmp_path)
    assert _state(tmp_path) == (16, "old", ["collection.json", "shard"])


def test_a_restore_interrupted_after_its_commit_keeps_the_snapshot_and_its_metadata(tmp_path: Path):
    _collection(tmp_path, 16, "old")
    (tmp_path / edge_files.COLLECTION_FILE).replace(tmp_path / edge_files.OLD_COLLECTION_FILE)
    (tmp_path / edge_files.SHARD).rename(tmp_path / edge_files.TRASH)  # the commit rename was done
    _collection(tmp_path, 8, "snapshot")
    edge_files.recover(tmp_path)
    assert _state(tmp_path) == (8, "snapshot", ["collection.json", "shard"])


def _engine_config(folder: Path, threshold_kb: int | None, vectors: dict[str, dict[str, object]]) -> None:
    folder.mkdir(parents=True)
    config = {"vectors": vectors, "optimizers": {"indexing_threshold": threshold_kb}}
    (folder / edge_files.ENGINE_CONFIG_FILE).write_text(json.dumps(config))


def test_each_engine_shards_threshold_is_read_in_points_from_its_own_config(tmp_path: Path) -> None:
    shard = tmp_path / "shard"
    # Made by the rule before 2026-12-07 (4 bytes a value): 2,000 points of 2,664 float16 values -> 20,812
    # KB, which the engine reaches at 4,000 points; and the region points' shard made by today's rule.
    _engine_config(shard / "artworks", 20812, {"": {"size": 2664, "datatype": "float16"}})
    _engine_config(shard / "regions", 10406, {"": {"size": 2664, "datatype": "float16"}})
    assert edge_files.indexing_thresholds(shard) == [4000, 2000]


def test_a_shard_without_a_threshold_or_in_the_one_shard_layout_is_read_too(tmp_path: Path) -> None:
    _engine_config(tmp_path / "old", None, {"": {"size": 1280}})  # float32 unless named
    assert edge_files.indexing_thresholds(tmp_path / "old") == [None]  # the engine's default: not guessed
    _engine_config(tmp_path / "named", 5000, {"whole": {"size": 1280}, "regions": {"size": 1280}})
    assert edge_files.indexing_thresholds(tmp_path / "named") == [1000]  # 5,000 KB / (1,280 x 4 bytes)
