"""The Neo4j backend's Cypher helpers without a server: request batching under a byte budget, the
FalkorDB parameter escaping, the dialects' queries. (Against real servers: tests/integration.)"""

from __future__ import annotations

import pytest

from services.influence.cypher import (
    DIALECTS,
    MERGE_ARTISTS,
    FalkorDBDialect,
    Neo4jDialect,
    RequestTooLarge,
    batches,
    encoded_size,
    merge_influences_query,
)
from services.influence.graph import InvalidGraphInput


def test_batches_fit_the_byte_budget_with_the_query_and_keep_every_row_in_order():
    dialect = FalkorDBDialect()
    rows = [{"key": f"artist {i}", "props": {"name": "Ö'Brien " * (i % 7)}} for i in range(400)]
    split = list(batches(MERGE_ARTISTS, rows, dialect))
    assert [row for batch in split for row in batch] == rows and len(split) > 1
    for batch in split:
        request = len(MERGE_ARTISTS.encode()) + encoded_size(dialect.encode(batch))
        assert request <= dialect.max_request_bytes
        assert len(batch) <= dialect.max_batch_rows


def test_row_counts_cap_batches_too():
    rows = [{"key": str(i)} for i in range(2500)]
    assert [len(b) for b in batches(MERGE_ARTISTS, rows, Neo4jDialect())] == [1000, 1000, 500]
    assert list(batches(MERGE_ARTISTS, [], Neo4jDialect())) == []


def test_a_row_too_large_for_the_server_is_refused_before_anything_is_sent():
    with pytest.raises(RequestTooLarge, match="falkordb request budget") as error:
        list(batches(MERGE_ARTISTS, [{"key": "x", "props": {"source": "y" * 4000}}], FalkorDBDialect()))
    assert isinstance(error.value, InvalidGraphInput)  # the service answers INVALID_ARGUMENT
    assert len(list(batches(MERGE_ARTISTS, [{"source": "y" * 4000}], Neo4jDialect()))) == 1


def test_falkordb_parameters_escape_quotes_and_backslashes_everywhere():
    encode = FalkorDBDialect().encode
    assert encode("O'Keeffe \\ x") == "O\\'Keeffe \\\\ x"
    assert encode({"rows": [{"name": "d'Arc", "year": 1412, "aliases": ("a'b",)}]}) == {
        "rows": [{"name": "d\\'Arc", "year": 1412, "aliases": ["a\\'b"]}]
    }
    assert Neo4jDialect().encode({"name": "d'Arc"}) == {"name": "d'Arc"}


def test_queries_refuse_what_cannot_be_spliced_into_them():
    for dialect in DIALECTS.values():
        assert "*1..4" in dialect.distances_query(4) or "*..4" in dialect.distances_query(4)
        with pytest.raises(ValueError, match="max_hops"):
            dialect.distances_query(0)
    assert "MERGE (a)-[r:TAUGHT]->(b)" in merge_influences_query("TAUGHT", curated=False)
    assert "ON CREATE SET r += row.props" in merge_influences_query("INFLUENCED", curated=False)
    assert "\nSET r += row.props" in merge_influences_query("INFLUENCED", curated=True)
    with pytest.raises(ValueError, match="relationship type"):
        merge_influences_query("LIKED]->(x) DETACH DELETE x //", curated=False)
