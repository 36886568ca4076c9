"""QdrantArtworkStore against real qdrant-client engines: embedded storage in a folder (`path`), the
in-process `:memory:` location (the client API a server uses), and, where a Docker engine answers,
a real `qdrant/qdrant` server."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from services.search.qdrant_store import QdrantArtworkStore, point_id
from services.search.store import (
    ArtworkFilter,
    ArtworkRecord,
    IndexedArtwork,
    InvalidStoreRequest,
    StoreUnavailable,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
QDRANT_TEST_IMAGE = os.environ.get("QDRANT_TEST_IMAGE", "qdrant/qdrant:v1.16.2")


def unit(*weights: float) -> np.ndarray:
    """A DIM-d unit vector with the given leading components."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def basis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def item(artwork_id: str, vector: np.ndarray, **fields: object) -> IndexedArtwork:
    return IndexedArtwork(ArtworkRecord(id=artwork_id, **fields), vector)  # type: ignore[arg-type]


def ids(hits: list) -> list[str]:
    return [hit.artwork.id for hit in hits]


# A small catalogue: one artwork per basis direction, with metadata to filter on.
CATALOGUE = [
    item(
        "hokusai-wave",
        basis(0),
        title="The Great Wave",
        artist="Katsushika Hokusai",
        style="Ukiyo-e",
        genre="landscape",
        year=1831,
        extra={"museum": "Met"},
    ),
    item(
        "hiroshige-bridge",
        basis(1),
        title="Sudden Shower",
        artist="Utagawa Hiroshige",
        style="Ukiyo-e",
        genre="landscape",
        year=1857,
    ),
    item(
        "vangogh-bridge",
        basis(2),
        title="Bridge in the Rain",
        artist="Vincent van Gogh",
        style="Post-Impressionism",
        genre="landscape",
        year=1887,
    ),
    item(
        "vangogh-irises",
        basis(3),
        title="Irises",
        artist="Vincent van Gogh",
        style="Post-Impressionism",
        genre="flower painting",
        year=1889,
    ),
    item(
        "renoir-boating",
        basis(4),
        title="Luncheon",
        artist="Pierre-Auguste Renoir",
        style="Impressionism",
        genre="genre painting",
        year=1881,
    ),
    item(
        "kandinsky-vii",
        basis(5),
        title="Composition VII",
        artist="Wassily Kandinsky",
        style="Abstract Art",
        genre="abstract",
        year=1913,
    ),
    item(
        "unknown-year", basis(6), title="Untitled", artist="Anonymous", style="Folk", genre="abstract", year=0
    ),
]


# --- engines ----------------------------------------------------------------------------------------


def _docker_engine_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


@pytest.fixture(scope="session")
def qdrant_server_url() -> Iterator[str]:
    """A real Qdrant server in a container; skipped (not failed) where no Docker engine answers."""
    if not _docker_engine_answers():
        pytest.skip("no Docker engine answers: the real Qdrant server test needs one")
    from testcontainers.community.qdrant import QdrantContainer

    with QdrantContainer(QDRANT_TEST_IMAGE) as container:
        yield f"http://{container.rest_host_address}"


@pytest_asyncio.fixture(
    loop_scope="session", params=["path", "memory", pytest.param("server", marks=pytest.mark.slow)]
)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[QdrantArtworkStore]:
    # A fresh default collection per test, so that a shared server starts each test empty too.
    default = f"t_{uuid.uuid4().hex[:12]}"
    if request.param == "path":
        opened = await QdrantArtworkStore.open(path=tmp_path / "qdrant", default_collection=default)
    elif request.param == "memory":
        opened = await QdrantArtworkStore.open(location=":memory:", default_collection=default)
    else:
        url = request.getfixturevalue("qdrant_server_url")
        opened = await QdrantArtworkStore.open(url=url, timeout_s=10, default_collection=default)
    yield opened
    await opened.close()


@pytest_asyncio.fixture(loop_scope="session")
async def filled(store: QdrantArtworkStore) -> QdrantArtworkStore:
    assert await store.upsert("", CATALOGUE) == len(CATALOGUE)
    return store


# --- upsert -----------------------------------------------------------------------------------------


async def test_upsert_same_ids_twice_replaces_without_growing(filled: QdrantArtworkStore) -> None:
    replacement = [
        item("hokusai-wave", basis(7), title="Kanagawa oki nami ura", artist="Hokusai", year=1830),
        item("renoir-boating", basis(7) + basis(6) * 0.1, title="Le Déjeuner", artist="Renoir", year=1880),
    ]
    assert await filled.upsert("", replacement) == 2
    assert await filled.count("") == len(CATALOGUE)

    found, missing = await filled.get("", ["hokusai-wave"])
    assert missing == []
    assert found[0].artwork == ArtworkRecord(
        id="hokusai-wave", title="Kanagawa oki nami ura", artist="Hokusai", year=1830
    )  # every field replaced, extra included
    # The vector was replaced too: the new direction finds it first.
    assert ids(await filled.search("", basis(7), limit=2)) == ["hokusai-wave", "renoir-boating"]
    assert ids(await filled.search("", basis(0), limit=1)) != ["hokusai-wave"]


