"""The influence graph as stored in a Bolt server (Neo4j 5, or FalkorDB for tests): schema, batched
idempotent MERGE writes, full reads for the snapshot, counts, and the per-request distances query.

Every statement runs as an auto-commit query. Each UNWIND batch is atomic on its own and every write is an
idempotent MERGE, so an interrupted batch write is completed by running it again. (Managed transactions
would add nothing here, and over FalkorDB's Bolt each one costs ~44 ms of Nagle/delayed-ACK stall against
~0.5 ms for an auto-commit query.)

Every query is bounded: a database that stops answering (frozen, partitioned, a lock held elsewhere) costs a
call `query_timeout` seconds, never a hung write lock. The bound is kept on this side (the asyncio task is
cancelled, which makes the driver drop the connection) and sent to the server as the transaction timeout,
so Neo4j aborts the query and frees its locks too. A timed-out write may still have landed: its outcome is
unknown, which the idempotent MERGE and the snapshot's count check absorb.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from neo4j import AsyncDriver, AsyncGraphDatabase, Query
from neo4j.exceptions import ServiceUnavailable, SessionExpired, TransientError

from artsearch.artists import ArtistRecord
from services.influence.cypher import (
    COUNT_ARTISTS,
    COUNT_INFLUENCES,
    DIALECTS,
    MERGE_ARTISTS,
    MERGE_CURATED_ARTISTS,
    READ_ARTISTS,
    READ_INFLUENCES,
    RELATIONS_BY_TYPE,
    RELATIONSHIP_TYPES,
    CypherDialect,
    batches,
    merge_influences_query,
)
from services.influence.graph import GraphUnavailable, Influence

log = logging.getLogger(__name__)

_OUT_OF_REACH = (ServiceUnavailable, SessionExpired, TransientError, ConnectionError)


@dataclass(frozen=True)
class Neo4jSettings:
    """Where the graph database is and how to talk to it. The password never appears in a repr."""

    uri: str
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    database: str | None = None
    dialect: str = "neo4j"
    refresh_seconds: float = 30.0
    connect_timeout: float = 5.0
    query_timeout: float = 10.0  # one query (a write batch, a count)
    refresh_timeout: float = 60.0  # one full read of the graph (start-up, a snapshot reload)

    def __post_init__(self) -> None:
        if self.dialect not in DIALECTS:
            raise ValueError(f"unknown Cypher dialect {self.dialect!r}; one of {sorted(DIALECTS)}")
        if (self.user is None) != (self.password is None):
            raise ValueError("Neo4j credentials need both a user and a password, or neither")


class GraphCounts(NamedTuple):
    artists: int
    influences: int

    def plus(self, artists: int, influences: int) -> GraphCounts:
        return GraphCounts(self.artists + artists, self.influences + influences)


@dataclass(frozen=True)
class StoredGraph:
    """Everything the database holds, split the way the embedded graph is built: the curated artists and
    edges (`curated` flag set) and the rest."""

    curated_artists: list[ArtistRecord]
    curated_influences: list[Influence]
    artists: list[ArtistRecord]
    influences: list[Influence]


def _artist_props(artist: ArtistRecord, *, curated: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"name": artist.name}
    optional = {
        "aliases": list(artist.aliases),
        "birth_year": artist.birth_year,
        "death_year": artist.death_year,
        "movement": artist.movement,
        "nationality": artist.nationality,
    }
    props.update({name: value for name, value in optional.items() if value})
    if curated:
        props["curated"] = True
    return props


def _influence_props(edge: Influence, *, curated: bool) -> dict[str, Any]:
    props: dict[str, Any] = {"source": edge.source} if edge.source else {}
    if curated:
        props["curated"] = True
    return props


def _artist_from_row(row: Mapping[str, Any]) -> ArtistRecord:
    return ArtistRecord(
        key=row["key"],
        name=row["name"] or row["key"],
        aliases=tuple(row["aliases"] or ()),
        birth_year=int(row["birth_year"] or 0),
        death_year=int(row["death_year"] or 0),
        movement=row["movement"] or "",
        nationality=row["nationality"] or "",
    )


def _influence_from_row(row: Mapping[str, Any]) -> Influence:
    return Influence(
        row["influencer"], row["influenced"], RELATIONS_BY_TYPE[row["type"]], row["source"] or ""
    )


def _merge_statements(
    artists: Sequence[ArtistRecord], influences: Sequence[Influence], *, curated: bool
) -> list[tuple[str, list[dict[str, Any]], str]]:
    """(query, rows, the summary counter that counts what it creates), artists first."""
    artist_rows = [{"key": a.key, "props": _artist_props(a, curated=curated)} for a in artists]
    statements = [(MERGE_CURATED_ARTISTS if curated else MERGE_ARTISTS, artist_rows, "nodes_created")]
    for relation, relationship_type in RELATIONSHIP_TYPES.items():
        rows = [
            {
                "influencer": e.influencer,
                "influenced": e.influenced,
                "props": _influence_props(e, curated=curated),
            }
            for e in influences
            if e.relation == relation
        ]
        query = merge_influences_query(relationship_type, curated=curated)
        statements.append((query, rows, "relationships_created"))
    return statements


class BoltGraphStore:
    """Cypher over one driver (the driver keeps a connection pool; one per process is the intended use)."""

    def __init__(
        self,
        driver: AsyncDriver,
        dialect: CypherDialect,
        database: str | None = None,
        *,
        query_timeout: float = 10.0,
        refresh_timeout: float = 60.0,
    ) -> None:
        self._driver = driver
        self.dialect = dialect
        self._database = database
        self.query_timeout = query_timeout
        self.refresh_timeout = refresh_timeout

    @classmethod
    def connect(cls, settings: Neo4jSettings) -> BoltGraphStore:
        auth = (settings.user, settings.password) if settings.user is not None else None
        driver = AsyncGraphDatabase.driver(
            settings.uri,
            auth=auth,
            connection_timeout=settings.connect_timeout,
            connection_acquisition_timeout=settings.connect_timeout,
        )
        return cls(
            driver,
            DIALECTS[settings.dialect],
            settings.database,
            query_timeout=settings.query_timeout,
            refresh_timeout=settings.refresh_timeout,
        )

    async def run(
        self, query: str, parameters: Mapping[str, Any] | None = None, *, timeout: float | None = None
    ) -> list[dict[str, Any]]:
        """The rows of one query; GraphUnavailable past `timeout` (default: `query_timeout`) seconds."""
        records, _ = await self._run_with_counters(query, parameters or {}, timeout)
        return records

    async def _run_with_counters(
        self, query: str, parameters: Mapping[str, Any], timeout: float | None = None
    ) -> tuple[list[dict[str, Any]], Any]:
        seconds = self.query_timeout if timeout is None else timeout
        try:
            async with asyncio.timeout(seconds):
                return await self._send(Query(query, timeout=seconds), parameters)
        except TimeoutError:
            raise GraphUnavailable(f"the graph database did not answer within {seconds:g} s") from None
        except _OUT_OF_REACH as error:
            # Down, restarting, a connection lost mid-query: not now rather than never (UNAVAILABLE).
            raise GraphUnavailable(f"the graph database is out of reach: {error}") from error

    async def _send(self, query: Query, parameters: Mapping[str, Any]) -> tuple[list[dict[str, Any]], Any]:
        async with self._driver.session(database=self._database) as session:
            result = await session.run(query, self.dialect.encode(dict(parameters)))
            records = [record.data() async for record in result]
            summary = await result.consume()
        return records, summary.counters

    async def verify(self) -> None:
        """Raises the driver's error when the server cannot be reached or refuses the credentials."""
        await self.run("RETURN 1 AS ok")

    async def ensure_schema(self) -> None:
        await self.dialect.ensure_schema(self.run)

    async def write(
        self, artists: Sequence[ArtistRecord], influences: Sequence[Influence], *, curated: bool = False
    ) -> GraphCounts:
        """MERGEs artists by key, then edges between existing artists (one relationship type per
        relation); returns how many nodes and relationships were created. Every batch is built before the
        first is sent, so a row too large for the server (RequestTooLarge) writes nothing."""
        requests = [
            (query, batch, counter)
            for query, rows, counter in _merge_statements(artists, influences, curated=curated)
            for batch in batches(query, rows, self.dialect)
        ]
        created = {"nodes_created": 0, "relationships_created": 0}
        for query, batch, counter in requests:
            _, counters = await self._run_with_counters(query, {"rows": batch})
            created[counter] += getattr(counters, counter)
        return GraphCounts(created["nodes_created"], created["relationships_created"])

    async def read_graph(self) -> StoredGraph:
        """Everything stored, each read bounded by `refresh_timeout` (a large graph takes a while)."""
        artist_rows = await self.run(READ_ARTISTS, timeout=self.refresh_timeout)
        influence_rows = await self.run(READ_INFLUENCES, timeout=self.refresh_timeout)
        # Sorted so that a snapshot's adjacency (and so its choice among equally short paths) does not
        # depend on the order the server returns rows in.
        artist_rows.sort(key=lambda row: row["key"])
        influence_rows.sort(key=lambda row: (row["influencer"], row["influenced"], row["type"]))
        curated_keys = {row["key"] for row in artist_rows if row["curated"]}
        graph = StoredGraph([], [], [], [])
        for row in artist_rows:
            (graph.curated_artists if row["curated"] else graph.artists).append(_artist_from_row(row))
        for row in influence_rows:
            edge = _influence_from_row(row)
            is_curated = row["curated"] and {edge.influencer, edge.influenced} <= curated_keys
            (graph.curated_influences if is_curated else graph.influences).append(edge)
        return graph

    async def counts(self, *, timeout: float | None = None) -> GraphCounts:
        artists = await self.run(COUNT_ARTISTS, timeout=timeout)
        influences = await self.run(COUNT_INFLUENCES, timeout=timeout)
        return GraphCounts(artists[0]["count"], influences[0]["count"])

    async def distances_by_query(self, source: str, targets: Sequence[str], max_hops: int) -> dict[str, int]:
        """Hops from `source` to each target key reached within `max_hops`, by one Cypher query per request
        (per batch of targets): the alternative to the snapshot that the benchmark measures."""
        found = {source: 0} if source in targets else {}
        others = sorted(set(targets) - {source})
        if max_hops < 1 or not others:
            return found
        query = self.dialect.distances_query(max_hops)
        target_rows = [{"key": key} for key in others]
        for batch in batches(query + source, target_rows, self.dialect):
            rows = await self.run(query, {"source": source, "targets": [row["key"] for row in batch]})
            found.update({row["key"]: row["hops"] for row in rows})
        return found

    async def close(self) -> None:
        await self._driver.close()
