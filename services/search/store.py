"""The search service's storage interface: artworks with one descriptor each, searched by cosine.

Plain dataclasses only: protobuf conversion happens in `server.py`, so that every engine (qdrant-edge
embedded, a Qdrant server through qdrant-client, qdrant-client's local mode) implements the same small
`ArtworkStore` protocol; tests/services/test_search_store_contract.py runs one set of cases over all.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

import numpy as np

DEFAULT_COLLECTION = "artworks"
# Region descriptors per artwork at most (artsearch_tools.regions makes 34 by default); bounds a point's size.
MAX_REGIONS = 128
# Collection names double as folder names in embedded storage: no path separators, no dots.
COLLECTION_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


class StoreError(Exception):
    """Base of the errors a store raises on purpose."""


class InvalidStoreRequest(StoreError, ValueError):
    """The caller asked for something the data does not allow (e.g. a vector of the wrong dimension)."""


class StoreUnavailable(StoreError):
    """The storage backend cannot be reached or failed; the request may succeed later."""


class UnsupportedOperation(StoreError):
    """This engine cannot do what was asked (e.g. snapshots in qdrant-client's local mode)."""


class NotFound(StoreError, LookupError):
    """The request names a collection, an alias or an artwork that must exist and does not."""


@dataclass(frozen=True)
class ArtworkRecord:
    """An artwork's catalogue record, as stored beside its vector."""

    id: str
    title: str = ""
    artist: str = ""
    style: str = ""
    genre: str = ""
    year: int = 0  # 0 when unknown
    image_uri: str = ""
    catalogue: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


# The record fields an edit may set (all but the id).
EDITABLE_FIELDS = ("title", "artist", "style", "genre", "year", "image_uri", "catalogue")
# A removed `extra` key is named by a Qdrant JSON path, `extra."<key>"`, which has no escape for '"'.
UNREMOVABLE_KEY_CHARACTER = '"'


@dataclass(frozen=True)
class MetadataChanges:
    """An edit of one stored artwork's metadata: the fields to set (None leaves a field as stored) and the
    `extra` keys to set or remove (the other keys stay)."""

    title: str | None = None
    artist: str | None = None
    style: str | None = None
    genre: str | None = None
    year: int | None = None
    image_uri: str | None = None
    catalogue: str | None = None
    set_extra: Mapping[str, str] = field(default_factory=dict)
    remove_extra: tuple[str, ...] = ()

    def fields(self) -> dict[str, str | int]:
        """The record fields to set, by name."""
        values = {name: getattr(self, name) for name in EDITABLE_FIELDS}
        return {name: value for name, value in values.items() if value is not None}

    def touches_extra(self) -> bool:
        return bool(self.set_extra or self.remove_extra)

    def applied_to(self, artwork: ArtworkRecord) -> ArtworkRecord:
        """`artwork` with these changes made."""
        extra = {key: value for key, value in artwork.extra.items() if key not in self.remove_extra}
        extra.update(self.set_extra)
        return dataclasses.replace(artwork, **self.fields(), extra=extra)


class UpdatedArtwork(NamedTuple):
    """What an edit did: the record as stored before it and after it."""

    previous: ArtworkRecord
    current: ArtworkRecord


def checked_changes(artwork_id: str, changes: MetadataChanges) -> MetadataChanges:
    """The edit, or InvalidStoreRequest saying what is wrong with it."""
    if not artwork_id:
        raise InvalidStoreRequest("the artwork id is empty")
    if not changes.fields() and not changes.touches_extra():
        raise InvalidStoreRequest("the edit changes nothing: give a field, or extra keys to set or remove")
    for key in (*changes.set_extra, *changes.remove_extra):
        if not key:
            raise InvalidStoreRequest("an extra key is empty")
    both = sorted(set(changes.set_extra) & set(changes.remove_extra))
    if both:
        raise InvalidStoreRequest(f"extra key {both[0]!r} is both set and removed")
    for key in changes.remove_extra:
        if UNREMOVABLE_KEY_CHARACTER in key:
            raise InvalidStoreRequest(f"extra key {key!r} cannot be removed: it contains '\"'")
    return dataclasses.replace(changes, remove_extra=tuple(unique_in_order(changes.remove_extra)))


@dataclass(frozen=True)
class IndexedArtwork:
    """An artwork and its descriptor. `vector` is None when read back without vectors.

    `regions`: descriptors of parts of the picture (artsearch_tools.regions: a grid at several scales),
    one row each, in the vector's space; a search that matches regions finds the artwork from a detail. Stored
    with the artwork's point and replaced or deleted with it; never read back (None)."""

    artwork: ArtworkRecord
    vector: np.ndarray | None = None
    regions: np.ndarray | None = None


@dataclass(frozen=True)
class ArtworkFilter:
    """Payload filter: fields are ANDed, the values inside one field are ORed (any-of).

    Artists match case-insensitively (through `artist_key`); styles and genres match exactly.
    The year range is inclusive; a bound left as None is open. Artworks of unknown year (0) only
    pass a range that contains 0.
    """

    artists: tuple[str, ...] = ()
    styles: tuple[str, ...] = ()
    genres: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    exclude_ids: tuple[str, ...] = ()
    # Leaves out artworks whose extra["style_labels"] (their catalogue's declared label kind) is one of
    # these; artworks without a declaration stay.
    exclude_style_labels: tuple[str, ...] = ()

    def is_empty(self) -> bool:
        return not (
            self.artists
            or self.styles
            or self.genres
            or self.year_min is not None
            or self.year_max is not None
            or self.exclude_ids
            or self.exclude_style_labels
        )


NO_FILTER = ArtworkFilter()


class ScoredArtwork(NamedTuple):
    artwork: ArtworkRecord
    # Cosine similarity to the query, in [-1, 1]; with region matching, the better of `whole_score` and
    # `region_score`.
    score: float
    # One per part a search asked for (services.search.part_scores); empty when it asked for none.
    part_projections: tuple[float, ...] = ()
    # Region matching only (None otherwise): the whole picture's cosine, and the best region's (None when
    # the artwork has no regions).
    whole_score: float | None = None
    region_score: float | None = None
    # Whether a region (its similarity less the search's region margin), not the whole picture, gave `score`.
    region_matched: bool = False


class GetResult(NamedTuple):
    found: list[IndexedArtwork]  # in request order
    missing: list[str]  # requested ids that are not stored, in request order


class ScrollPage(NamedTuple):
    """One page of a collection in storage order; pass `next_cursor` back for the next page."""

    items: list[IndexedArtwork]
    next_cursor: str  # "" after the last page


@dataclass(frozen=True)
class SnapshotInfo:
    """A point-in-time copy of one collection, kept by the engine under `name`."""

    name: str
    collection: str
    size_bytes: int
    created_at: str  # ISO 8601, UTC


@dataclass(frozen=True)
class AliasChange:
    """What `set_alias` did."""

    alias: str
    collection: str
    previous_collection: str = ""  # where the alias pointed before ("" when it is new)
    replaced_collection: str = ""  # the collection dropped to make room for the alias ("" when none)


class ArtworkStore(Protocol):
    """Collections of artworks, each artwork one vector; all vectors of a collection share a dimension.

    A collection comes into being on its first upsert, with that batch's dimension. Vectors are stored
    normalised and at least at half precision: vectors read back and scores are within 1e-3 of the exact
    values. An empty collection name means the store's default collection. Reading a collection that
    does not exist gives empty results, not an error.
    """

    async def upsert(self, collection: str, items: Sequence[IndexedArtwork]) -> int:
        """Inserts or replaces artworks by id; returns how many distinct ids were written.

        Raises InvalidStoreRequest for an empty, non-finite or zero vector, or a dimension that differs
        inside the batch or from the collection's.
        """
        ...

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
        """The `limit` artworks most similar to `query` after skipping `offset`, best first.

        With `parts` ((offset, length) inside the vector), each hit also carries one value per part: the
        hit's vector at unit length dotted with the unit direction of `part_query` (`query` when None) over
        that part, 0 where that part of it is all zeros; within 1e-3 of the exact value (part_scores).

        With `match_regions`, an artwork's score is the better of its whole picture's cosine and its best
        region's less `region_margin` (`whole_score`, `region_score` and `region_matched` say which);
        artworks, never regions, are returned, and the
        filter applies to them as always. A collection without regions answers as without the flag, with
        `whole_score` set."""
        ...

    async def get(self, collection: str, ids: Sequence[str], with_vectors: bool = False) -> GetResult: ...

    async def delete(self, collection: str, ids: Sequence[str]) -> int:
        """Deletes artworks by id; returns how many of them existed."""
        ...

    async def update_metadata(
        self, collection: str, artwork_id: str, changes: MetadataChanges
    ) -> UpdatedArtwork:
        """Sets the given fields (and the payload fields derived from them) and `extra` keys of one stored
        artwork; never touches its vector, never creates an artwork. NotFound when the id is not stored
        (deleted a moment before included: an edit never brings a deleted artwork back); edits of
        different fields or different extra keys never undo each other. InvalidStoreRequest for an edit
        `checked_changes` refuses."""
        ...

    async def count(self, collection: str, filter: ArtworkFilter = NO_FILTER) -> int: ...

    async def scroll(
        self,
        collection: str,
        limit: int,
        cursor: str = "",
        filter: ArtworkFilter = NO_FILTER,
        with_vectors: bool = False,
    ) -> ScrollPage:
        """Every artwork (matching `filter`) once, `limit` at a time, for export and re-indexing.
        The cursor is opaque; an empty one starts at the beginning. InvalidStoreRequest for a cursor
        this store did not hand out."""
        ...

    async def create_snapshot(self, collection: str) -> SnapshotInfo:
        """A consistent copy of the collection that `restore_snapshot` can bring back (here or in another
        store of the same engine). InvalidStoreRequest when the collection does not exist;
        UnsupportedOperation when the engine has no snapshots."""
        ...

    async def restore_snapshot(self, collection: str, name: str) -> int:
        """Replaces the collection (created if missing) with the snapshot `name`; returns its artwork
        count. InvalidStoreRequest when there is no such snapshot."""
        ...

    async def set_alias(self, alias: str, collection: str, replace_collection: bool = False) -> AliasChange:
        """Points `alias` at `collection` (creating or moving it) in one atomic step; every call naming the
        alias uses that collection from then on. NotFound when the collection does not exist (an alias is
        not a target); InvalidStoreRequest for bad names, or when `alias` is a collection's name and
        `replace_collection` is False (with it, that collection is dropped and the alias takes its place)."""
        ...

    async def delete_alias(self, alias: str) -> str:
        """Removes the alias; returns the collection it pointed at. NotFound when there is no such alias."""
        ...

    async def list_aliases(self) -> dict[str, str]:
        """alias -> collection, sorted by alias."""
        ...

    async def close(self) -> None: ...


def as_unit_vector(values: np.ndarray | Sequence[float], what: str) -> np.ndarray:
    """`values` scaled to length 1 as float32 (cosine ignores length; scaling here in float64 keeps huge
    or tiny values from overflowing later), or InvalidStoreRequest saying what is wrong with them.

    Rejects what cosine similarity cannot use: empty, non-finite and all-zero vectors.
    """
    vector = np.asarray(values, dtype=np.float64)
    if vector.ndim != 1:
        raise InvalidStoreRequest(f"{what} must be a flat vector, got shape {vector.shape}")
    if vector.size == 0:
        raise InvalidStoreRequest(f"{what} is empty")
    if not np.isfinite(vector).all() or not np.isfinite(vector.astype(np.float32)).all():
        raise InvalidStoreRequest(f"{what} contains NaN or infinite values")
    norm = float(np.linalg.norm(vector))
    if norm == 0.0:
        raise InvalidStoreRequest(f"{what} is a zero vector (cosine similarity is undefined)")
    return (vector / norm).astype(np.float32)


def validated_batch(items: Sequence[IndexedArtwork]) -> tuple[list[IndexedArtwork], int]:
    """The batch checked for upsert: one item per id (the last given wins), float32 vectors, and their
    common dimension. InvalidStoreRequest names the first offending item by its position in `items`."""
    checked: dict[str, IndexedArtwork] = {}
    dimension = 0
    for index, item in enumerate(items):
        if not item.artwork.id:
            raise InvalidStoreRequest(f"items[{index}] has an empty artwork id")
        label = f"items[{index}] (id {item.artwork.id!r})"
        if item.vector is None:
            raise InvalidStoreRequest(f"{label} has no vector")
        vector = as_unit_vector(item.vector, f"{label} vector")
        if index == 0:
            dimension = vector.shape[0]
        elif vector.shape[0] != dimension:
            raise InvalidStoreRequest(
                f"{label} has dimension {vector.shape[0]}, but items[0] has dimension {dimension}: "
                "all vectors of a batch must match"
            )
        regions = checked_regions(item.regions, dimension, label)
        # Re-inserting a key keeps its first position: first-seen order, last value.
        checked[item.artwork.id] = IndexedArtwork(item.artwork, vector, regions)
    return list(checked.values()), dimension


def checked_regions(regions: np.ndarray | None, dimension: int, label: str) -> np.ndarray | None:
    """An artwork's region descriptors as unit float32 rows of the artwork's dimension (None for none),
    or InvalidStoreRequest saying what is wrong with them."""
    if regions is None or len(regions) == 0:
        return None
    rows = np.asarray(regions, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[1] != dimension:
        raise InvalidStoreRequest(
            f"{label} regions have shape {rows.shape}: expected rows of {dimension} values, like its vector"
        )
    if len(rows) > MAX_REGIONS:
        raise InvalidStoreRequest(f"{label} has {len(rows)} regions, more than {MAX_REGIONS}")
    return np.stack([as_unit_vector(row, f"{label} region {i}") for i, row in enumerate(rows)])


def unique_in_order(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def checked_collection_name(name: str) -> str:
    if not COLLECTION_NAME.fullmatch(name):
        raise InvalidStoreRequest(f"invalid collection name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ -")
    return name