async def test_duplicate_ids_in_one_batch_keep_the_last(store: QdrantArtworkStore) -> None:
    batch = [item("a", basis(0), title="first"), item("b", basis(1)), item("a", basis(2), title="last")]
    assert await store.upsert("", batch) == 2
    found, _ = await store.get("", ["a"])
    assert found[0].artwork.title == "last"
    assert await store.count("") == 2


async def test_upsert_nothing_creates_nothing(store: QdrantArtworkStore) -> None:
    assert await store.upsert("", []) == 0
    assert await store.count("") == 0


async def test_all_fields_round_trip(filled: QdrantArtworkStore) -> None:
    found, _ = await filled.get("", ["hokusai-wave"])
    assert found[0].artwork == CATALOGUE[0].artwork
    assert found[0].artwork.extra == {"museum": "Met"}


# --- search -----------------------------------------------------------------------------------------


async def test_search_ranks_by_cosine_similarity(store: QdrantArtworkStore) -> None:
    await store.upsert(
        "",
        [
            item("opposite", -basis(0)),
            item("orthogonal", basis(1)),
            item("same", basis(0)),
            item("diagonal", unit(1, 1)),
            item("close", unit(3, 1)),
        ],
    )
    hits = await store.search("", basis(0), limit=10)
    assert ids(hits) == ["same", "close", "diagonal", "orthogonal", "opposite"]
    expected = [1.0, 3 / np.sqrt(10), 1 / np.sqrt(2), 0.0, -1.0]
    assert [hit.score for hit in hits] == pytest.approx(expected, abs=1e-5)

    # Cosine ignores the query's length.
    scaled = await store.search("", basis(0) * 7.5, limit=10)
    assert [hit.score for hit in scaled] == pytest.approx(expected, abs=1e-5)


async def test_search_limit_and_offset_page_through_the_ranking(filled: QdrantArtworkStore) -> None:
    query = unit(7, 6, 5, 4, 3, 2, 1)  # a distinct score for every artwork
    everything = ids(await filled.search("", query, limit=100))
    assert len(everything) == len(CATALOGUE)
    assert everything[0] == "hokusai-wave"
    pages = [ids(await filled.search("", query, limit=3, offset=offset)) for offset in (0, 3, 6)]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [artwork_id for page in pages for artwork_id in page] == everything
    assert await filled.search("", query, limit=3, offset=50) == []


async def test_search_accepts_a_plain_list(filled: QdrantArtworkStore) -> None:
    assert ids(await filled.search("", basis(4).tolist(), limit=1)) == ["renoir-boating"]


# --- filters ----------------------------------------------------------------------------------------


QUERY_ALL = unit(1, 1, 1, 1, 1, 1, 1, 1)


@pytest.mark.parametrize(
    ("artwork_filter", "expected"),
    [
        (ArtworkFilter(artists=("Vincent van Gogh",)), {"vangogh-bridge", "vangogh-irises"}),
        (ArtworkFilter(artists=("  VINCENT VAN GOGH ",)), {"vangogh-bridge", "vangogh-irises"}),
        # Matched through artsearch.artists.artist_key: "Last, First" is the same artist.
        (ArtworkFilter(artists=("Gogh, Vincent van",)), {"vangogh-bridge", "vangogh-irises"}),
        (
            ArtworkFilter(artists=("vincent van gogh", "Wassily Kandinsky", "Nobody")),
            {"vangogh-bridge", "vangogh-irises", "kandinsky-vii"},
        ),
        (ArtworkFilter(styles=("Ukiyo-e",)), {"hokusai-wave", "hiroshige-bridge"}),
        (
            ArtworkFilter(styles=("Ukiyo-e", "Impressionism")),
            {"hokusai-wave", "hiroshige-bridge", "renoir-boating"},
        ),
        (ArtworkFilter(genres=("abstract",)), {"kandinsky-vii", "unknown-year"}),
        (
            ArtworkFilter(year_min=1857, year_max=1887),
            {"hiroshige-bridge", "vangogh-bridge", "renoir-boating"},
        ),
        (ArtworkFilter(year_min=1889), {"vangogh-irises", "kandinsky-vii"}),
        (ArtworkFilter(year_max=1831), {"hokusai-wave", "unknown-year"}),
        (
            ArtworkFilter(exclude_ids=("hokusai-wave", "kandinsky-vii", "not-stored")),
            {"hiroshige-bridge", "vangogh-bridge", "vangogh-irises", "renoir-boating", "unknown-year"},
        ),
        # Fields are ANDed.
        (
            ArtworkFilter(genres=("landscape",), year_min=1850, exclude_ids=("vangogh-bridge",)),
            {"hiroshige-bridge"},
        ),
        (ArtworkFilter(artists=("Vincent van Gogh",), styles=("Ukiyo-e",)), set()),
    ],
)
async def test_filters_on_search_and_count(
    filled: QdrantArtworkStore, artwork_filter: ArtworkFilter, expected: set[str]
) -> None:
    hits = await filled.search("", QUERY_ALL, limit=100, filter=artwork_filter)
    assert set(ids(hits)) == expected
    assert await filled.count("", artwork_filter) == len(expected)


