"""Region matching in the search stores: every engine (qdrant-edge, qdrant-client local mode on disk and in
memory) stores an artwork's region descriptors as region points beside its artwork point and, when a
search asks, scores each artwork by the better of its whole picture and its best region. The artworks
stay artworks: counted, listed, filtered, replaced and deleted as one, regions included; region points
are never counted, listed or returned, and one without its artwork never surfaces."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from functools import partial
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
import qdrant_edge as edge
from qdrant_client import models

from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.search import edge_files
from services.search.edge_store import EdgeArtworkStore, EdgeSettings, edge_config
from services.search.payload import point_id, region_point_id, to_payload, to_region_payload
from services.search.qdrant_store import QdrantArtworkStore
from services.search.server import SearchService, search_registration
from services.search.store import (
    ArtworkFilter,
    ArtworkRecord,
    ArtworkStore,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
)

pytestmark = [
    pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning"),
    pytest.mark.filterwarnings("ignore:Local mode performs exact:UserWarning"),
]

DIM = 16
PRECISION = 2e-3  # float16 storage
ENGINES = ["edge", "qdrant-local", "memory"]


def basis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def mix(*pairs: tuple[int, float]) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    for index, weight in pairs:
        vector[index] = weight
    return vector / np.linalg.norm(vector)


def artwork(
    artwork_id: str, vector: np.ndarray, regions: list[np.ndarray] | None = None, **fields: object
) -> IndexedArtwork:
    stacked = np.stack(regions) if regions else None
    return IndexedArtwork(ArtworkRecord(id=artwork_id, **fields), vector, stacked)  # type: ignore[arg-type]


# The detail (direction 9) appears only in one region of the wave; the whole of the wave points elsewhere.
DETAIL = basis(9)
CATALOGUE = [
    artwork("wave", basis(0), [mix((0, 1), (1, 1)), mix((9, 1), (0, 0.2)), basis(2)], style="Ukiyo-e"),
    artwork("bridge", mix((3, 1), (9, 0.5)), [basis(3), basis(4)], style="Ukiyo-e"),
    artwork("irises", basis(5), [basis(5), mix((5, 1), (6, 1))], style="Post-Impressionism"),
    artwork("plain", mix((9, 0.35), (7, 1)), None, style="Folk"),  # no regions at all
]
CATALOGUE_IDS = {item.artwork.id for item in CATALOGUE}


Opener = Callable[[], Awaitable[ArtworkStore]]


def opener(engine: str, folder: Path, collection: str) -> Opener:
    async def open_store() -> ArtworkStore:
        if engine == "edge":
            return await EdgeArtworkStore.open(folder / "edge", default_collection=collection)
        if engine == "qdrant-local":
            return await QdrantArtworkStore.open(path=folder / "qdrant", default_collection=collection)
        return await QdrantArtworkStore.open(location=":memory:", default_collection=collection)

    return open_store


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture(loop_scope="session")
async def store(engine: str, tmp_path: Path) -> AsyncIterator[ArtworkStore]:
    opened = await opener(engine, tmp_path, f"t_{uuid.uuid4().hex[:12]}")()
    assert await opened.upsert("", CATALOGUE) == len(CATALOGUE)
    yield opened
    await opened.close()


def ids(hits: list) -> list[str]:
    return [hit.artwork.id for hit in hits]


# The engine itself, under the store (which counts artworks only): what is really stored.


async def engine_points(store: ArtworkStore, region_of: str | None = None) -> int:
    """Every point of the store's default collection, or the region points of artwork `region_of`."""
    name = store._default_collection  # type: ignore[attr-defined]
    if isinstance(store, EdgeArtworkStore):
        edge_filter = None
        if region_of is not None:
            belongs = edge.FieldCondition(key="region_of", match=edge.MatchAny([region_of]))
            edge_filter = edge.Filter(must=[belongs])
        shards = store._collections[name].shards.all()  # the artworks' and the region points'
        return sum(int(s.count(edge.CountRequest(exact=True, filter=edge_filter))) for s in shards)
    assert isinstance(store, QdrantArtworkStore)
    qdrant_filter = None
    if region_of is not None:
        belongs_to = models.FieldCondition(key="region_of", match=models.MatchAny(any=[region_of]))
        qdrant_filter = models.Filter(must=[belongs_to])
    return int((await store._client.count(name, count_filter=qdrant_filter, exact=True)).count)


