"""The embedded influence graph: adjacency sets in memory, loaded from the curated CSV files, with ingest's
additions kept in an optional append-only log.

Queries run on the event loop on purpose: a bounded BFS over this graph takes microseconds (it visits at
most every artist once), far less than a hop to a worker thread would cost.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
from collections.abc import Sequence
from pathlib import Path

from artsearch.artists import ArtistIndex, ArtistRecord, normalise_name
from services.influence.additions_log import AdditionsLog
from services.influence.curated import CuratedData, load_curated
from services.influence.graph import (
    UNREACHABLE,
    AddResult,
    ArtistLookup,
    ArtistPage,
    CandidateDistance,
    DistanceResult,
    GraphStats,
    Influence,
    InvalidGraphInput,
    NeighbourEdge,
    Neighbourhood,
    NewInfluence,
    PathResult,
    check_max_hops,
    check_new_influence,
    check_page_size,
    prefix_matches,
)

log = logging.getLogger(__name__)


class InMemoryInfluenceGraph:
    """Implements `InfluenceGraph` over in-memory adjacency keyed by canonical artist key."""

    backend = "memory"

    def __init__(self, curated: CuratedData, additions_log: AdditionsLog | None = None) -> None:
        self._index = ArtistIndex.from_records(curated.artists)
        # Undirected neighbours, in insertion order so that paths are deterministic.
        self._neighbours: dict[str, dict[str, None]] = {artist.key: {} for artist in curated.artists}
        self._edges: dict[tuple[str, str], Influence] = {}
        for edge in curated.influences:
            self._link(edge)
        self._curated_counts = (len(self._index), len(self._edges))
        # Every key in order, for listing; rebuilt on the next listing after an artist is added.
        self._sorted_keys: list[str] | None = None
        self._additions_log = additions_log
        self._add_lock = asyncio.Lock()
        if additions_log is not None:
            self._replay(additions_log)

    @classmethod
    def load(cls, data_dir: Path, state_dir: Path | None = None) -> InMemoryInfluenceGraph:
        return cls(load_curated(data_dir), AdditionsLog(state_dir) if state_dir is not None else None)

    @classmethod
    def with_additions(
        cls, curated: CuratedData, artists: Sequence[ArtistRecord], influences: Sequence[Influence]
    ) -> InMemoryInfluenceGraph:
        """The curated graph plus artists and edges added at run time, e.g. a snapshot of a graph database
        (edges whose endpoints are not artists of the graph are left out)."""
        graph = cls(curated)
        graph.apply_additions(artists, influences)
        return graph

    # ---- queries -------------------------------------------------------------------------------------

    async def distances(
        self, source: str, candidates: Sequence[str], max_hops: int, with_paths: bool = False
    ) -> DistanceResult:
        check_max_hops(max_hops)
        candidate_keys = [self._index.resolve(name) for name in candidates]
        source_key, inferred = self._source_key(source, candidate_keys)
        if source_key is None:
            return DistanceResult(
                None, False, [_unreached(n, k) for n, k in zip(candidates, candidate_keys, strict=True)]
            )
        targets = {key for key in candidate_keys if key is not None}
        parents: dict[str, str | None] | None = {source_key: None} if with_paths else None
        hops = self._hops_from(source_key, targets, max_hops, parents)
        paths = self._name_paths(parents, hops) if parents is not None else {}
        results = [
            CandidateDistance(
                name,
                key or "",
                key is not None,
                hops.get(key, UNREACHABLE) if key else UNREACHABLE,
                paths.get(key, ()) if key else (),
            )
            for name, key in zip(candidates, candidate_keys, strict=True)
        ]
        return DistanceResult(self._index.get(source_key), inferred, results)

    def _name_paths(
        self, parents: dict[str, str | None], reached: dict[str, int]
    ) -> dict[str, tuple[str, ...]]:
        """Artist names from the source to each reached key, by walking the BFS parents back."""
        paths = {}
        for key in reached:
            chain: list[str] = []
            node: str | None = key
            while node is not None:
                chain.append(self._artist(node).name or node)
                node = parents[node]
            paths[key] = tuple(reversed(chain))
        return paths

    def _source_key(self, source: str, candidate_keys: list[str | None]) -> tuple[str | None, bool]:
        """The explicit source's key, or (when `source` is blank) the first known candidate's."""
        if source.strip():
            return self._index.resolve(source), False
        inferred = next((key for key in candidate_keys if key is not None), None)
        return inferred, inferred is not None

    def _hops_from(
        self, source: str, targets: set[str], max_hops: int, parents: dict[str, str | None] | None = None
    ) -> dict[str, int]:
        """Bounded BFS that stops once every target is found or `max_hops` levels are explored; records
        each node's BFS parent in `parents` when given (for paths)."""
        found = {source: 0} if source in targets else {}
        remaining = len(targets) - len(found)
        frontier, seen, depth = [source], {source}, 0
        neighbours = self._neighbours
        while frontier and remaining > 0 and depth < max_hops:
            depth += 1
            next_frontier = []
            for node in frontier:
                for neighbour in neighbours[node]:
                    if neighbour in seen:
                        continue
                    seen.add(neighbour)
                    next_frontier.append(neighbour)
                    if parents is not None:
                        parents[neighbour] = node
                    if neighbour in targets:
                        found[neighbour] = depth
                        remaining -= 1
            frontier = next_frontier
        return found

    async def path(self, from_artist: str, to_artist: str, max_hops: int) -> PathResult | None:
        check_max_hops(max_hops)
        start, goal = self._index.resolve(from_artist), self._index.resolve(to_artist)
        if start is None or goal is None:
            return None
        keys = self._shortest_path(start, goal, max_hops)
        if keys is None:
            return None
        artists = [self._artist(key) for key in keys]
        return PathResult(artists, [self._edge_between(a, b) for a, b in itertools.pairwise(keys)])

    def _shortest_path(self, start: str, goal: str, max_hops: int) -> list[str] | None:
        parents: dict[str, str | None] = {start: None}
        frontier, depth = [start], 0
        while goal not in parents and frontier and depth < max_hops:
            depth += 1
            next_frontier = []
            for node in frontier:
                for neighbour in self._neighbours[node]:
                    if neighbour not in parents:
                        parents[neighbour] = node
                        next_frontier.append(neighbour)
            frontier = next_frontier
        if goal not in parents:
            return None
        keys: list[str] = []
        node: str | None = goal
        while node is not None:
            keys.append(node)
            node = parents[node]
        return keys[::-1]

    def _edge_between(self, walked_from: str, walked_to: str) -> Influence:
        """The stored edge joining two neighbours, preferring the one pointing the way the path walks."""
        edge = self._edges.get((walked_from, walked_to)) or self._edges.get((walked_to, walked_from))
        if edge is None:
            raise RuntimeError(f"adjacency without an edge: {walked_from!r} - {walked_to!r}")
        return edge

    def _artist(self, key: str) -> ArtistRecord:
        artist = self._index.get(key)
        if artist is None:
            raise RuntimeError(f"graph node {key!r} has no artist record")
        return artist

    async def get_artists(self, names: Sequence[str]) -> ArtistLookup:
        found: dict[str, ArtistRecord] = {}
        missing = []
        for name in names:
            key = self._index.resolve(name)
            if key is None:
                missing.append(name)
            elif key not in found:
                found[key] = self._artist(key)
        return ArtistLookup(list(found.values()), missing)

    async def list_artists(self, prefix: str, limit: int, cursor: str) -> ArtistPage:
        check_page_size(limit)
        wanted = normalise_name(prefix)
        if prefix.strip() and not wanted:
            return ArtistPage([], "")  # only punctuation: no artist's words start with it
        keys = self._keys_in_order()
        page: list[ArtistRecord] = []
        for position in range(bisect.bisect_right(keys, cursor) if cursor else 0, len(keys)):
            artist = self._artist(keys[position])
            if wanted and not prefix_matches(artist, wanted):
                continue
            if len(page) == limit:  # one more match exists: there is a next page
                return ArtistPage(page, page[-1].key)
            page.append(artist)
        return ArtistPage(page, "")

    def _keys_in_order(self) -> list[str]:
        if self._sorted_keys is None:
            self._sorted_keys = sorted(self._neighbours)
        return self._sorted_keys

    async def neighbours(self, name: str) -> Neighbourhood | None:
        key = self._index.resolve(name)
        if key is None:
            return None
        influencers, influenced = [], []
        for neighbour in sorted(self._neighbours[key]):
            if (edge := self._edges.get((neighbour, key))) is not None:
                influencers.append(NeighbourEdge(self._artist(neighbour), edge.relation, edge.source))
            if (edge := self._edges.get((key, neighbour))) is not None:
                influenced.append(NeighbourEdge(self._artist(neighbour), edge.relation, edge.source))
        return Neighbourhood(self._artist(key), influencers, influenced)

    async def stats(self) -> GraphStats:
        return GraphStats(self.backend, len(self._index), len(self._edges), *self._curated_counts)

    async def close(self) -> None:
        """Nothing to release: the additions log opens its file per batch."""

    # ---- additions -----------------------------------------------------------------------------------

    async def add(self, artists: Sequence[ArtistRecord], influences: Sequence[NewInfluence]) -> AddResult:
        async with self._add_lock:
            new_artists, new_edges = self.plan_additions(artists, influences)
            if self._additions_log is not None and (new_artists or new_edges):
                # Durable first, then visible: a crash between the two replays the batch at start.
                await asyncio.to_thread(self._additions_log.append, new_artists, new_edges)
            self.apply_additions(new_artists, new_edges)
        if new_artists or new_edges:
            log.info("graph additions", extra={"artists": len(new_artists), "influences": len(new_edges)})
        return AddResult(len(new_artists), len(new_edges))

    def plan_additions(
        self, artists: Sequence[ArtistRecord], influences: Sequence[NewInfluence]
    ) -> tuple[list[ArtistRecord], list[Influence]]:
        """The artists and edges of a request that are new to this graph, resolved to keys, without
        changing the graph. Raises InvalidGraphInput (and plans nothing) when one entry is bad."""
        for influence in influences:
            check_new_influence(influence)
        return _AdditionPlan(self._index, self._edges).build(artists, influences)

    def apply_additions(self, artists: Sequence[ArtistRecord], influences: Sequence[Influence]) -> None:
        """Adds planned (or stored) artists and edges; ones already present, or edges whose endpoints are
        unknown, are skipped."""
        for artist in artists:
            self._add_artist(artist)
        for edge in influences:
            if edge.influencer in self._neighbours and edge.influenced in self._neighbours:
                self._link(edge)

    def _add_artist(self, artist: ArtistRecord) -> bool:
        if not self._index.add_runtime(artist):
            return False
        self._neighbours[artist.key] = {}
        self._sorted_keys = None
        return True

    def _link(self, edge: Influence) -> bool:
        pair = (edge.influencer, edge.influenced)
        if pair in self._edges:
            return False
        self._edges[pair] = edge
        self._neighbours[edge.influencer][edge.influenced] = None
        self._neighbours[edge.influenced][edge.influencer] = None
        return True

    def _replay(self, additions_log: AdditionsLog) -> None:
        replayed = skipped = 0
        for entry in additions_log.replay():
            if isinstance(entry, ArtistRecord):
                applied = self._add_artist(entry)
            elif entry.influencer in self._neighbours and entry.influenced in self._neighbours:
                applied = self._link(entry)
            else:
                applied = False
            replayed += applied
            skipped += not applied
        log.info(
            "replayed graph additions",
            extra={"path": str(additions_log.path), "applied": replayed, "already_present": skipped},
        )