async def test_filtered_search_keeps_similarity_order(filled: QdrantArtworkStore) -> None:
    query = unit(0, 0, 1, 5)  # closer to the irises than to the bridge
    hits = await filled.search("", query, limit=10, filter=ArtworkFilter(artists=("vincent van gogh",)))
    assert ids(hits) == ["vangogh-irises", "vangogh-bridge"]


async def test_count(filled: QdrantArtworkStore) -> None:
    assert await filled.count("") == len(CATALOGUE)
    assert await filled.count("", ArtworkFilter(styles=("Post-Impressionism",))) == 2


# --- get / delete -----------------------------------------------------------------------------------


async def test_get_returns_found_in_request_order_and_lists_missing(filled: QdrantArtworkStore) -> None:
    found, missing = await filled.get("", ["renoir-boating", "ghost", "hokusai-wave", "renoir-boating", "x"])
    assert [f.artwork.id for f in found] == ["renoir-boating", "hokusai-wave"]
    assert missing == ["ghost", "x"]
    assert all(f.vector is None for f in found)


async def test_get_with_vectors_returns_the_unit_vector(store: QdrantArtworkStore) -> None:
    await store.upsert("", [item("scaled", basis(2) * 4.0 + basis(3) * 3.0)])
    found, _ = await store.get("", ["scaled"], with_vectors=True)
    assert found[0].vector is not None
    np.testing.assert_allclose(found[0].vector, unit(0, 0, 4, 3), atol=1e-6)


async def test_delete_removes_and_counts_only_existing(filled: QdrantArtworkStore) -> None:
    assert await filled.delete("", ["hokusai-wave", "ghost", "hokusai-wave", "kandinsky-vii"]) == 2
    assert await filled.count("") == len(CATALOGUE) - 2
    found, missing = await filled.get("", ["hokusai-wave", "kandinsky-vii", "renoir-boating"])
    assert missing == ["hokusai-wave", "kandinsky-vii"]
    assert [f.artwork.id for f in found] == ["renoir-boating"]
    assert "hokusai-wave" not in ids(await filled.search("", basis(0), limit=100))
    assert await filled.delete("", ["hokusai-wave"]) == 0


# --- collections ------------------------------------------------------------------------------------


async def test_missing_collection_reads_as_empty(store: QdrantArtworkStore) -> None:
    name = f"absent_{uuid.uuid4().hex[:8]}"
    assert await store.search(name, basis(0), limit=5) == []
    assert await store.count(name) == 0
    assert await store.get(name, ["a", "b"]) == ([], ["a", "b"])
    assert await store.delete(name, ["a"]) == 0


async def test_empty_name_is_the_default_collection(filled: QdrantArtworkStore) -> None:
    default = filled._default_collection
    assert await filled.count(default) == len(CATALOGUE)


async def test_collections_are_independent_and_may_differ_in_dimension(filled: QdrantArtworkStore) -> None:
    other = f"{filled._default_collection}_small"
    await filled.upsert(other, [item("tiny", np.array([0.0, 1.0, 0.0], dtype=np.float32))])
    assert await filled.count(other) == 1
    assert await filled.count("") == len(CATALOGUE)
    assert ids(await filled.search(other, [0.0, 1.0, 0.1], limit=5)) == ["tiny"]


# --- invalid input ----------------------------------------------------------------------------------


async def test_dimension_must_match_the_collection(filled: QdrantArtworkStore) -> None:
    with pytest.raises(InvalidStoreRequest, match=r"dimension 4.*holds 8-d"):
        await filled.upsert("", [item("short", np.ones(4, dtype=np.float32))])
    with pytest.raises(InvalidStoreRequest, match=r"query vector has dimension 5.*holds 8-d"):
        await filled.search("", np.ones(5, dtype=np.float32), limit=3)
    assert await filled.count("") == len(CATALOGUE)