async def insert_orphan_region(store: ArtworkStore, artwork_id: str, vector: np.ndarray) -> None:
    """A region point whose artwork point does not exist (what a crash between two writes could leave)."""
    name = store._default_collection  # type: ignore[attr-defined]
    point, payload = region_point_id(artwork_id, 0), {"region_of": artwork_id, "style": "Ukiyo-e"}
    if isinstance(store, EdgeArtworkStore):
        region_shard = store._collections[name].shards.regions
        assert region_shard is not None
        region_shard.update(edge.UpdateOperation.upsert_points([edge.Point(point, vector.tolist(), payload)]))
        return
    assert isinstance(store, QdrantArtworkStore)
    orphan = models.PointStruct(id=point, vector={"regions": vector.tolist()}, payload=payload)
    await store._client.upsert(name, points=[orphan], wait=True)


REGION_COUNT = sum(0 if item.regions is None else len(item.regions) for item in CATALOGUE)


# --- matching ---------------------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_a_detail_finds_the_artwork_by_its_region_only_when_asked(store: ArtworkStore) -> None:
    without = await store.search("", DETAIL, limit=4)
    assert ids(without)[0] == "bridge"  # whole pictures only: the wave's whole vector is far from the detail
    assert all(hit.whole_score is None and hit.region_score is None for hit in without)

    hits = await store.search("", DETAIL, limit=4, match_regions=True)
    assert ids(hits)[0] == "wave"
    wave = hits[0]
    expected_region = float(mix((9, 1), (0, 0.2)) @ DETAIL)
    assert wave.region_score == pytest.approx(expected_region, abs=PRECISION)
    assert wave.whole_score == pytest.approx(0.0, abs=PRECISION)
    assert wave.score == pytest.approx(expected_region, abs=PRECISION)
    assert wave.region_matched
    assert sorted(ids(hits)) == sorted(CATALOGUE_IDS)  # artworks, each once, never region points


@pytest.mark.asyncio(loop_scope="session")
async def test_each_artwork_scores_the_better_of_whole_and_best_region(store: ArtworkStore) -> None:
    hits = {hit.artwork.id: hit for hit in await store.search("", DETAIL, limit=4, match_regions=True)}
    for item in CATALOGUE:
        hit = hits[item.artwork.id]
        whole = float(item.vector @ DETAIL)
        assert hit.whole_score == pytest.approx(whole, abs=PRECISION)
        if item.regions is None:
            assert hit.region_score is None and not hit.region_matched
            assert hit.score == pytest.approx(whole, abs=PRECISION)
        else:
            region = float(np.max(item.regions @ DETAIL))
            assert hit.region_score == pytest.approx(region, abs=PRECISION)
            assert hit.score == pytest.approx(max(whole, region), abs=PRECISION)
            if abs(region - whole) > PRECISION:
                assert hit.region_matched == (region > whole)


