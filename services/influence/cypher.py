"""The Cypher the Neo4j backend sends, and the dialects of the servers it talks to.

Graph model: `(:Artist {key, name, aliases, birth_year, death_year, movement, nationality, curated})`,
`(:Artist)-[:INFLUENCED {source, curated}]->(:Artist)` and `(:Artist)-[:TAUGHT {source, curated}]->(:Artist)`
(teacher -> pupil). `key` is the canonical artist key (`artsearch.artists`), unique. Unknown years and
empty strings are not stored. `curated` marks what comes from the curated table: those artists form the
name-resolution index's curated set, exactly as in the embedded graph.

Every statement below runs on Neo4j 5 and on FalkorDB's Bolt alike. What differs lives in a dialect
object, chosen once from configuration: the schema statements (Neo4j 5 has a uniqueness constraint;
FalkorDB has no Cypher constraint DDL, only an index), how large one Bolt request may be (FalkorDB's
server crashes on requests over ~4 KB), and the form of the per-request distances query (FalkorDB rejects
`MATCH p = shortestPath(...)` and only finds directed shortest paths).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from services.influence.graph import RELATION_INFLUENCED, RELATION_TEACHER, InvalidGraphInput

# The relationship type of each relation of the interface (types cannot be query parameters).
RELATIONSHIP_TYPES: dict[str, str] = {RELATION_INFLUENCED: "INFLUENCED", RELATION_TEACHER: "TAUGHT"}
RELATIONS_BY_TYPE: dict[str, str] = {type_: relation for relation, type_ in RELATIONSHIP_TYPES.items()}
ANY_INFLUENCE = "|".join(RELATIONSHIP_TYPES.values())

Row = Mapping[str, Any]
QueryRunner = Callable[[str, Mapping[str, Any]], Awaitable[list[dict[str, Any]]]]

# Runtime additions never change an existing artist or edge; the curated table is authoritative for the
# artists and edges it lists, so seeding it overwrites their properties.
MERGE_ARTISTS = """
UNWIND $rows AS row
MERGE (a:Artist {key: row.key})
ON CREATE SET a += row.props
"""
MERGE_CURATED_ARTISTS = """
UNWIND $rows AS row
MERGE (a:Artist {key: row.key})
SET a += row.props
"""


def merge_influences_query(relationship_type: str, *, curated: bool) -> str:
    if relationship_type not in RELATIONS_BY_TYPE:
        raise ValueError(f"unknown relationship type {relationship_type!r}")
    set_clause = "SET" if curated else "ON CREATE SET"
    return f"""
UNWIND $rows AS row
MATCH (a:Artist {{key: row.influencer}}), (b:Artist {{key: row.influenced}})
MERGE (a)-[r:{relationship_type}]->(b)
{set_clause} r += row.props
"""


READ_ARTISTS = """
MATCH (a:Artist)
RETURN a.key AS key, a.name AS name, a.aliases AS aliases, a.birth_year AS birth_year,
       a.death_year AS death_year, a.movement AS movement, a.nationality AS nationality,
       a.curated AS curated
"""
READ_INFLUENCES = f"""
MATCH (a:Artist)-[r:{ANY_INFLUENCE}]->(b:Artist)
RETURN a.key AS influencer, b.key AS influenced, type(r) AS type, r.source AS source, r.curated AS curated
"""
COUNT_ARTISTS = "MATCH (a:Artist) RETURN count(a) AS count"
COUNT_INFLUENCES = f"MATCH (:Artist)-[r:{ANY_INFLUENCE}]->(:Artist) RETURN count(r) AS count"


class RequestTooLarge(InvalidGraphInput):
    """One row alone is larger than the server accepts in one request (FalkorDB: ~4 KB)."""


def encoded_size(value: object) -> int:
    """Bytes a value takes on the wire, near enough: PackStream and compact UTF-8 JSON differ by a few
    bytes of headers per value, which the request budgets leave room for."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


