"""The influence graph interface that every backend (in-memory, Neo4j) implements, and its value types.

Semantics shared by all backends:
- Names are resolved with `artsearch.artists.ArtistIndex` rules, so a backend and the gateway agree on keys.
- Hops treat influence as undirected, as the original system did: 0 for the same artist, d for d edges
  apart, -1 for an unknown artist or one not reached within `max_hops`.
- An empty source name means "infer it": the source becomes the first candidate, in request order, that
  is in the graph (callers send candidates most similar first).
- Paths report each edge walked with its true direction (`influencer` influenced `influenced`).
- Listing pages through artists in key order; a prefix matches the start of any word of an artist's key
  or of one of its aliases, after normalisation ("Gogh" and "van g" both find "vincent van gogh"). The
  cursor is the key of the last artist of the previous page.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

from artsearch.artists import ArtistRecord, normalise_name

RELATION_INFLUENCED = "influenced"
RELATION_TEACHER = "teacher"
RELATIONS = frozenset({RELATION_INFLUENCED, RELATION_TEACHER})
UNREACHABLE = -1
MAX_PAGE_SIZE = 1000


class GraphUnavailable(RuntimeError):
    """The graph's storage cannot be read or written now (a database not answering in time, a failed
    write); nothing was changed, and the same call may succeed later (UNAVAILABLE)."""


class GraphStorageFull(GraphUnavailable):
    """The graph's storage has no room for the write (disk full, quota, file size limit): nothing was
    changed (RESOURCE_EXHAUSTED)."""


class InvalidGraphInput(ValueError):
    """A request the graph cannot honour as asked (the service answers INVALID_ARGUMENT)."""


@dataclass(frozen=True, slots=True)
class Influence:
    """A directed edge: `influencer` influenced `influenced` (keys); `relation` says how."""

    influencer: str
    influenced: str
    relation: str = RELATION_INFLUENCED
    source: str = ""


@dataclass(frozen=True, slots=True)
class NewInfluence:
    """An edge to add, named by artist names (resolved by the backend)."""

    influencer: str
    influenced: str
    source: str = ""
    relation: str = RELATION_INFLUENCED


class CandidateDistance(NamedTuple):
    """One candidate of a distances query: the name as sent, its key ("" when unknown), its hops.
    A tuple rather than a dataclass: a request builds ~100 of them on the hot path."""

    artist: str
    key: str
    known: bool
    hops: int
    # Artist names from the source to this candidate (both included) when paths were asked for and it was
    # reached; empty otherwise.
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DistanceResult:
    source: ArtistRecord | None
    source_inferred: bool
    distances: list[CandidateDistance] = field(default_factory=list)

    @property
    def source_known(self) -> bool:
        return self.source is not None


@dataclass(frozen=True, slots=True)
class PathResult:
    """Artists from the start to the end (both included) and the edges between them, one fewer."""

    artists: list[ArtistRecord]
    edges: list[Influence]

    @property
    def hops(self) -> int:
        return len(self.edges)


@dataclass(frozen=True, slots=True)
class ArtistLookup:
    """Artists found (one per key, in request order) and the names that matched nobody, as sent."""

    found: list[ArtistRecord]
    missing: list[str]


@dataclass(frozen=True, slots=True)
class ArtistPage:
    """One page of artists in key order; `next_cursor` is "" after the last page."""

    artists: list[ArtistRecord]
    next_cursor: str


@dataclass(frozen=True, slots=True)
class NeighbourEdge:
    """One direct neighbour of an artist and the edge joining them."""

    artist: ArtistRecord
    relation: str
    source: str


@dataclass(frozen=True, slots=True)
class Neighbourhood:
    """An artist, who influenced it (edges neighbour -> artist) and whom it influenced (artist ->
    neighbour), each list in key order. An artist can be in both lists (mutual influence)."""

    artist: ArtistRecord
    influencers: list[NeighbourEdge]
    influenced: list[NeighbourEdge]


class AddResult(NamedTuple):
    artists_added: int
    influences_added: int


@dataclass(frozen=True, slots=True)
class GraphStats:
    backend: str
    artists: int
    influences: int
    curated_artists: int
    curated_influences: int


@runtime_checkable
class InfluenceGraph(Protocol):
    """A network of artistic influences (see the module doc for the shared semantics)."""

    async def distances(
        self, source: str, candidates: Sequence[str], max_hops: int, with_paths: bool = False
    ) -> DistanceResult:
        """Hops from `source` (or the inferred source when it is "") to each candidate, in request order;
        with `with_paths`, also a shortest chain of artist names to each reached candidate."""
        ...

    async def path(self, from_artist: str, to_artist: str, max_hops: int) -> PathResult | None:
        """A shortest chain of influence of at most `max_hops` edges, or None (unknown or too far)."""
        ...

    async def get_artists(self, names: Sequence[str]) -> ArtistLookup: ...

    async def list_artists(self, prefix: str, limit: int, cursor: str) -> ArtistPage:
        """Up to `limit` artists matching `prefix` ("" matches all) with keys after `cursor`, in key order."""
        ...

    async def neighbours(self, name: str) -> Neighbourhood | None:
        """The artist's direct influencers and influenced, or None when the name resolves to nobody."""
        ...

    async def add(self, artists: Sequence[ArtistRecord], influences: Sequence[NewInfluence]) -> AddResult:
        """Adds new artists (keyed by their names; existing ones are left as they are) and new edges
        (endpoints not yet known become artists). Returns how many of each were actually new."""
        ...

    async def stats(self) -> GraphStats: ...

    async def close(self) -> None: ...


def check_max_hops(max_hops: int) -> None:
    if max_hops < 0:
        raise InvalidGraphInput(f"max_hops must be >= 0, got {max_hops}")


def check_page_size(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise InvalidGraphInput(f"limit must be between 1 and {MAX_PAGE_SIZE}, got {limit}")


def prefix_matches(artist: ArtistRecord, normalised_prefix: str) -> bool:
    """True when a word of the artist's key or of one of its aliases starts with the (normalised) prefix."""
    needle = " " + normalised_prefix
    return any(
        (" " + form).find(needle) >= 0
        for form in (artist.key, *(normalise_name(alias) for alias in artist.aliases))
    )


def check_new_influence(influence: NewInfluence) -> None:
    """The checks every backend applies to an edge before resolving its endpoints."""
    if not influence.influencer.strip() or not influence.influenced.strip():
        raise InvalidGraphInput("an influence needs both an influencer and an influenced artist name")
    if influence.relation not in RELATIONS:
        raise InvalidGraphInput(
            f"influence relation {influence.relation!r} is not one of {sorted(RELATIONS)}"
        )