@pytest.mark.asyncio(loop_scope="session")
async def test_region_matching_is_exact_over_many_artworks_with_offset(engine: str, tmp_path: Path) -> None:
    """The merged page equals the brute-force ranking by max(whole, best region), at any offset."""
    rng = np.random.default_rng(7)
    count, regions_each = 60, 5
    vectors = rng.normal(size=(count, DIM)).astype(np.float32)
    regions = rng.normal(size=(count, regions_each, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    regions /= np.linalg.norm(regions, axis=2, keepdims=True)
    items = [
        artwork(f"a{i:02d}", vectors[i], list(regions[i]) if i % 4 else None, year=1800 + i)
        for i in range(count)
    ]
    store = await opener(engine, tmp_path, "many")()
    try:
        await store.upsert("", items)
        query = rng.normal(size=DIM).astype(np.float32)
        query /= np.linalg.norm(query)
        best = [
            max(float(vectors[i] @ query), float(np.max(regions[i] @ query)) if i % 4 else -2.0)
            for i in range(count)
        ]
        expected = np.argsort(best)[::-1]
        for offset in (0, 7):
            hits = await store.search("", query, limit=10, offset=offset, match_regions=True)
            got = [best[int(hit.artwork.id[1:])] for hit in hits]
            assert got == pytest.approx([best[i] for i in expected[offset : offset + 10]], abs=PRECISION)
            assert [hit.score for hit in hits] == pytest.approx(got, abs=PRECISION)
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_filters_apply_to_region_matches(store: ArtworkStore) -> None:
    hits = await store.search(
        "", DETAIL, limit=4, filter=ArtworkFilter(styles=("Post-Impressionism", "Folk")), match_regions=True
    )
    assert set(ids(hits)) == {"irises", "plain"}
    excluded = await store.search(
        "", DETAIL, limit=4, filter=ArtworkFilter(exclude_ids=("wave",)), match_regions=True
    )
    assert "wave" not in ids(excluded)
    assert ids(excluded)[0] == "bridge"


# --- artworks stay artworks ---------------------------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_count_scroll_and_get_see_artworks_not_regions(store: ArtworkStore) -> None:
    assert await store.count("") == len(CATALOGUE)
    page = await store.scroll("", limit=100, with_vectors=True)
    assert sorted(item.artwork.id for item in page.items) == sorted(CATALOGUE_IDS)
    assert page.next_cursor == ""
    got = await store.get("", ["wave"], with_vectors=True)
    (wave,) = got.found
    assert wave.vector is not None and wave.vector.shape == (DIM,)
    assert float(wave.vector @ basis(0)) == pytest.approx(1.0, abs=PRECISION)
    assert wave.regions is None  # never read back


@pytest.mark.asyncio(loop_scope="session")
async def test_regions_are_points_of_their_own_never_counted_listed_or_got(store: ArtworkStore) -> None:
    assert await engine_points(store) == len(CATALOGUE) + REGION_COUNT
    assert await engine_points(store, region_of="wave") == 3
    assert await store.count("") == len(CATALOGUE)
    # Region points carry the style: a filtered count must still count artworks only.
    assert await store.count("", ArtworkFilter(styles=("Ukiyo-e",))) == 2
    firsts = await store.scroll("", limit=2)
    rest = await store.scroll("", limit=100, cursor=firsts.next_cursor)
    listed = [item.artwork.id for item in (*firsts.items, *rest.items)]
    assert sorted(listed) == sorted(CATALOGUE_IDS) and rest.next_cursor == ""
    region_id = region_point_id("wave", 0)
    assert (await store.get("", ["wave", region_id])).missing == [region_id]


@pytest.mark.asyncio(loop_scope="session")
async def test_deleting_an_artwork_deletes_its_region_points(store: ArtworkStore) -> None:
    assert await store.delete("", ["wave", "irises"]) == 2
    assert await engine_points(store, region_of="wave") == 0
    assert await engine_points(store, region_of="irises") == 0
    assert await engine_points(store) == 2 + 2  # bridge and its 2 regions, plain
    assert await store.delete("", ["wave"]) == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_re_upserting_without_regions_deletes_the_region_points(store: ArtworkStore) -> None:
    wave = CATALOGUE[0]
    await store.upsert("", [IndexedArtwork(wave.artwork, wave.vector, None)])
    assert await engine_points(store, region_of="wave") == 0
    await store.upsert("", [artwork("wave", basis(0), [basis(10), basis(11)])])
    assert await engine_points(store, region_of="wave") == 2
    assert await engine_points(store) == len(CATALOGUE) + REGION_COUNT - 1


@pytest.mark.asyncio(loop_scope="session")
async def test_filters_apply_to_region_points_edits_included(store: ArtworkStore) -> None:
    # Another artist's copy of the wave's detail: a strong region match that filters must keep out.
    await store.upsert("", [artwork("copy", basis(11), [DETAIL], artist="Hiroshige", style="Ukiyo-e")])
    await store.update_metadata("", "wave", MetadataChanges(artist="Hokusai"))
    hokusai = await store.search(
        "", DETAIL, limit=4, filter=ArtworkFilter(artists=("Hokusai",)), match_regions=True
    )
    assert ids(hokusai) == ["wave"] and hokusai[0].region_matched  # the edit reached its regions
    hiroshige = await store.search(
        "", DETAIL, limit=4, filter=ArtworkFilter(artists=("Hiroshige",)), match_regions=True
    )
    assert ids(hiroshige) == ["copy"]
    without = await store.search(
        "", DETAIL, limit=2, filter=ArtworkFilter(exclude_ids=("copy", "wave")), match_regions=True
    )
    assert ids(without) == ["bridge", "plain"]
    unfiltered = await store.search("", DETAIL, limit=2, match_regions=True)
    assert set(ids(unfiltered)) == {"wave", "copy"}


@pytest.mark.asyncio(loop_scope="session")
async def test_a_region_point_without_its_artwork_never_surfaces(store: ArtworkStore) -> None:
    await insert_orphan_region(store, "ghost", DETAIL)
    hits = await store.search("", DETAIL, limit=10, match_regions=True)
    assert sorted(ids(hits)) == sorted(CATALOGUE_IDS)
    assert ids(hits)[0] == "wave"
    assert await store.count("") == len(CATALOGUE)
    # Deleting the id clears what was left of it.
    assert await store.delete("", ["ghost"]) == 0
    assert await engine_points(store, region_of="ghost") == 0


@pytest.mark.asyncio(loop_scope="session")
async def test_delete_takes_the_regions_with_the_artwork(store: ArtworkStore) -> None:
    assert await store.delete("", ["wave"]) == 1
    hits = await store.search("", DETAIL, limit=10, match_regions=True)
    assert "wave" not in ids(hits)
    assert await store.count("") == len(CATALOGUE) - 1
    # Re-ingested, it is found by its region again, once.
    await store.upsert("", [CATALOGUE[0]])
    hits = await store.search("", DETAIL, limit=10, match_regions=True)
    assert ids(hits)[0] == "wave" and ids(hits).count("wave") == 1


@pytest.mark.asyncio(loop_scope="session")
async def test_replacing_an_artwork_replaces_its_regions(store: ArtworkStore) -> None:
    wave = CATALOGUE[0]
    # Replaced without regions: the old regions go with the old point.
    await store.upsert("", [IndexedArtwork(wave.artwork, wave.vector, None)])
    hits = {hit.artwork.id: hit for hit in await store.search("", DETAIL, limit=4, match_regions=True)}
    assert hits["wave"].region_score is None
    assert ids(await store.search("", DETAIL, limit=1, match_regions=True)) == ["bridge"]
    # Replaced with other regions: only the new ones count.
    await store.upsert("", [artwork("wave", basis(0), [basis(10)])])
    hits = {hit.artwork.id: hit for hit in await store.search("", DETAIL, limit=4, match_regions=True)}
    assert hits["wave"].region_score == pytest.approx(0.0, abs=PRECISION)
    found = await store.search("", basis(10), limit=1, match_regions=True)
    assert ids(found) == ["wave"] and found[0].region_matched
    assert await store.count("") == len(CATALOGUE)


@pytest.mark.asyncio(loop_scope="session")
async def test_editing_metadata_keeps_the_regions(store: ArtworkStore) -> None:
    await store.update_metadata("", "wave", MetadataChanges(title="The Great Wave", style="Edo"))
    hits = await store.search("", DETAIL, limit=2, filter=ArtworkFilter(styles=("Edo",)), match_regions=True)
    assert ids(hits) == ["wave"] and hits[0].region_matched
    assert hits[0].artwork.title == "The Great Wave"


@pytest.mark.asyncio(loop_scope="session")
async def test_regions_of_the_wrong_dimension_are_refused(store: ArtworkStore) -> None:
    bad = IndexedArtwork(ArtworkRecord(id="bad"), basis(0), np.ones((2, DIM + 1), dtype=np.float32))
    with pytest.raises(InvalidStoreRequest, match="regions"):
        await store.upsert("", [bad])
    zero = IndexedArtwork(ArtworkRecord(id="bad"), basis(0), np.zeros((1, DIM), dtype=np.float32))
    with pytest.raises(InvalidStoreRequest, match="zero"):
        await store.upsert("", [zero])
    assert (await store.get("", ["bad"])).missing == ["bad"]


# --- qdrant-edge: older collections, snapshots ---------------------------------------------------------


@pytest.mark.asyncio(loop_scope="session")
async def test_an_edge_collection_made_before_regions_answers_whole_pictures(tmp_path: Path) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    # A collection as the store made it before regions existed: one unnamed vector, no "regions" key.
    opened = edge_files.open_collection(
        folder / "old", DIM, partial(edge_config, settings=EdgeSettings()), regions=False
    )
    assert opened is not None
    opened[1].close()
    store = await EdgeArtworkStore.open(folder, default_collection="old")
    try:
        await store.upsert("", CATALOGUE)  # regions are dropped (logged), the artworks stored
        assert await store.count("") == len(CATALOGUE)
        hits = await store.search("", DETAIL, limit=4, match_regions=True)
        assert ids(hits)[0] == "bridge"
        assert all(hit.region_score is None and hit.whole_score == hit.score for hit in hits)
    finally:
        await store.close()


def old_multivector_config(dimension: int) -> edge.EdgeConfig:
    """The first regions layout (never released): a MaxSim multivector in the artwork's point."""
    vectors = {
        "": edge.EdgeVectorParams(size=dimension, distance=edge.Distance.Cosine),
        "regions": edge.EdgeVectorParams(
            size=dimension,
            distance=edge.Distance.Cosine,
            multivector_config=edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim),
            hnsw_config=edge.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=0),
        ),
    }
    hnsw = edge.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000)
    return edge.EdgeConfig(vectors=vectors, hnsw_config=hnsw)