async def test_dimension_must_match_inside_a_batch(store: QdrantArtworkStore) -> None:
    batch = [item("a", basis(0)), item("b", np.ones(3, dtype=np.float32))]
    with pytest.raises(
        InvalidStoreRequest, match=r"items\[1\] \(id 'b'\) has dimension 3.*items\[0\] has dimension 8"
    ):
        await store.upsert("", batch)
    assert await store.count("") == 0  # nothing written, not even the collection


@pytest.mark.parametrize(
    ("vector", "message"),
    [
        (np.array([], dtype=np.float32), "is empty"),
        (np.array([1.0, np.nan, 0, 0, 0, 0, 0, 0], dtype=np.float32), "NaN or infinite"),
        (np.array([np.inf, 0, 0, 0, 0, 0, 0, 0], dtype=np.float32), "NaN or infinite"),
        (np.zeros(DIM, dtype=np.float32), "zero vector"),
        (None, "has no vector"),
    ],
)
async def test_unusable_vectors_are_rejected(
    filled: QdrantArtworkStore, vector: np.ndarray | None, message: str
) -> None:
    with pytest.raises(InvalidStoreRequest, match=message):
        await filled.upsert("", [item("fine", basis(1)), item("broken", vector)])  # type: ignore[arg-type]
    if vector is not None:
        with pytest.raises(InvalidStoreRequest, match=message):
            await filled.search("", vector, limit=3)
    assert await filled.count("") == len(CATALOGUE)
    assert (await filled.get("", ["fine"])).missing == ["fine"]  # the batch is all or nothing


async def test_empty_artwork_id_is_rejected(store: QdrantArtworkStore) -> None:
    with pytest.raises(InvalidStoreRequest, match=r"items\[0\] has an empty artwork id"):
        await store.upsert("", [item("", basis(0))])


# --- embedded storage ---------------------------------------------------------------------------------


async def test_embedded_storage_persists_across_reopen(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    first = await QdrantArtworkStore.open(path=folder)
    await first.upsert("", CATALOGUE)
    await first.delete("", ["kandinsky-vii"])
    await first.close()

    reopened = await QdrantArtworkStore.open(path=folder)
    try:
        assert await reopened.count("") == len(CATALOGUE) - 1
        found, missing = await reopened.get("", ["hokusai-wave", "kandinsky-vii"], with_vectors=True)
        assert found[0].artwork == CATALOGUE[0].artwork
        np.testing.assert_allclose(found[0].vector, basis(0))
        assert missing == ["kandinsky-vii"]
        assert ids(await reopened.search("", basis(3), limit=1)) == ["vangogh-irises"]
        # The collection's dimension survived too.
        with pytest.raises(InvalidStoreRequest, match="holds 8-d"):
            await reopened.upsert("", [item("short", np.ones(2, dtype=np.float32))])
    finally:
        await reopened.close()


async def test_embedded_storage_is_single_process(tmp_path: Path) -> None:
    first = await QdrantArtworkStore.open(path=tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="already accessed"):
            await QdrantArtworkStore.open(path=tmp_path)
    finally:
        await first.close()
    second = await QdrantArtworkStore.open(path=tmp_path)  # the lock goes with close()
    await second.close()


# --- server connection ------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_server_raises_store_unavailable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    store = await QdrantArtworkStore.open(url=url, timeout_s=2, check_compatibility=False)
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.count("")
        with pytest.raises(StoreUnavailable):
            await store.upsert("", [item("a", basis(0))])
    finally:
        await store.close()


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id("hokusai-wave") == point_id("hokusai-wave")
    assert point_id("hokusai-wave") != point_id("hokusai-wave ")
    assert uuid.UUID(point_id("hokusai-wave")).version == 5


async def test_open_needs_exactly_one_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await QdrantArtworkStore.open()
    with pytest.raises(ValueError, match="exactly one"):
        await QdrantArtworkStore.open(path=tmp_path, location=":memory:")


@pytest.mark.slow
async def test_collection_deleted_by_another_client_reads_empty_then_is_recreated(
    qdrant_server_url: str,
) -> None:
    from qdrant_client import AsyncQdrantClient

    name = f"t_{uuid.uuid4().hex[:12]}"
    store = await QdrantArtworkStore.open(url=qdrant_server_url, default_collection=name)
    other = AsyncQdrantClient(url=qdrant_server_url)
    try:
        await store.upsert("", CATALOGUE)
        assert await store.count("") == len(CATALOGUE)
        await other.delete_collection(name)
        assert await store.search("", basis(0), limit=3) == []
        assert await store.count("") == 0
        # Known again as missing: a new upsert recreates it, even with another dimension.
        await store.upsert("", [item("small", np.ones(3, dtype=np.float32))])
        assert await store.count("") == 1
        await other.delete_collection(name)
        await store.upsert("", [item("again", np.ones(3, dtype=np.float32))])  # stale cache: retried
        assert (await store.get("", ["again"])).missing == []
    finally:
        await other.close()
        await store.close()