class _AdditionPlan:
    """Works out which of the requested artists and edges are new, without touching the graph, so that
    a request with one bad entry adds nothing."""

    def __init__(self, index: ArtistIndex, edges: dict[tuple[str, str], Influence]) -> None:
        self._index = index
        self._edges = edges
        self._new_artists: dict[str, ArtistRecord] = {}
        self._new_edges: dict[tuple[str, str], Influence] = {}

    def build(
        self, artists: Sequence[ArtistRecord], influences: Sequence[NewInfluence]
    ) -> tuple[list[ArtistRecord], list[Influence]]:
        for artist in artists:
            self._key_for(artist.name or artist.key, artist)
        for influence in influences:
            influencer = self._key_for(influence.influencer)
            influenced = self._key_for(influence.influenced)
            if influencer == influenced:
                raise InvalidGraphInput(
                    f"{influence.influencer!r} and {influence.influenced!r} are the same artist: "
                    "an artist cannot influence itself"
                )
            pair = (influencer, influenced)
            if pair not in self._edges and pair not in self._new_edges:
                self._new_edges[pair] = Influence(
                    influencer, influenced, influence.relation, influence.source
                )
        return list(self._new_artists.values()), list(self._new_edges.values())

    def _key_for(self, name: str, details: ArtistRecord | None = None) -> str:
        """The key of a known or already planned artist, else plans a new one named `name`."""
        known = self._index.resolve(name)
        if known is not None:
            return known
        key = normalise_name(name)
        if not key:
            raise InvalidGraphInput(f"artist name {name!r} has no letters or digits")
        if key not in self._new_artists:
            self._new_artists[key] = ArtistRecord.named(
                name,
                birth_year=details.birth_year if details else 0,
                death_year=details.death_year if details else 0,
                movement=details.movement if details else "",
                nationality=details.nationality if details else "",
            )
        return key


def _unreached(name: str, key: str | None) -> CandidateDistance:
    return CandidateDistance(name, key or "", key is not None, UNREACHABLE)