async def check_searched_without_regions(store: ArtworkStore) -> None:
    await store.upsert("", CATALOGUE)  # regions are dropped (logged), the artworks stored
    assert await engine_points(store) == len(CATALOGUE)
    assert await store.count("") == len(CATALOGUE)
    hits = await store.search("", DETAIL, limit=4, match_regions=True)
    assert ids(hits)[0] == "bridge"
    assert all(hit.region_score is None and hit.whole_score == hit.score for hit in hits)
    (wave,) = (await store.get("", ["wave"], with_vectors=True)).found
    assert wave.vector is not None and wave.vector.shape == (DIM,)
    page = await store.scroll("", limit=10, with_vectors=True)
    assert all(item.vector is not None and item.vector.shape == (DIM,) for item in page.items)


@pytest.mark.asyncio(loop_scope="session")
async def test_an_edge_collection_of_the_old_multivector_layout_answers_whole_pictures(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "edge"
    folder.mkdir()
    opened = edge_files.open_collection(folder / "old", DIM, old_multivector_config)
    assert opened is not None
    opened[1].close()
    # As that layout recorded itself.
    edge_files.write_json(
        folder / "old" / "collection.json", {"format": 1, "dimension": DIM, "regions": True}
    )
    store = await EdgeArtworkStore.open(folder, default_collection="old")
    try:
        await check_searched_without_regions(store)
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_qdrant_collection_of_the_old_multivector_layout_answers_whole_pictures() -> None:
    store = await QdrantArtworkStore.open(location=":memory:", default_collection="old")
    try:
        multivector = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
        await store._client.create_collection(
            "old",
            vectors_config={
                "": models.VectorParams(size=DIM, distance=models.Distance.COSINE),
                "regions": models.VectorParams(
                    size=DIM, distance=models.Distance.COSINE, multivector_config=multivector
                ),
            },
        )
        await check_searched_without_regions(store)
    finally:
        await store.close()


def shared_shard_collection(folder: Path) -> None:
    """CATALOGUE in a collection of the layout that had the region points in the artworks' shard (the
    whole vector named "", the region points' "regions"), as that layout wrote it."""
    vector = edge.EdgeVectorParams(size=DIM, distance=edge.Distance.Cosine)
    named = {"": vector, "regions": vector}
    shard = edge.EdgeShard.create(str(folder / "shard"), edge.EdgeConfig(vectors=named))
    for item in CATALOGUE:
        points = [edge.Point(point_id(item.artwork.id), {"": item.vector.tolist()}, to_payload(item.artwork))]
        for index, row in enumerate([] if item.regions is None else item.regions):
            region = {"regions": row.tolist()}
            points.append(
                edge.Point(region_point_id(item.artwork.id, index), region, to_region_payload(item.artwork))
            )
        shard.update(edge.UpdateOperation.upsert_points(points))
    shard.flush()
    shard.close()
    edge_files.write_json(folder / "collection.json", {"format": 1, "dimension": DIM, "region_points": True})


async def check_split(store: EdgeArtworkStore, name: str) -> None:
    """The collection `name` has a region shard of its own and answers as before the split."""
    meta = (store._root / name / "collection.json").read_text()
    assert '"region_shard": true' in meta and "region_points" not in meta
    assert await store.count(name) == len(CATALOGUE)
    hits = await store.search(name, DETAIL, limit=4, match_regions=True)
    assert ids(hits)[0] == "wave" and hits[0].region_matched
    assert (await store.get(name, ["wave"], with_vectors=True)).found[0].vector.shape == (DIM,)
    shards = store._collections[name].shards
    assert shards.regions is not None
    assert int(shards.regions.count(edge.CountRequest(exact=True))) == REGION_COUNT


@pytest.mark.asyncio(loop_scope="session")
async def test_an_edge_collection_with_region_points_in_the_artworks_shard_is_split_at_open(
    tmp_path: Path,
) -> None:
    (tmp_path / "edge" / "shared").mkdir(parents=True)
    shared_shard_collection(tmp_path / "edge" / "shared")
    store = await EdgeArtworkStore.open(tmp_path / "edge", default_collection="shared")
    try:
        await check_split(store, "shared")
        await store.upsert("", [artwork("wave", basis(0), [basis(11)], style="Ukiyo-e")])  # writes go on
        assert ids(await store.search("", basis(11), limit=1, match_regions=True)) == ["wave"]
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_edge_snapshot_with_region_points_in_the_artworks_shard_is_split_at_restore(
    tmp_path: Path,
) -> None:
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    shared_shard_collection(legacy)
    store = await EdgeArtworkStore.open(tmp_path / "edge", default_collection="paintings")
    try:
        await store.upsert("", CATALOGUE[:1])
        name = "paintings-20261206T120000Z.snapshot"
        edge_files.write_archive(legacy, tmp_path / "edge" / "snapshots" / name)
        assert await store.restore_snapshot("", name) == len(CATALOGUE)  # in place of a live collection
        await check_split(store, "paintings")
        assert await store.restore_snapshot("copy", name) == len(CATALOGUE)  # as a new one
        await check_split(store, "copy")
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_an_edge_snapshot_keeps_the_regions(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path / "edge", default_collection="paintings")
    try:
        await store.upsert("", CATALOGUE)
        snapshot = await store.create_snapshot("")
        await store.delete("", ["wave"])
        assert await store.restore_snapshot("copy", snapshot.name) == len(CATALOGUE)
        hits = await store.search("copy", DETAIL, limit=4, match_regions=True)
        assert ids(hits)[0] == "wave" and hits[0].region_matched
        assert await store.restore_snapshot("", snapshot.name) == len(CATALOGUE)
        assert ids(await store.search("", DETAIL, limit=1, match_regions=True)) == ["wave"]
    finally:
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_a_region_must_beat_the_whole_picture_by_the_margin(store: ArtworkStore) -> None:
    region = float(mix((9, 1), (0, 0.2)) @ DETAIL)  # the wave's best region, ~0.98
    bridge_whole = float(CATALOGUE[1].vector @ DETAIL)  # ~0.45, the best whole picture
    hits = await store.search("", DETAIL, limit=4, match_regions=True, region_margin=0.6)
    assert ids(hits)[0] == "bridge" and not hits[0].region_matched
    assert hits[0].score == pytest.approx(bridge_whole, abs=PRECISION)
    wave = next(hit for hit in hits if hit.artwork.id == "wave")
    assert wave.score == pytest.approx(region - 0.6, abs=PRECISION) and wave.region_matched
    assert wave.region_score == pytest.approx(region, abs=PRECISION)  # reported as measured


# --- through the gRPC service ------------------------------------------------------------------------


def proto_item(item: IndexedArtwork) -> search_pb2.IndexedArtwork:
    regions = [] if item.regions is None else item.regions
    return search_pb2.IndexedArtwork(
        artwork=common_pb2.Artwork(id=item.artwork.id, style=item.artwork.style),
        embedding=common_pb2.Embedding(values=item.vector.tolist()),
        regions=[common_pb2.Embedding(values=row.tolist()) for row in regions],
    )


@pytest.mark.asyncio(loop_scope="session")
async def test_the_service_matches_regions_with_its_margin_or_the_requests(tmp_path: Path) -> None:
    store = await EdgeArtworkStore.open(tmp_path / "edge")
    server = GrpcServiceServer([search_registration(SearchService(store, region_margin=0.6))])
    port = await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = search_pb2_grpc.SearchServiceStub(channel)
            await stub.Upsert(search_pb2.UpsertRequest(items=[proto_item(i) for i in CATALOGUE]), timeout=10)
            query = common_pb2.Embedding(values=DETAIL.tolist())
            plain = await stub.Search(search_pb2.SearchRequest(query=query, limit=4), timeout=10)
            assert not plain.regions_matched and not plain.hits[0].HasField("whole_score")
            by_default = await stub.Search(
                search_pb2.SearchRequest(query=query, limit=4, match_regions=True), timeout=10
            )
            assert by_default.regions_matched and by_default.hits[0].artwork.id == "bridge"  # margin 0.6
            asked = await stub.Search(
                search_pb2.SearchRequest(query=query, limit=4, match_regions=True, region_margin=0.0),
                timeout=10,
            )
            first = asked.hits[0]
            assert first.artwork.id == "wave" and first.region_matched
            assert first.HasField("whole_score") and first.HasField("region_score")
            assert first.score == pytest.approx(first.region_score, abs=PRECISION)
            plain_hit = next(hit for hit in asked.hits if hit.artwork.id == "plain")
            assert not plain_hit.HasField("region_score") and not plain_hit.region_matched
            for bad in (-0.1, 1.5, float("nan")):
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.Search(
                        search_pb2.SearchRequest(query=query, limit=4, match_regions=True, region_margin=bad),
                        timeout=10,
                    )
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            wrong = search_pb2.IndexedArtwork(
                artwork=common_pb2.Artwork(id="bad"),
                embedding=common_pb2.Embedding(values=DETAIL.tolist()),
                regions=[common_pb2.Embedding(values=[1.0, 2.0])],
            )
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.Upsert(search_pb2.UpsertRequest(items=[wrong]), timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        await server.stop(0)
        await store.close()


@pytest.mark.asyncio(loop_scope="session")
async def test_region_matching_through_an_alias(engine: str, tmp_path: Path) -> None:
    store = await opener(engine, tmp_path, "paintings_v1")()
    try:
        await store.upsert("", CATALOGUE)
        await store.set_alias("paintings", "paintings_v1")
        hits = await store.search("paintings", DETAIL, limit=2, match_regions=True)
        assert ids(hits)[0] == "wave" and hits[0].region_matched
    finally:
        await store.close()