class CypherDialect(Protocol):
    """What differs between the servers the backend speaks Bolt to."""

    name: str
    # The largest request (query text + parameters) to send, in bytes, and the most rows per batch.
    max_request_bytes: int
    max_batch_rows: int

    async def ensure_schema(self, run: QueryRunner) -> None:
        """Creates the uniqueness constraint or index on `Artist.key` when missing (idempotent)."""
        ...

    def encode(self, value: Any) -> Any:
        """A parameter value as this server must receive it to read back `value`."""
        ...

    def distances_query(self, max_hops: int) -> str:
        """The per-request distances query: parameters `source` (a key) and `targets` (keys, the source
        excluded); rows `key`, `hops` for the targets reached within `max_hops` (>= 1) edges."""
        ...


@dataclass(frozen=True)
class Neo4jDialect:
    name: str = "neo4j"
    max_request_bytes: int = 4 * 1024 * 1024
    max_batch_rows: int = 1000

    async def ensure_schema(self, run: QueryRunner) -> None:
        await run("CREATE CONSTRAINT artist_key IF NOT EXISTS FOR (a:Artist) REQUIRE a.key IS UNIQUE", {})

    def encode(self, value: Any) -> Any:
        return value

    def distances_query(self, max_hops: int) -> str:
        # shortestPath is a bidirectional BFS in Neo4j: it stops at the first path, for each target.
        return f"""
MATCH (s:Artist {{key: $source}})
UNWIND $targets AS target
MATCH (c:Artist {{key: target}})
MATCH p = shortestPath((s)-[:{ANY_INFLUENCE}*..{_hops(max_hops)}]-(c))
RETURN target AS key, length(p) AS hops
"""


@dataclass(frozen=True)
class FalkorDBDialect:
    name: str = "falkordb"
    # The server dies on requests over ~4 KB; leave room for the Bolt RUN message's own fields.
    max_request_bytes: int = 3072
    max_batch_rows: int = 500

    async def ensure_schema(self, run: QueryRunner) -> None:
        # No constraint DDL over Cypher (FalkorDB has GRAPH.CONSTRAINT, a Redis command, not reachable over
        # Bolt). FalkorDB runs write queries one at a time, so MERGE on the indexed key cannot race into
        # duplicates. CREATE INDEX fails when the index exists, hence the look first.
        indexes = await run("CALL db.indexes() YIELD label, properties RETURN label, properties", {})
        if not any(row["label"] == "Artist" and "key" in row["properties"] for row in indexes):
            await run("CREATE INDEX FOR (a:Artist) ON (a.key)", {})

    def encode(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace("\\", "\\\\").replace("'", "\\'")
        if isinstance(value, Mapping):
            return {self.encode(key): self.encode(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.encode(item) for item in value]
        return value

    def distances_query(self, max_hops: int) -> str:
        # No undirected shortestPath here: a bounded variable-length match, keeping each target's shortest.
        return f"""
MATCH (s:Artist {{key: $source}})
MATCH p = (s)-[:{ANY_INFLUENCE}*1..{_hops(max_hops)}]-(c:Artist)
WHERE c.key IN $targets
RETURN c.key AS key, min(length(p)) AS hops
"""


DIALECTS: dict[str, CypherDialect] = {"neo4j": Neo4jDialect(), "falkordb": FalkorDBDialect()}


def _hops(max_hops: int) -> int:
    if not isinstance(max_hops, int) or max_hops < 1:
        raise ValueError(f"the distances query needs max_hops >= 1, got {max_hops!r}")
    return max_hops


def batches(query: str, rows: Sequence[Row], dialect: CypherDialect) -> Iterator[list[Row]]:
    """Splits `rows` into batches that each fit one request: at most `max_batch_rows` rows and, with the
    query text, at most `max_request_bytes`. Raises RequestTooLarge for a row that cannot fit alone."""
    budget = dialect.max_request_bytes - len(query.encode()) - 64
    batch: list[Row] = []
    used = 0
    for row in rows:
        size = encoded_size(dialect.encode(row)) + 1
        if size > budget:
            raise RequestTooLarge(
                f"one row of {size} bytes exceeds the {dialect.name} request budget of {budget} bytes: "
                f"{row!r:.120}"
            )
        if batch and (used + size > budget or len(batch) >= dialect.max_batch_rows):
            yield batch
            batch, used = [], 0
        batch.append(row)
        used += size
    if batch:
        yield batch
