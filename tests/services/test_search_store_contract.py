"""The `ArtworkStore` contract, the same cases over every engine: qdrant-edge (the embedded default),
qdrant-client's local mode on disk, its `:memory:` location (the client API a server uses) and, where a
Docker engine answers, a real Qdrant server."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio

from artsearch.descriptor_layout import DescriptorLayout, aspect_similarities, assemble
from services.search.edge_store import EdgeArtworkStore
from services.search.qdrant_store import QdrantArtworkStore
from services.search.store import (
    ArtworkFilter,
    ArtworkRecord,
    ArtworkStore,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
    NotFound,
    UnsupportedOperation,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
# Stores keep vectors at least at half precision (qdrant-edge stores float16 by default): returned vectors
# and scores are within this of the exact values.
PRECISION = 1e-3


def unit(*weights: float) -> np.ndarray:
    """A DIM-d unit vector with the given leading components."""
    vector = np.zeros(DIM, dtype=np.float32)
    vector[: len(weights)] = weights
    return vector / np.linalg.norm(vector)


def basis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def item(artwork_id: str, vector: np.ndarray | None, **fields: object) -> IndexedArtwork:
    return IndexedArtwork(ArtworkRecord(id=artwork_id, **fields), vector)  # type: ignore[arg-type]


def ids(hits: list) -> list[str]:
    return [hit.artwork.id for hit in hits]


# A small catalogue: one artwork per basis direction, with metadata to filter on.
CATALOGUE = [
    item("hokusai-wave", basis(0), title="The Great Wave", artist="Katsushika Hokusai", style="Ukiyo-e",
         genre="landscape", year=1831, extra={"museum": "Met"}),
    item("hiroshige-bridge", basis(1), title="Sudden Shower", artist="Utagawa Hiroshige", style="Ukiyo-e",
         genre="landscape", year=1857),
    item("vangogh-bridge", basis(2), title="Bridge in the Rain", artist="Vincent van Gogh",
         style="Post-Impressionism", genre="landscape", year=1887),
    item("vangogh-irises", basis(3), title="Irises", artist="Vincent van Gogh", style="Post-Impressionism",
         genre="flower painting", year=1889),
    item("renoir-boating", basis(4), title="Luncheon", artist="Pierre-Auguste Renoir", style="Impressionism",
         genre="genre painting", year=1881),
    item("kandinsky-vii", basis(5), title="Composition VII", artist="Wassily Kandinsky", style="Abstract Art",
         genre="abstract", year=1913),
    item("unknown-year", basis(6), title="Untitled", artist="Anonymous", style="Folk", genre="abstract",
         year=0),
]  # fmt: skip


# --- engines ----------------------------------------------------------------------------------------


Opener = Callable[[str], Awaitable[ArtworkStore]]


@dataclass(frozen=True)
class Engine:
    name: str
    persistent: bool  # reopening the same folder finds the data again
    snapshots: bool


ENGINES = [
    Engine("edge", persistent=True, snapshots=True),
    Engine("qdrant-local", persistent=True, snapshots=False),
    Engine("memory", persistent=False, snapshots=False),
]
SERVER = Engine("server", persistent=True, snapshots=True)
ENGINE_PARAMS = [pytest.param(e, id=e.name) for e in ENGINES] + [
    pytest.param(SERVER, id="server", marks=pytest.mark.slow)
]


def opener(engine: Engine, folder: Path, request: pytest.FixtureRequest) -> Opener:
    """Opens a store of `engine` on `folder` (the same data each time for persistent engines)."""

    async def open_store(default_collection: str) -> ArtworkStore:
        if engine.name == "edge":
            return await EdgeArtworkStore.open(folder / "edge", default_collection=default_collection)
        if engine.name == "qdrant-local":
            return await QdrantArtworkStore.open(
                path=folder / "qdrant", default_collection=default_collection
            )
        if engine.name == "memory":
            return await QdrantArtworkStore.open(location=":memory:", default_collection=default_collection)
        url = request.getfixturevalue("qdrant_server_url")
        return await QdrantArtworkStore.open(url=url, timeout_s=10, default_collection=default_collection)

    return open_store


@pytest.fixture(params=ENGINE_PARAMS)
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.param


@pytest_asyncio.fixture(loop_scope="session")
async def open_store(engine: Engine, tmp_path: Path, request: pytest.FixtureRequest) -> Opener:
    return opener(engine, tmp_path, request)


@pytest_asyncio.fixture(loop_scope="session")
async def store(open_store: Opener) -> AsyncIterator[ArtworkStore]:
    # A fresh default collection per test, so that a shared server starts each test empty too.
    opened = await open_store(f"t_{uuid.uuid4().hex[:12]}")
    yield opened
    await opened.close()


@pytest_asyncio.fixture(loop_scope="session")
async def filled(store: ArtworkStore) -> ArtworkStore:
    assert await store.upsert("", CATALOGUE) == len(CATALOGUE)
    return store


@pytest_asyncio.fixture(loop_scope="session", scope="module", params=ENGINE_PARAMS)
async def catalogue_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ArtworkStore]:
    """The catalogue, once per engine, for the tests that only read."""
    opened = await opener(request.param, tmp_path_factory.mktemp("catalogue"), request)(
        f"t_{uuid.uuid4().hex[:12]}"
    )
    await opened.upsert("", CATALOGUE)
    yield opened
    await opened.close()


# --- upsert -----------------------------------------------------------------------------------------


async def test_upsert_same_ids_twice_replaces_without_growing(filled: ArtworkStore) -> None:
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
    # Nothing points along the old direction any more (every score ties at 0: no order to check).
    assert all(abs(hit.score) < PRECISION for hit in await filled.search("", basis(0), limit=len(CATALOGUE)))


async def test_upserting_the_same_content_again_changes_nothing(filled: ArtworkStore) -> None:
    assert await filled.upsert("", CATALOGUE) == len(CATALOGUE)
    assert await filled.count("") == len(CATALOGUE)
    found, _ = await filled.get("", [entry.artwork.id for entry in CATALOGUE])
    assert [entry.artwork for entry in found] == [entry.artwork for entry in CATALOGUE]


async def test_duplicate_ids_in_one_batch_keep_the_last(store: ArtworkStore) -> None:
    batch = [item("a", basis(0), title="first"), item("b", basis(1)), item("a", basis(2), title="last")]
    assert await store.upsert("", batch) == 2
    found, _ = await store.get("", ["a"])
    assert found[0].artwork.title == "last"
    assert await store.count("") == 2


async def test_upsert_nothing_creates_nothing(store: ArtworkStore) -> None:
    assert await store.upsert("", []) == 0
    assert await store.count("") == 0


async def test_a_large_upsert_is_written_in_bounded_batches(store: ArtworkStore) -> None:
    rng = np.random.default_rng(7)
    many = [item(f"n{i}", rng.standard_normal(DIM).astype(np.float32)) for i in range(700)]
    assert await store.upsert("", many) == 700
    assert await store.count("") == 700
    found, _ = await store.get("", ["n0", "n699"], with_vectors=True)
    np.testing.assert_allclose(
        found[1].vector, many[699].vector / np.linalg.norm(many[699].vector), atol=PRECISION
    )


async def test_all_fields_round_trip(catalogue_store: ArtworkStore) -> None:
    found, _ = await catalogue_store.get("", ["hokusai-wave"])
    assert found[0].artwork == CATALOGUE[0].artwork
    assert found[0].artwork.extra == {"museum": "Met"}


# --- search -----------------------------------------------------------------------------------------


async def test_search_ranks_by_cosine_similarity(store: ArtworkStore) -> None:
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
    assert [hit.score for hit in hits] == pytest.approx(expected, abs=PRECISION)

    # Cosine ignores the query's length.
    scaled = await store.search("", basis(0) * 7.5, limit=10)
    assert [hit.score for hit in scaled] == pytest.approx(expected, abs=PRECISION)


async def test_search_limit_and_offset_page_through_the_ranking(catalogue_store: ArtworkStore) -> None:
    query = unit(7, 6, 5, 4, 3, 2, 1)  # a distinct score for every artwork
    everything = ids(await catalogue_store.search("", query, limit=100))
    assert len(everything) == len(CATALOGUE)
    assert everything[0] == "hokusai-wave"
    pages = [ids(await catalogue_store.search("", query, limit=3, offset=offset)) for offset in (0, 3, 6)]
    assert [len(page) for page in pages] == [3, 3, 1]
    assert [artwork_id for page in pages for artwork_id in page] == everything
    assert await catalogue_store.search("", query, limit=3, offset=50) == []


async def test_search_accepts_a_plain_list(catalogue_store: ArtworkStore) -> None:
    assert ids(await catalogue_store.search("", basis(4).tolist(), limit=1)) == ["renoir-boating"]


# --- filters ----------------------------------------------------------------------------------------


QUERY_ALL = unit(1, 1, 1, 1, 1, 1, 1, 1)

FILTER_CASES = [
    (ArtworkFilter(artists=("Vincent van Gogh",)), {"vangogh-bridge", "vangogh-irises"}),
    (ArtworkFilter(artists=("  VINCENT VAN GOGH ",)), {"vangogh-bridge", "vangogh-irises"}),
    # Matched through artsearch.artists.artist_key: "Last, First" is the same artist.
    (ArtworkFilter(artists=("Gogh, Vincent van",)), {"vangogh-bridge", "vangogh-irises"}),
    (
        ArtworkFilter(artists=("vincent van gogh", "Wassily Kandinsky", "Nobody")),
        {"vangogh-bridge", "vangogh-irises", "kandinsky-vii"},
    ),
    (ArtworkFilter(styles=("Ukiyo-e",)), {"hokusai-wave", "hiroshige-bridge"}),
    (ArtworkFilter(styles=("Ukiyo-e", "Impressionism")),
     {"hokusai-wave", "hiroshige-bridge", "renoir-boating"}),
    (ArtworkFilter(genres=("abstract",)), {"kandinsky-vii", "unknown-year"}),
    (ArtworkFilter(year_min=1857, year_max=1887), {"hiroshige-bridge", "vangogh-bridge", "renoir-boating"}),
    (ArtworkFilter(year_min=1889), {"vangogh-irises", "kandinsky-vii"}),
    (ArtworkFilter(year_max=1831), {"hokusai-wave", "unknown-year"}),
    (
        ArtworkFilter(exclude_ids=("hokusai-wave", "kandinsky-vii", "not-stored")),
        {"hiroshige-bridge", "vangogh-bridge", "vangogh-irises", "renoir-boating", "unknown-year"},
    ),
    # Fields are ANDed.
    (ArtworkFilter(genres=("landscape",), year_min=1850, exclude_ids=("vangogh-bridge",)),
     {"hiroshige-bridge"}),
    (ArtworkFilter(artists=("Vincent van Gogh",), styles=("Ukiyo-e",)), set()),
]  # fmt: skip


@pytest.mark.parametrize(("artwork_filter", "expected"), FILTER_CASES)
async def test_filters_on_search_count_and_scroll(
    catalogue_store: ArtworkStore, artwork_filter: ArtworkFilter, expected: set[str]
) -> None:
    hits = await catalogue_store.search("", QUERY_ALL, limit=100, filter=artwork_filter)
    assert set(ids(hits)) == expected
    assert await catalogue_store.count("", artwork_filter) == len(expected)
    page = await catalogue_store.scroll("", 100, filter=artwork_filter)
    assert {entry.artwork.id for entry in page.items} == expected


async def test_filtered_search_keeps_similarity_order(catalogue_store: ArtworkStore) -> None:
    query = unit(0, 0, 1, 5)  # closer to the irises than to the bridge
    van_gogh = ArtworkFilter(artists=("vincent van gogh",))
    hits = await catalogue_store.search("", query, limit=10, filter=van_gogh)
    assert ids(hits) == ["vangogh-irises", "vangogh-bridge"]


async def test_excluding_style_label_kinds_keeps_undeclared_artworks(store: ArtworkStore) -> None:
    """The style vote's filter: artworks whose catalogue declared its labels as categories are left out,
    declared art and records stored before any declaration stay, in similarity order."""
    declared = [
        item("wave", unit(1), style="Ukiyo-e", extra={"style_labels": "art"}),
        item("icon", unit(1, 0.1), style="computer/icons", extra={"style_labels": "category"}),
        item("old-ingest", unit(1, 0.3), style="Impressionism", extra={"museum": "Met"}),
        item("stamp", unit(1, 0.5), style="animals", extra={"style_labels": "category"}),
    ]
    await store.upsert("", declared)
    art = ArtworkFilter(exclude_style_labels=("category",))
    assert ids(await store.search("", unit(1), limit=10, filter=art)) == ["wave", "old-ingest"]
    assert await store.count("", art) == 2
    both = ArtworkFilter(exclude_style_labels=("category",), styles=("Ukiyo-e", "animals"))
    assert ids(await store.search("", unit(1), limit=10, filter=both)) == ["wave"]


async def test_count(catalogue_store: ArtworkStore) -> None:
    assert await catalogue_store.count("") == len(CATALOGUE)
    assert await catalogue_store.count("", ArtworkFilter(styles=("Post-Impressionism",))) == 2


# --- get / delete -----------------------------------------------------------------------------------


async def test_get_returns_found_in_request_order_and_lists_missing(catalogue_store: ArtworkStore) -> None:
    requested = ["renoir-boating", "ghost", "hokusai-wave", "renoir-boating", "x"]
    found, missing = await catalogue_store.get("", requested)
    assert [f.artwork.id for f in found] == ["renoir-boating", "hokusai-wave"]
    assert missing == ["ghost", "x"]
    assert all(f.vector is None for f in found)


async def test_get_with_vectors_returns_the_unit_vector(store: ArtworkStore) -> None:
    await store.upsert("", [item("scaled", basis(2) * 4.0 + basis(3) * 3.0)])
    found, _ = await store.get("", ["scaled"], with_vectors=True)
    assert found[0].vector is not None
    np.testing.assert_allclose(found[0].vector, unit(0, 0, 4, 3), atol=PRECISION)


async def test_part_projections_divided_by_the_stored_part_length_are_the_part_cosines(
    store: ArtworkStore,
) -> None:
    # Descriptors laid out as artsearch.descriptor_layout does: each part at length sqrt(w); one stored vector
    # breaks the layout (its parts at other lengths), where the projection is still the dot product.
    rng = np.random.default_rng(7)
    layout = DescriptorLayout.build([("a", 3), ("b", 5)], {"a": 0.6, "b": 0.4})
    vectors = assemble({"a": rng.normal(size=(5, 3)), "b": rng.normal(size=(5, 5))}, layout)
    vectors[4] = rng.normal(size=DIM)
    await store.upsert("", [item(f"v{i}", vector) for i, vector in enumerate(vectors)])
    query = rng.normal(size=DIM).astype(np.float32)
    parts = [(0, 3), (3, 5), (1, 4)]

    hits = await store.search("", query, limit=5, parts=parts)
    plain = await store.search("", query, limit=5)

    assert [(hit.artwork, hit.score) for hit in hits] == [(hit.artwork, hit.score) for hit in plain]
    assert all(hit.part_projections == () for hit in plain)
    for hit in hits:
        stored = vectors[int(hit.artwork.id[1:])] / np.linalg.norm(vectors[int(hit.artwork.id[1:])])
        exact = [stored[o : o + n] @ query[o : o + n] / np.linalg.norm(query[o : o + n]) for o, n in parts]
        assert hit.part_projections == pytest.approx(exact, abs=PRECISION), hit.artwork.id
    v0 = next(hit for hit in hits if hit.artwork.id == "v0")
    cosines = aspect_similarities(query, vectors[0], layout)
    assert v0.part_projections[0] / np.sqrt(0.6) == pytest.approx(cosines["a"], abs=PRECISION)
    assert v0.part_projections[1] / np.sqrt(0.4) == pytest.approx(cosines["b"], abs=PRECISION)


async def test_part_projections_follow_the_part_query_and_are_zero_where_it_is(
    catalogue_store: ArtworkStore,
) -> None:
    query = basis(5) + basis(0) * 0.5
    # The part query has nothing in [0, 4): 0 there, whatever the search query has.
    part_query = basis(5) * 2.0
    hits = await catalogue_store.search("", query, limit=2, parts=[(0, 4), (4, 4)], part_query=part_query)
    assert ids(hits) == ["kandinsky-vii", "hokusai-wave"]
    assert hits[0].part_projections == pytest.approx((0.0, 1.0), abs=PRECISION)
    assert hits[1].part_projections == pytest.approx((0.0, 0.0), abs=PRECISION)
    only_zero_parts = await catalogue_store.search("", query, limit=2, parts=[(0, 4)], part_query=part_query)
    assert [hit.part_projections for hit in only_zero_parts] == [(0.0,), (0.0,)]


@pytest.mark.parametrize(
    ("parts", "part_query", "message"),
    [
        ([(6, 4)], None, "not inside a vector of 8 values"),
        ([(0, 2)], np.ones(4, dtype=np.float32), "must be 8 finite values"),
        ([(0, 2)], np.full(DIM, np.nan, dtype=np.float32), "must be 8 finite values"),
    ],
)
async def test_parts_that_do_not_fit_are_refused(
    catalogue_store: ArtworkStore, parts, part_query, message
) -> None:
    with pytest.raises(InvalidStoreRequest, match=message):
        await catalogue_store.search("", basis(0), limit=2, parts=parts, part_query=part_query)


async def test_delete_removes_and_counts_only_existing(filled: ArtworkStore) -> None:
    assert await filled.delete("", ["hokusai-wave", "ghost", "hokusai-wave", "kandinsky-vii"]) == 2
    assert await filled.count("") == len(CATALOGUE) - 2
    found, missing = await filled.get("", ["hokusai-wave", "kandinsky-vii", "renoir-boating"])
    assert missing == ["hokusai-wave", "kandinsky-vii"]
    assert [f.artwork.id for f in found] == ["renoir-boating"]
    assert "hokusai-wave" not in ids(await filled.search("", basis(0), limit=100))
    assert await filled.delete("", ["hokusai-wave"]) == 0


# --- metadata edits ---------------------------------------------------------------------------------


async def test_an_edit_sets_only_the_given_fields_and_keeps_the_vector(filled: ArtworkStore) -> None:
    before = await filled.search("", unit(5, 1), limit=3)
    changes = MetadataChanges(title="Kanagawa", year=0, style="", set_extra={"room": "W204"})
    updated = await filled.update_metadata("", "hokusai-wave", changes)

    expected = dataclasses.replace(
        CATALOGUE[0].artwork, title="Kanagawa", year=0, style="", extra={"museum": "Met", "room": "W204"}
    )
    assert updated.previous == CATALOGUE[0].artwork
    assert updated.current == expected
    found, _ = await filled.get("", ["hokusai-wave"], with_vectors=True)
    assert found[0].artwork == expected
    np.testing.assert_allclose(found[0].vector, basis(0), atol=PRECISION)
    after = await filled.search("", unit(5, 1), limit=3)
    assert [(hit.artwork.id, round(hit.score, 3)) for hit in after] == [
        (hit.artwork.id, round(hit.score, 3)) for hit in before
    ]
    assert await filled.count("") == len(CATALOGUE)
    # Filters see the new values: the year range and the style changed with the record.
    assert await filled.count("", ArtworkFilter(styles=("Ukiyo-e",))) == 1
    assert await filled.count("", ArtworkFilter(year_max=1831)) == 2


async def test_an_edit_sets_and_removes_extra_keys_one_by_one(filled: ArtworkStore) -> None:
    await filled.update_metadata("", "hokusai-wave", MetadataChanges(set_extra={"a.b[0]": "1", "room": "2"}))
    removed = await filled.update_metadata(
        "", "hokusai-wave", MetadataChanges(remove_extra=("museum", "never-set", "a.b[0]"))
    )
    assert removed.current.extra == {"room": "2"}
    again = await filled.update_metadata("", "hokusai-wave", MetadataChanges(set_extra={"room": "3"}))
    assert again.previous.extra == {"room": "2"}
    found, _ = await filled.get("", ["hokusai-wave"])
    assert found[0].artwork == dataclasses.replace(CATALOGUE[0].artwork, extra={"room": "3"})


async def test_an_artist_change_moves_the_artwork_between_artist_filters(filled: ArtworkStore) -> None:
    await filled.update_metadata("", "vangogh-irises", MetadataChanges(artist="Claude Monet"))
    monet = await filled.search("", QUERY_ALL, limit=10, filter=ArtworkFilter(artists=("monet, claude",)))
    van_gogh = await filled.search(
        "", QUERY_ALL, limit=10, filter=ArtworkFilter(artists=("Vincent van Gogh",))
    )
    assert ids(monet) == ["vangogh-irises"]
    assert ids(van_gogh) == ["vangogh-bridge"]
    assert await filled.count("", ArtworkFilter(artists=("CLAUDE MONET",))) == 1


async def test_editing_a_missing_artwork_is_not_found_and_creates_nothing(filled: ArtworkStore) -> None:
    with pytest.raises(NotFound, match="ghost"):
        await filled.update_metadata("", "ghost", MetadataChanges(title="Boo"))
    await filled.delete("", ["kandinsky-vii"])
    with pytest.raises(NotFound, match="kandinsky-vii"):
        await filled.update_metadata("", "kandinsky-vii", MetadataChanges(set_extra={"back": "no"}))
    with pytest.raises(NotFound):
        await filled.update_metadata(
            f"absent_{uuid.uuid4().hex[:8]}", "hokusai-wave", MetadataChanges(year=1)
        )
    assert await filled.count("") == len(CATALOGUE) - 1
    assert (await filled.get("", ["ghost", "kandinsky-vii"])).missing == ["ghost", "kandinsky-vii"]


async def test_an_edit_racing_a_delete_never_brings_the_artwork_back(filled: ArtworkStore) -> None:
    for position, entry in enumerate(CATALOGUE):
        artwork_id = entry.artwork.id
        calls = [filled.update_metadata("", artwork_id, MetadataChanges(title=f"t{i}")) for i in range(4)]
        calls.insert(
            position % 5, filled.delete("", [artwork_id])
        )  # the delete before, among, after the edits
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes.pop(position % 5) == 1
        assert all(isinstance(o, NotFound) or o.current.title.startswith("t") for o in outcomes), outcomes
    assert await filled.count("") == 0
    assert len((await filled.get("", [entry.artwork.id for entry in CATALOGUE])).missing) == len(CATALOGUE)


async def test_concurrent_edits_of_different_fields_and_extra_keys_all_stay(filled: ArtworkStore) -> None:
    edits = [
        MetadataChanges(title="New title"),
        MetadataChanges(style="Shin-hanga"),
        MetadataChanges(genre="seascape"),
        MetadataChanges(year=1830),
        MetadataChanges(artist="Hokusai"),
        *(MetadataChanges(set_extra={f"key{i}": str(i)}) for i in range(6)),
        MetadataChanges(remove_extra=("museum",)),
    ]
    await asyncio.gather(*(filled.update_metadata("", "hokusai-wave", edit) for edit in edits))
    found, _ = await filled.get("", ["hokusai-wave"])
    assert found[0].artwork == dataclasses.replace(
        CATALOGUE[0].artwork,
        title="New title",
        style="Shin-hanga",
        genre="seascape",
        year=1830,
        artist="Hokusai",
        extra={f"key{i}": str(i) for i in range(6)},
    )


@pytest.mark.parametrize(
    ("artwork_id", "changes", "message"),
    [
        ("", MetadataChanges(title="x"), "id is empty"),
        ("hokusai-wave", MetadataChanges(), "changes nothing"),
        ("hokusai-wave", MetadataChanges(set_extra={"": "x"}), "extra key is empty"),
        ("hokusai-wave", MetadataChanges(remove_extra=("",)), "extra key is empty"),
        ("hokusai-wave", MetadataChanges(set_extra={"k": "1"}, remove_extra=("k",)), "both set and removed"),
        ("hokusai-wave", MetadataChanges(remove_extra=('say "hi"',)), "cannot be removed"),
    ],
)
async def test_bad_edits_are_refused_and_change_nothing(
    catalogue_store: ArtworkStore, artwork_id: str, changes: MetadataChanges, message: str
) -> None:
    with pytest.raises(InvalidStoreRequest, match=message):
        await catalogue_store.update_metadata("", artwork_id, changes)
    assert (await catalogue_store.get("", ["hokusai-wave"])).found[0].artwork == CATALOGUE[0].artwork


# --- scroll -----------------------------------------------------------------------------------------


async def test_scroll_pages_through_every_artwork_once(catalogue_store: ArtworkStore) -> None:
    seen: list[str] = []
    cursor, pages = "", 0
    while True:
        page = await catalogue_store.scroll("", 3, cursor)
        seen.extend(entry.artwork.id for entry in page.items)
        pages += 1
        assert all(entry.vector is None for entry in page.items)
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert sorted(seen) == sorted(entry.artwork.id for entry in CATALOGUE)
    assert len(seen) == len(CATALOGUE)
    assert pages == 3


async def test_scroll_with_vectors_exports_what_upsert_takes_back(catalogue_store: ArtworkStore) -> None:
    page = await catalogue_store.scroll("", 100, with_vectors=True)
    by_id = {entry.artwork.id: entry for entry in page.items}
    assert page.next_cursor == ""
    for original in CATALOGUE:
        exported = by_id[original.artwork.id]
        assert exported.artwork == original.artwork
        np.testing.assert_allclose(exported.vector, original.vector, atol=PRECISION)


async def test_scroll_rejects_a_cursor_it_did_not_hand_out(catalogue_store: ArtworkStore) -> None:
    with pytest.raises(InvalidStoreRequest, match="cursor"):
        await catalogue_store.scroll("", 3, "not-a-cursor")


# --- collections ------------------------------------------------------------------------------------


async def test_missing_collection_reads_as_empty(catalogue_store: ArtworkStore) -> None:
    name = f"absent_{uuid.uuid4().hex[:8]}"
    assert await catalogue_store.search(name, basis(0), limit=5) == []
    assert await catalogue_store.count(name) == 0
    assert await catalogue_store.get(name, ["a", "b"]) == ([], ["a", "b"])
    assert await catalogue_store.delete(name, ["a"]) == 0
    assert await catalogue_store.scroll(name, 10) == ([], "")


async def test_collections_are_independent_and_may_differ_in_dimension(filled: ArtworkStore) -> None:
    other = f"other_{uuid.uuid4().hex[:8]}"  # one catalogue per collection
    await filled.upsert(other, [item("tiny", np.array([0.0, 1.0, 0.0], dtype=np.float32))])
    assert await filled.count(other) == 1
    assert await filled.count("") == len(CATALOGUE)
    assert ids(await filled.search(other, [0.0, 1.0, 0.1], limit=5)) == ["tiny"]


@pytest.mark.parametrize("name", ["a b", "../up", "x" * 65, "dots.not.allowed"])
async def test_collection_names_are_checked(catalogue_store: ArtworkStore, name: str) -> None:
    with pytest.raises(InvalidStoreRequest, match="invalid collection name"):
        await catalogue_store.count(name)


# --- invalid input ----------------------------------------------------------------------------------


async def test_dimension_must_match_the_collection(filled: ArtworkStore) -> None:
    with pytest.raises(InvalidStoreRequest, match=r"dimension 4.*holds 8-d"):
        await filled.upsert("", [item("short", np.ones(4, dtype=np.float32))])
    with pytest.raises(InvalidStoreRequest, match=r"query vector has dimension 5.*holds 8-d"):
        await filled.search("", np.ones(5, dtype=np.float32), limit=3)
    assert await filled.count("") == len(CATALOGUE)


async def test_dimension_must_match_inside_a_batch(store: ArtworkStore) -> None:
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
    catalogue_store: ArtworkStore, vector: np.ndarray | None, message: str
) -> None:
    with pytest.raises(InvalidStoreRequest, match=message):
        await catalogue_store.upsert("", [item("fine", basis(1)), item("broken", vector)])
    if vector is not None:
        with pytest.raises(InvalidStoreRequest, match=message):
            await catalogue_store.search("", vector, limit=3)
    assert await catalogue_store.count("") == len(CATALOGUE)
    assert (await catalogue_store.get("", ["fine"])).missing == ["fine"]  # the batch is all or nothing


async def test_empty_artwork_id_is_rejected(store: ArtworkStore) -> None:
    with pytest.raises(InvalidStoreRequest, match=r"items\[0\] has an empty artwork id"):
        await store.upsert("", [item("", basis(0))])


# --- persistence and snapshots ----------------------------------------------------------------------


async def test_data_persists_across_close_and_reopen(engine: Engine, open_store: Opener) -> None:
    if not engine.persistent or engine.name == "server":
        pytest.skip(f"{engine.name} keeps nothing on this machine's disk")
    first = await open_store("paintings")
    await first.upsert("", CATALOGUE)
    await first.delete("", ["kandinsky-vii"])
    await first.close()

    reopened = await open_store("paintings")
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


async def test_snapshot_round_trip(engine: Engine, filled: ArtworkStore) -> None:
    if not engine.snapshots:
        with pytest.raises(UnsupportedOperation):
            await filled.create_snapshot("")
        return
    snapshot = await filled.create_snapshot("")
    assert snapshot.size_bytes > 0
    await filled.delete("", ["hokusai-wave", "renoir-boating"])
    await filled.upsert("", [item("added-later", basis(7))])

    assert await filled.restore_snapshot("", snapshot.name) == len(CATALOGUE)
    found, missing = await filled.get("", ["hokusai-wave", "added-later"])
    assert [f.artwork for f in found] == [CATALOGUE[0].artwork]
    assert missing == ["added-later"]
    assert ids(await filled.search("", basis(4), limit=1)) == ["renoir-boating"]
    # The collection stays writable after a restore.
    await filled.upsert("", [item("after-restore", basis(7))])
    assert await filled.count("") == len(CATALOGUE) + 1


async def test_snapshot_of_a_missing_collection_is_refused(engine: Engine, store: ArtworkStore) -> None:
    expected = InvalidStoreRequest if engine.snapshots else UnsupportedOperation
    with pytest.raises(expected):
        await store.create_snapshot("never_written")
