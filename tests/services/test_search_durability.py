"""The embedded search engine survives being killed at any step: a real `python -m services.search`
process (qdrant-edge in a temporary SEARCH_DATA_DIR) is SIGKILLed in the middle of upsert batches, of a
background index build (copy, child indexing, each step of the swap) and of a snapshot restore (each step,
the metadata of a new dimension included); started again, it serves, every write it acknowledged is there
as acknowledged, and a restore is either wholly undone or wholly done.

Each kill happens at a named step: the process is started with ARTSEARCH_TEST_CRASH_AT=<step>[@n]
(artsearch/fault_injection.py, inert without it) and kills itself there with SIGKILL. A last test
kills the process from outside at random moments of a write load, over several restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import numpy as np
import pytest

from artsearch.grpc_client import is_serving, open_channel
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.search.server import SERVICE_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]
DIM = 16
SMALL_DIM = 8
# Small enough that a few hundred points make a background build, and it starts soon after the writes.
QUICK_BUILDS = {"SEARCH_INDEX_THRESHOLD": "50", "SEARCH_INDEX_DELAY_S": "0.2", "SEARCH_UPSERT_BATCH": "16"}

pytestmark = pytest.mark.slow


def vector_for(artwork_id: str, dimension: int = DIM) -> list[float]:
    rng = np.random.default_rng(zlib.crc32(artwork_id.encode()))
    values = rng.standard_normal(dimension)
    return [float(v) for v in values / np.linalg.norm(values)]


def item(artwork_id: str, title: str = "", dimension: int = DIM) -> search_pb2.IndexedArtwork:
    return search_pb2.IndexedArtwork(
        artwork=common_pb2.Artwork(id=artwork_id, title=title or artwork_id, artist="Hokusai"),
        embedding=common_pb2.Embedding(values=vector_for(artwork_id, dimension)),
    )


@dataclass
class Acknowledged:
    """What the service said it stored: id -> title for artworks, and ids it said it deleted."""

    titles: dict[str, str] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)

    def stored(self, items: list[search_pb2.IndexedArtwork]) -> None:
        for entry in items:
            self.titles[entry.artwork.id] = entry.artwork.title
            self.deleted.discard(entry.artwork.id)

    def removed(self, ids: list[str]) -> None:
        for artwork_id in ids:
            self.titles.pop(artwork_id, None)
            self.deleted.add(artwork_id)


class SearchProcess:
    """`python -m services.search` on a data folder, started and restarted by the test."""

    def __init__(self, data_dir: Path, settings: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.settings = settings or {}
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / "search.log"

    def start(self, crash_at: str | None = None) -> None:
        environ = {k: v for k, v in os.environ.items() if k not in {"QDRANT_URL", "ARTSEARCH_TEST_CRASH_AT"}}
        environ.update(
            SEARCH_DATA_DIR=str(self.data_dir),
            ARTSEARCH_PORT=str(self.port),
            ARTSEARCH_HOST="127.0.0.1",
            **self.settings,
        )
        if crash_at is not None:
            environ["ARTSEARCH_TEST_CRASH_AT"] = crash_at
        with self.log.open("ab") as log_file:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.search"], cwd=REPO_ROOT, env=environ, stderr=log_file
            )

    async def serving(self) -> search_pb2_grpc.SearchServiceStub:
        """Waits for SERVING (fails the test if the process exits first)."""
        assert self.process is not None
        channel = open_channel(f"127.0.0.1:{self.port}")
        for _ in range(600):
            if self.process.poll() is not None:
                pytest.fail(f"the search service exited with {self.process.returncode}: {self.log_tail()}")
            if await is_serving(channel, SERVICE_NAME, timeout=0.5):
                self._channel = channel
                return search_pb2_grpc.SearchServiceStub(channel)
            await asyncio.sleep(0.05)
        pytest.fail(f"the search service did not report SERVING: {self.log_tail()}")

    async def crashed(self, timeout_s: float = 60) -> None:
        """Waits until the process killed itself at its crash point."""
        assert self.process is not None
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(self.process.wait, timeout_s)
        assert self.process.returncode == -signal.SIGKILL, f"not killed at its crash point: {self.log_tail()}"
        await self._close_channel()

    async def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()
        await self._close_channel()

    async def _close_channel(self) -> None:
        channel = getattr(self, "_channel", None)
        if channel is not None:
            await channel.close()
            self._channel = None

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def service(data_dir: Path) -> AsyncIterator[SearchProcess]:
    process = SearchProcess(data_dir, QUICK_BUILDS)
    yield process
    if process.process is not None and process.process.poll() is None:
        await process.kill()


async def upsert(
    stub: search_pb2_grpc.SearchServiceStub,
    acked: Acknowledged,
    items: list[search_pb2.IndexedArtwork],
    **kw: str,
) -> None:
    reply = await stub.Upsert(search_pb2.UpsertRequest(items=items, **kw), timeout=30)
    assert reply.upserted == len(items)
    acked.stored(items)


async def assert_everything_acknowledged_is_there(
    stub: search_pb2_grpc.SearchServiceStub, acked: Acknowledged, dimension: int = DIM
) -> None:
    """Every acknowledged artwork with its acknowledged title and vector, no acknowledged delete undone,
    and the collection takes writes and answers searches of its dimension."""
    ids = sorted(acked.titles)
    for start in range(0, len(ids), 1000):  # the service takes at most 10000 ids per Get
        reply = await stub.Get(
            search_pb2.GetRequest(ids=ids[start : start + 1000], with_embeddings=True), timeout=30
        )
        assert list(reply.missing_ids) == [], f"{len(reply.missing_ids)} acknowledged artworks lost"
        for entry in reply.items:
            assert entry.artwork.title == acked.titles[entry.artwork.id]
            np.testing.assert_allclose(
                entry.embedding.values, vector_for(entry.artwork.id, dimension), atol=2e-3
            )
    if acked.deleted:
        gone = await stub.Get(search_pb2.GetRequest(ids=sorted(acked.deleted)), timeout=30)
        assert [entry.artwork.id for entry in gone.items] == [], "an acknowledged delete was undone"
    probe = item("probe-after-restart", dimension=dimension)
    assert (await stub.Upsert(search_pb2.UpsertRequest(items=[probe]), timeout=30)).upserted == 1
    query = search_pb2.SearchRequest(query=probe.embedding, limit=1)
    assert [hit.artwork.id for hit in (await stub.Search(query, timeout=30)).hits] == ["probe-after-restart"]


async def restarted(service: SearchProcess) -> search_pb2_grpc.SearchServiceStub:
    service.start()
    return await service.serving()


# --- writes -------------------------------------------------------------------------------------------


async def test_killed_between_the_engine_batches_of_an_upsert(service: SearchProcess):
    acked = Acknowledged()
    # Engine batches of 16: three acknowledged upserts of 16 are hits 1-3, the big one's batches 4-8.
    service.start(crash_at="write.applied@6")
    stub = await service.serving()
    for round_ in range(3):
        await upsert(stub, acked, [item(f"a{round_}-{i}") for i in range(16)])
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Upsert(search_pb2.UpsertRequest(items=[item(f"big-{i}") for i in range(80)]), timeout=30)
    await service.crashed()
    stub = await restarted(service)
    await assert_everything_acknowledged_is_there(stub, acked)


async def test_killed_after_a_delete_and_an_edit_were_acknowledged(service: SearchProcess):
    acked = Acknowledged()
    service.start(crash_at="write.applied@4")
    stub = await service.serving()
    await upsert(stub, acked, [item(f"p{i}") for i in range(10)])  # hit 1
    await stub.Delete(search_pb2.DeleteRequest(ids=["p1", "p2"]), timeout=30)  # hit 2
    acked.removed(["p1", "p2"])
    await stub.UpdateArtwork(search_pb2.UpdateArtworkRequest(id="p3", title="edited"), timeout=30)  # hit 3
    acked.titles["p3"] = "edited"
    with pytest.raises(grpc.aio.AioRpcError):
        await stub.Upsert(search_pb2.UpsertRequest(items=[item("never")]), timeout=30)  # hit 4: killed
    await service.crashed()
    stub = await restarted(service)
    await assert_everything_acknowledged_is_there(stub, acked)


# --- the background index build and its swap ----------------------------------------------------------

BUILD_STEPS = [
    "build.copied",
    "build.indexing",
    "build.swap_closed",
    "build.swap_renamed",
    "build.swap_replayed",
    "build.swap_committed",
]


@pytest.mark.parametrize("step", BUILD_STEPS)
async def test_killed_during_a_background_index_build(service: SearchProcess, data_dir: Path, step: str):
    acked = Acknowledged()
    service.start(crash_at=step)
    stub = await service.serving()
    await upsert(stub, acked, [item(f"bulk-{i}") for i in range(400)])
    # Writes while the build runs (or, if it is quick, around it): the swap must keep them.
    building = data_dir / "edge" / "artworks" / "shard.building"
    for round_ in range(40):
        if service.process is not None and service.process.poll() is not None:
            break
        try:
            await upsert(stub, acked, [item(f"late-{round_}-{i}", title=f"t{round_}") for i in range(3)])
            if building.exists() and round_ % 5 == 0:
                await stub.Delete(search_pb2.DeleteRequest(ids=[f"bulk-{round_}"]), timeout=30)
                acked.removed([f"bulk-{round_}"])
        except grpc.aio.AioRpcError:
            break  # killed during this call: it was not acknowledged
        await asyncio.sleep(0.05)
    await service.crashed()
    if step == "build.indexing":
        await _assert_no_indexer_outlives(data_dir, died_at=time.time())
    stub = await restarted(service)
    await assert_everything_acknowledged_is_there(stub, acked)


# --- snapshot restores --------------------------------------------------------------------------------

RESTORE_STEPS_BEFORE_COMMIT = [
    "restore.unpacked",
    "restore.swap_closed",
    "restore.swap_renamed",
    "restore.metadata_written",
]


async def _prepare_snapshot_of_another_dimension(service: SearchProcess) -> tuple[Acknowledged, str]:
    """`artworks` with 20 acknowledged 16-d artworks, and a snapshot of `small`: 10 artworks, 8-d."""
    acked = Acknowledged()
    service.start()
    stub = await service.serving()
    await upsert(stub, acked, [item(f"p{i}") for i in range(20)])
    small = [item(f"s{i}", dimension=SMALL_DIM) for i in range(10)]
    await stub.Upsert(search_pb2.UpsertRequest(collection="small", items=small), timeout=30)
    snapshot = await stub.CreateSnapshot(search_pb2.CreateSnapshotRequest(collection="small"), timeout=60)
    await service.kill()
    return acked, snapshot.name


@pytest.mark.parametrize("step", RESTORE_STEPS_BEFORE_COMMIT)
async def test_killed_during_a_restore_before_its_commit_keeps_the_collection_as_it_was(
    data_dir: Path, step: str
):
    service = SearchProcess(data_dir)  # no background builds: only the restore moves shards
    try:
        acked, snapshot = await _prepare_snapshot_of_another_dimension(service)
        service.start(crash_at=step)
        stub = await service.serving()
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.RestoreSnapshot(search_pb2.RestoreSnapshotRequest(name=snapshot), timeout=60)
        await service.crashed()
        stub = await restarted(service)
        assert (await stub.Count(search_pb2.CountRequest(), timeout=30)).count == 20
        await assert_everything_acknowledged_is_there(stub, acked)  # the old shard with its 16-d metadata
    finally:
        if service.process is not None and service.process.poll() is None:
            await service.kill()


async def test_killed_during_a_restore_after_its_commit_has_the_snapshot_whole(data_dir: Path):
    service = SearchProcess(data_dir)
    try:
        _, snapshot = await _prepare_snapshot_of_another_dimension(service)
        service.start(crash_at="restore.swap_committed")
        stub = await service.serving()
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.RestoreSnapshot(search_pb2.RestoreSnapshotRequest(name=snapshot), timeout=60)
        await service.crashed()
        stub = await restarted(service)
        restored = Acknowledged(titles={f"s{i}": f"s{i}" for i in range(10)})
        assert (await stub.Count(search_pb2.CountRequest(), timeout=30)).count == 10
        await assert_everything_acknowledged_is_there(stub, restored, dimension=SMALL_DIM)
        leftovers = sorted(p.name for p in (data_dir / "edge" / "artworks").iterdir() if p.name != ".lock")
        assert leftovers == ["collection.json", "shard"]
    finally:
        if service.process is not None and service.process.poll() is None:
            await service.kill()


def _shared_shard_collection(folder: Path, count: int) -> Acknowledged:
    """`count` artworks with two region points each in one engine shard, as the layout before region points
    had a shard of their own wrote them (`collection.json` "region_points": true)."""
    import qdrant_edge as edge

    from services.search.edge_files import write_json
    from services.search.payload import point_id, region_point_id, to_payload, to_region_payload
    from services.search.store import ArtworkRecord

    vector = edge.EdgeVectorParams(size=DIM, distance=edge.Distance.Cosine)
    shard = edge.EdgeShard.create(
        str(folder / "shard"), edge.EdgeConfig(vectors={"": vector, "regions": vector})
    )
    acked = Acknowledged()
    for number in range(count):
        record = ArtworkRecord(id=f"p{number}", title=f"p{number}", artist="Hokusai")
        points = [edge.Point(point_id(record.id), {"": vector_for(record.id)}, to_payload(record))]
        points += [
            edge.Point(
                region_point_id(record.id, i),
                {"regions": vector_for(f"{record.id}/{i}")},
                to_region_payload(record),
            )
            for i in range(2)
        ]
        shard.update(edge.UpdateOperation.upsert_points(points))
        acked.titles[record.id] = record.title
    shard.flush()
    shard.close()
    write_json(folder / "collection.json", {"format": 1, "dimension": DIM, "region_points": True})
    return acked


@pytest.mark.parametrize("step", [*RESTORE_STEPS_BEFORE_COMMIT, "restore.swap_committed"])
async def test_killed_while_splitting_an_old_collection_at_open_loses_nothing(data_dir: Path, step: str):
    """A collection with its region points in the artworks' shard is split into two shards at the service's
    start, swapped in as a restore is: killed at any step, the next start has every artwork and region."""
    (data_dir / "edge" / "artworks").mkdir(parents=True)
    acked = _shared_shard_collection(data_dir / "edge" / "artworks", 30)
    service = SearchProcess(data_dir)
    try:
        service.start(crash_at=step)
        await service.crashed()
        stub = await restarted(service)
        assert (await stub.Count(search_pb2.CountRequest(), timeout=30)).count == 30
        region = common_pb2.Embedding(values=vector_for("p7/1"))
        found = await stub.Search(
            search_pb2.SearchRequest(query=region, limit=1, match_regions=True), timeout=30
        )
        assert [hit.artwork.id for hit in found.hits] == ["p7"] and found.hits[0].region_matched
        await assert_everything_acknowledged_is_there(stub, acked)
        leftovers = sorted(p.name for p in (data_dir / "edge" / "artworks").iterdir() if p.name != ".lock")
        assert leftovers == ["collection.json", "shard"]
        assert sorted(p.name for p in (data_dir / "edge" / "artworks" / "shard").iterdir()) == [
            "artworks",
            "regions",
        ]
    finally:
        if service.process is not None and service.process.poll() is None:
            await service.kill()


# --- killed from outside at random moments -------------------------------------------------------------


async def test_killed_at_random_moments_of_a_write_load_loses_nothing_acknowledged(service: SearchProcess):
    rng = random.Random(20261206)
    acked = Acknowledged()
    written = 0
    for _round in range(5):
        service.start()
        stub = await service.serving()
        await assert_everything_acknowledged_is_there(stub, acked)
        acked.titles["probe-after-restart"] = "probe-after-restart"
        killer = asyncio.get_running_loop().call_later(rng.uniform(0.3, 2.0), service.process.kill)  # type: ignore[union-attr]
        try:
            while True:
                batch = [item(f"w{written + i}") for i in range(rng.randint(1, 30))]
                try:
                    await upsert(stub, acked, batch)
                except grpc.aio.AioRpcError:
                    break  # killed: this batch was not acknowledged
                written += len(batch)
                await asyncio.sleep(0.01)
        finally:
            killer.cancel()
        service.process.wait()  # type: ignore[union-attr]
        await service._close_channel()
    stub = await restarted(service)
    await assert_everything_acknowledged_is_there(stub, acked)
    assert written > 100


# --- helpers ------------------------------------------------------------------------------------------


async def _assert_no_indexer_outlives(data_dir: Path, died_at: float) -> None:
    """The index-building child dies with the killed service instead of building on as an orphan: it would
    write into `shard.building`, which the restarted service clears and copies into for its own build. So
    once no builder is left, nothing in `shard.building` may have been written after the service died."""
    for _ in range(300):
        if not _indexers_of(data_dir):
            break
        await asyncio.sleep(0.1)
    assert not _indexers_of(data_dir), "an index builder is still running 30 s after the service died"
    building = data_dir / "edge" / "artworks" / "shard.building"
    written_after = [
        str(path.relative_to(building))
        for path in [building, *building.rglob("*")]
        if path.exists() and path.stat().st_mtime > died_at
    ]
    assert written_after == [], f"an orphaned index builder wrote {written_after[:5]} after the service died"


def _indexers_of(data_dir: Path) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"services.search.edge_indexer" in command and any(
            str(data_dir).encode() in part for part in command
        ):
            found.append(int(entry.name))
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
