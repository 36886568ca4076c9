"""The influence graph kept in Neo4j and served from an in-memory snapshot of it.

Why a snapshot: the hot path (hops from one source to ~100 candidates, once per search) must not cost a
graph query per request. At start the backend reads every artist and edge once and builds the embedded
graph from them (`InMemoryInfluenceGraph`, so the BFS, the path search and the name resolution are the
very same code as the embedded backend's); queries are then answered from memory at embedded speed.
Writes (`add`) go to Neo4j first (batched idempotent MERGE) and then into the snapshot, so a replica sees
its own writes at once. Other writers (another replica, the import command) are picked up by a periodic
check: every `refresh_seconds` the backend counts artists and edges in Neo4j and reloads the snapshot
when the counts differ from those it last saw. The stored graph only grows through this code, so counts
are a sufficient change signal; a property edited by hand shows after a restart or a forced `refresh()`.
Both are bounded, so a frozen database never holds the write lock: a reload by the store's
`refresh_timeout` as a whole, a write by its `query_timeout` per query and for its wait on the lock
(GraphUnavailable: the call answers UNAVAILABLE and the last snapshot keeps serving).
docs/influence.md ("Influence on Neo4j") has the measurements behind the choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from artsearch.artists import ArtistRecord
from services.influence.bolt_store import BoltGraphStore, GraphCounts
from services.influence.curated import CuratedData
from services.influence.graph import (
    AddResult,
    ArtistLookup,
    ArtistPage,
    DistanceResult,
    GraphStats,
    GraphUnavailable,
    Neighbourhood,
    NewInfluence,
    PathResult,
)
from services.influence.memory_graph import InMemoryInfluenceGraph

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """The stored graph in memory, and the database's counts read just before it was loaded."""

    graph: InMemoryInfluenceGraph
    counts: GraphCounts


async def load_snapshot(store: BoltGraphStore) -> Snapshot:
    """The stored graph; GraphUnavailable when the reads take longer than the store's `refresh_timeout`."""
    try:
        async with asyncio.timeout(store.refresh_timeout):
            # Counts first: a write landing during the load then shows as a difference at the next check.
            counts = await store.counts(timeout=store.refresh_timeout)
            stored = await store.read_graph()
    except TimeoutError:
        raise GraphUnavailable(f"reading the graph took longer than {store.refresh_timeout:g} s") from None
    graph = await asyncio.to_thread(
        InMemoryInfluenceGraph.with_additions,
        CuratedData(stored.curated_artists, stored.curated_influences),
        stored.artists,
        stored.influences,
    )
    return Snapshot(graph, counts)


class Neo4jInfluenceGraph:
    """Implements `InfluenceGraph`: reads from the snapshot, writes through to Neo4j (see the module doc)."""

    backend = "neo4j"

    def __init__(self, store: BoltGraphStore, snapshot: Snapshot, refresh_seconds: float) -> None:
        self._store = store
        self._snapshot = snapshot
        self._refresh_seconds = refresh_seconds
        # Held by writes and reloads, so that a reload never drops a write made while it ran.
        self._write_lock = asyncio.Lock()
        self._refresher: asyncio.Task[None] | None = None

    @classmethod
    async def open(
        cls, store: BoltGraphStore, curated: CuratedData, refresh_seconds: float
    ) -> Neo4jInfluenceGraph:
        """Creates the schema, writes the curated table (idempotent), loads the snapshot and starts the
        periodic refresh (none when `refresh_seconds` is 0)."""
        await store.ensure_schema()
        await store.write(curated.artists, curated.influences, curated=True)
        graph = cls(store, await load_snapshot(store), refresh_seconds)
        if refresh_seconds > 0:
            graph._refresher = asyncio.create_task(graph._refresh_periodically())
        return graph

    @property
    def store(self) -> BoltGraphStore:
        return self._store

    # ---- queries: answered from the snapshot -------------------------------------------------------------

    async def distances(
        self, source: str, candidates: Sequence[str], max_hops: int, with_paths: bool = False
    ) -> DistanceResult:
        return await self._snapshot.graph.distances(source, candidates, max_hops, with_paths)

    async def path(self, from_artist: str, to_artist: str, max_hops: int) -> PathResult | None:
        return await self._snapshot.graph.path(from_artist, to_artist, max_hops)

    async def get_artists(self, names: Sequence[str]) -> ArtistLookup:
        return await self._snapshot.graph.get_artists(names)

    async def list_artists(self, prefix: str, limit: int, cursor: str) -> ArtistPage:
        return await self._snapshot.graph.list_artists(prefix, limit, cursor)

    async def neighbours(self, name: str) -> Neighbourhood | None:
        return await self._snapshot.graph.neighbours(name)

    async def stats(self) -> GraphStats:
        return dataclasses.replace(await self._snapshot.graph.stats(), backend=self.backend)

    # ---- writes: Neo4j first, then the snapshot --------------------------------------------------------

    async def add(self, artists: Sequence[ArtistRecord], influences: Sequence[NewInfluence]) -> AddResult:
        async with self._locked_for_writing():
            snapshot = self._snapshot
            new_artists, new_edges = snapshot.graph.plan_additions(artists, influences)
            if not new_artists and not new_edges:
                return AddResult(0, 0)
            created = await self._store.write(new_artists, new_edges)
            snapshot.graph.apply_additions(new_artists, new_edges)
            self._snapshot = Snapshot(snapshot.graph, snapshot.counts.plus(*created))
        log.info("graph additions", extra={"artists": len(new_artists), "influences": len(new_edges)})
        return AddResult(len(new_artists), len(new_edges))

    @contextlib.asynccontextmanager
    async def _locked_for_writing(self) -> AsyncIterator[None]:
        """The write lock, waited for at most the store's `query_timeout` (a reload or another write may hold
        it for up to their own bounds)."""
        try:
            async with asyncio.timeout(self._store.query_timeout):
                await self._write_lock.acquire()
        except TimeoutError:
            raise GraphUnavailable("the graph is busy with another write or a reload; try again") from None
        try:
            yield
        finally:
            self._write_lock.release()

    # ---- refresh ---------------------------------------------------------------------------------------

    async def refresh(self, *, force: bool = False) -> bool:
        """Reloads the snapshot when the database's counts changed (or always, with `force`); True when
        it reloaded."""
        async with self._write_lock:
            if not force and await self._store.counts() == self._snapshot.counts:
                return False
            self._snapshot = await load_snapshot(self._store)
        stats = await self._snapshot.graph.stats()
        log.info(
            "reloaded the graph snapshot", extra={"artists": stats.artists, "influences": stats.influences}
        )
        return True

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(self._refresh_seconds)
            try:
                await self.refresh()
            except Exception:
                # Keep serving the last snapshot; the next round tries again.
                log.warning("graph snapshot refresh failed", exc_info=True)

    async def close(self) -> None:
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        await self._store.close()
