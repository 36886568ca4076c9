"""What is particular to EdgeArtworkStore (the shared store contract is in
tests/services/test_search_store_contract.py): its folder layout and lock, background HNSW builds in a
child process swapped in while serving, recovery from a crash in the middle of a swap, and snapshots."""

from __future__ import annotations

import asyncio
import json
import tarfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
import qdrant_edge as edge

from services.search import edge_files
from services.search.edge_store import EdgeArtworkStore, EdgeSettings
from services.search.store import (
    ArtworkFilter,
    ArtworkRecord,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
    StoreUnavailable,
)

DIM = 16
# Tiny thresholds so that a few hundred points already make Qdrant build an HNSW graph.
SMALL_INDEX = EdgeSettings(index_threshold=50, index_delay_s=0.2)


def clustered(count: int, seed: int = 0) -> np.ndarray:
    """Unit vectors in 8 clusters: an approximate index has structure to find (random ones have none)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((8, DIM))
    vectors = centres[rng.integers(0, 8, count)] + 0.3 * rng.standard_normal((count, DIM))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def artworks(vectors: np.ndarray, prefix: str = "p") -> list[IndexedArtwork]:
    return [
        IndexedArtwork(
            ArtworkRecord(id=f"{prefix}{i}", style=f"s{i % 10}", year=1500 + i % 500, artist="Hokusai"),
            vector,
        )
        for i, vector in enumerate(vectors)
    ]


@pytest_asyncio.fixture(loop_scope="session")
async def store(tmp_path: Path) -> AsyncIterator[EdgeArtworkStore]:
    opened = await EdgeArtworkStore.open(tmp_path / "edge", settings=SMALL_INDEX)
    yield opened
    await opened.close()


async def _wait_until_indexed(store: EdgeArtworkStore, timeout_s: float = 60.0) -> tuple[int, int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        points, indexed = await store.index_status("")
        if points and indexed == points:
            return points, indexed
        await asyncio.sleep(0.1)
    raise AssertionError(f"not indexed after {timeout_s} s: {await store.index_status('')}")


# --- folder and lock ----------------------------------------------------------------------------------


async def test_one_process_at_a_time(tmp_path: Path) -> None:
    first = await EdgeArtworkStore.open(tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="already accessed"):
            await EdgeArtworkStore.open(tmp_path)
    finally:
        await first.close()
    second = await EdgeArtworkStore.open(tmp_path)  # the lock goes with close()
    await second.close()


async def test_each_collection_is_a_folder_that_records_its_dimension(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path)
    try:
        await store.upsert("paintings", artworks(clustered(3)))
    finally:
        await store.close()
    meta = json.loads((tmp_path / "paintings" / "collection.json").read_text())
    assert meta == {"format": 1, "dimension": DIM, "region_shard": True}  # can hold region points
    for engine_shard in ("artworks", "regions"):  # the region points in a shard of their own
        assert (tmp_path / "paintings" / "shard" / engine_shard / "edge_config.json").is_file()


async def test_an_unfinished_creation_is_started_again(tmp_path: Path) -> None:
    (tmp_path / "paintings" / "shard").mkdir(parents=True)  # as if killed before collection.json
    store = await EdgeArtworkStore.open(tmp_path)
    try:
        assert await store.count("paintings") == 0
        assert await store.upsert("paintings", artworks(clustered(3))) == 3
        assert await store.count("paintings") == 3
    finally:
        await store.close()


async def test_compact_storage_settings_keep_the_answers(tmp_path: Path) -> None:
    compact = EdgeSettings(
        index_threshold=50, quantization=True, vector_datatype="float16", vectors_on_disk=True
    )
    store = await EdgeArtworkStore.open(tmp_path, settings=compact)
    try:
        vectors = clustered(300)
        await store.upsert("", artworks(vectors))
        assert await store.build_index("")
        queries = clustered(5, seed=2)
        for query in queries:
            hits = await store.search("", query, limit=5)
            exact = vectors @ query
            truth = {f"p{i}" for i in np.argsort(-exact)[:5]}
            assert len(truth & {h.artwork.id for h in hits}) >= 4  # near-ties may swap at the edge
            for hit in hits:  # scores are the cosines, to float16 precision
                assert hit.score == pytest.approx(exact[int(hit.artwork.id[1:])], abs=5e-3)
        found, _ = await store.get("", ["p3"], with_vectors=True)
        np.testing.assert_allclose(found[0].vector, vectors[3], atol=2e-3)  # float16 storage
    finally:
        await store.close()


# --- background index builds --------------------------------------------------------------------------


async def test_a_bulk_load_is_indexed_in_the_background_and_answers_stay_exact(
    store: EdgeArtworkStore,
) -> None:
    vectors = clustered(400)
    await store.upsert("", artworks(vectors))
    queries = clustered(5, seed=1)
    style = ArtworkFilter(styles=("s1", "s2"), year_min=1600)
    before = [[h.artwork.id for h in await store.search("", q, limit=5)] for q in queries]
    filtered_before = [[h.artwork.id for h in await store.search("", q, 5, filter=style)] for q in queries]

    assert await _wait_until_indexed(store) == (400, 400)

    after = [[h.artwork.id for h in await store.search("", q, limit=5)] for q in queries]
    filtered_after = [[h.artwork.id for h in await store.search("", q, 5, filter=style)] for q in queries]
    assert after == before
    assert filtered_after == filtered_before
    truth = np.argsort(-(vectors @ queries[0]))[:5]
    assert before[0] == [f"p{i}" for i in truth]


async def build_started(store: EdgeArtworkStore, tmp_path: Path) -> asyncio.Task[bool]:
    """A background index build of the default collection, once its copy is being indexed (or it ended)."""
    building = tmp_path / "edge" / "artworks" / "shard.building"
    build = asyncio.create_task(store.build_index(""))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if building.exists() or build.done():
            break
        await asyncio.sleep(0.005)
    return build


async def test_writes_during_a_build_are_kept(store: EdgeArtworkStore, tmp_path: Path) -> None:
    await store.upsert("", artworks(clustered(400)))
    build = await build_started(store, tmp_path)
    # While the copy is being indexed: a new artwork, a replaced one, a deleted one.
    late = artworks(clustered(2, seed=5), prefix="late")
    await store.upsert("", late)
    await store.upsert("", [IndexedArtwork(ArtworkRecord(id="p1", title="replaced"), late[0].vector)])
    assert await store.delete("", ["p2"]) == 1
    await store.update_metadata("", "p3", MetadataChanges(title="edited", artist="Claude Monet"))
    served_during_build = await store.count("")

    assert await build
    assert served_during_build == 401
    assert await store.count("") == 401
    found, missing = await store.get("", ["late0", "late1", "p1", "p2", "p3"])
    assert [f.artwork.id for f in found] == ["late0", "late1", "p1", "p3"]
    assert found[2].artwork.title == "replaced"
    assert (found[3].artwork.title, found[3].artwork.artist) == ("edited", "Claude Monet")
    assert await store.count("", ArtworkFilter(artists=("Claude Monet",))) == 1  # the payload index too
    assert missing == ["p2"]
    points, indexed = await store.index_status("")
    assert points == 401 and indexed >= 398


def region_points_of(store: EdgeArtworkStore, artwork_id: str) -> int:
    """Region points of an artwork, counted in the engine (the store counts artworks only)."""
    belongs = edge.FieldCondition(key="region_of", match=edge.MatchAny([artwork_id]))
    shard = store._collections["artworks"].shards.regions
    assert shard is not None
    return int(shard.count(edge.CountRequest(exact=True, filter=edge.Filter(must=[belongs]))))


async def test_region_writes_during_a_build_are_kept(store: EdgeArtworkStore, tmp_path: Path) -> None:
    vectors = clustered(200)
    with_regions = [
        IndexedArtwork(item.artwork, item.vector, clustered(3, seed=10 + i))
        for i, item in enumerate(artworks(vectors))
    ]
    await store.upsert("", with_regions)
    build = await build_started(store, tmp_path)
    # While the copy is being indexed: a new artwork with regions, one replaced without, one deleted, one
    # edited (its regions carry the new artist).
    detail = np.zeros(DIM, dtype=np.float32)
    detail[3] = 1.0
    late = IndexedArtwork(ArtworkRecord(id="late", artist="Hiroshige"), vectors[0], np.stack([detail]))
    await store.upsert("", [late])
    await store.upsert("", [IndexedArtwork(with_regions[1].artwork, vectors[1], None)])
    assert await store.delete("", ["p2"]) == 1
    await store.update_metadata("", "p3", MetadataChanges(artist="Claude Monet"))

    assert await build
    assert await store.count("") == 200
    assert [region_points_of(store, i) for i in ("late", "p1", "p2", "p3", "p4")] == [1, 0, 0, 3, 3]
    points, indexed = await store.index_status("")
    assert points == 200 + 200 * 3 - 3 - 3 + 1  # artworks and region points: p1's and p2's gone, late's in
    assert indexed >= points - 5  # the region points have their graph too (the few replayed ones aside)
    found = await store.search("", detail, limit=1, match_regions=True)
    assert [hit.artwork.id for hit in found] == ["late"] and found[0].region_matched
    monet = ArtworkFilter(artists=("Claude Monet",))
    p3_region = with_regions[3].regions[0]  # type: ignore[index]
    found = await store.search("", p3_region, limit=1, filter=monet, match_regions=True)
    assert [hit.artwork.id for hit in found] == ["p3"] and found[0].region_matched


async def test_reads_are_served_while_a_build_runs(store: EdgeArtworkStore, tmp_path: Path) -> None:
    vectors = clustered(3000)
    await store.upsert("", artworks(vectors))
    building = tmp_path / "edge" / "artworks" / "shard.building"
    build = asyncio.create_task(store.build_index(""))
    answered_during_build = 0
    while not build.done():
        hits = await store.search("", vectors[7], limit=1)
        assert hits[0].artwork.id == "p7"
        if building.exists():
            answered_during_build += 1
        await asyncio.sleep(0.01)
    assert await build
    assert answered_during_build > 0


# 64 points of 16 float16 values are exactly 2 KB of vector storage (the engine's threshold is in KB).
EXACT_THRESHOLD = EdgeSettings(index_threshold=64, index_delay_s=0.2)


def with_one_region(items: list[IndexedArtwork]) -> list[IndexedArtwork]:
    return [IndexedArtwork(item.artwork, item.vector, item.vector[None, :]) for item in items]


@pytest.mark.parametrize("datatype", ["float16", "float32"])
async def test_the_engine_indexes_from_the_threshold_in_points_whatever_the_datatype(
    tmp_path: Path, datatype: str
) -> None:
    settings = EdgeSettings(index_threshold=64, index_delay_s=0.2, vector_datatype=datatype)
    store = await EdgeArtworkStore.open(tmp_path, settings=settings)
    try:
        await store.upsert("", artworks(clustered(100)))  # 1.6x the threshold
        assert await _wait_until_indexed(store, timeout_s=30) == (100, 100)
        # Each engine shard's own threshold, read back from what the engine stored (in KB), is the setting.
        assert edge_files.indexing_thresholds(tmp_path / "artworks" / "shard") == [64, 64]
    finally:
        await store.close()


async def test_no_build_starts_when_no_shard_would_index(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """40 artworks with one region each: 80 unindexed points in all, but 40 in each engine shard, under
    the threshold of 64 of each: the engine would index nothing, so no copy nor swap is made."""
    store = await EdgeArtworkStore.open(tmp_path, settings=EXACT_THRESHOLD)
    caplog.set_level("INFO", logger="services.search.edge_store")
    try:
        await store.upsert("", with_one_region(artworks(clustered(40))))
        planned = store._collections["artworks"].build_task
        assert planned is not None
        await asyncio.wait_for(planned, timeout=30)  # the quiet period passed, the build was considered
        assert not [r for r in caplog.records if r.getMessage().startswith("index build")]
        assert not [r for r in caplog.records if r.getMessage() == "index built"]
        assert await store.index_status("") == (80, 0)
    finally:
        await store.close()


async def test_a_build_with_nothing_to_index_leaves_the_live_shards_in_place(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path, settings=EXACT_THRESHOLD)
    try:
        vectors = clustered(100)
        await store.upsert("", artworks(vectors))
        await _wait_until_indexed(store, timeout_s=30)
        live = store._collections["artworks"].shards
        assert not await store.build_index("")  # nothing left to index: no swap, reads never held up
        assert store._collections["artworks"].shards is live
        assert not (tmp_path / "artworks" / "shard.building").exists()
        assert [h.artwork.id for h in await store.search("", vectors[9], limit=1)] == ["p9"]
    finally:
        await store.close()


async def test_a_crash_during_a_swap_is_undone_at_the_next_open(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path)
    await store.upsert("", artworks(clustered(20)))
    await store.close()
    collection = tmp_path / "artworks"
    # The state right after `shard` -> `shard.old` and a half-copied incoming shard put in its place.
    (collection / "shard").rename(collection / "shard.old")
    (collection / "shard").mkdir()
    (collection / "shard" / "garbage").write_text("half a shard")
    (collection / "shard.building").mkdir()

    reopened = await EdgeArtworkStore.open(tmp_path)
    try:
        assert await reopened.count("") == 20
        assert (await reopened.search("", clustered(20)[3], limit=1))[0].artwork.id == "p3"
    finally:
        await reopened.close()
    assert sorted(p.name for p in collection.iterdir()) == ["collection.json", "shard"]


# --- snapshots ----------------------------------------------------------------------------------------


async def test_a_snapshot_restores_into_another_collection_and_survives_a_restart(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path)
    try:
        await store.upsert("", artworks(clustered(30)))
        snapshot = await store.create_snapshot("")
        assert snapshot.collection == "artworks"
        assert (tmp_path / "snapshots" / snapshot.name).is_file()
        assert await store.restore_snapshot("copy", snapshot.name) == 30
    finally:
        await store.close()
    reopened = await EdgeArtworkStore.open(tmp_path)
    try:
        assert await reopened.count("copy") == 30
        assert await reopened.upsert("copy", artworks(clustered(1, seed=9), prefix="new")) == 1
        assert await reopened.count("copy") == 31
        assert await reopened.count("") == 30
    finally:
        await reopened.close()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("../artworks/collection.json", "invalid snapshot name"),
        ("artworks.snapshot", "invalid snapshot name"),
        ("artworks-20260101T000000.000000Z.snapshot", "no snapshot named"),
    ],
)
async def test_restore_needs_a_snapshot_of_this_store(
    store: EdgeArtworkStore, name: str, message: str
) -> None:
    await store.upsert("", artworks(clustered(5)))
    with pytest.raises(InvalidStoreRequest, match=message):
        await store.restore_snapshot("", name)
    assert await store.count("") == 5


async def test_a_damaged_snapshot_leaves_the_collection_as_it_was(
    store: EdgeArtworkStore, tmp_path: Path
) -> None:
    await store.upsert("", artworks(clustered(5)))
    snapshots = tmp_path / "edge" / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)
    damaged = snapshots / "artworks-20260101T000000.000000Z.snapshot"
    with tarfile.open(damaged, "w") as archive:
        note = tmp_path / "collection.json"
        note.write_text(json.dumps({"format": 1, "dimension": DIM}))
        archive.add(note, arcname="collection.json")  # and no shard
    with pytest.raises(InvalidStoreRequest, match="not a snapshot"):
        await store.restore_snapshot("", damaged.name)
    damaged.write_bytes(b"not a tar archive")
    with pytest.raises(InvalidStoreRequest, match="cannot be restored"):
        await store.restore_snapshot("", damaged.name)
    assert await store.count("") == 5
    assert await store.upsert("", artworks(clustered(1, seed=3), prefix="x")) == 1
