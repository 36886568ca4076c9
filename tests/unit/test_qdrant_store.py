"""What is particular to QdrantArtworkStore (the shared store contract is in
tests/services/test_search_store_contract.py): point ids, local mode's single-process lock, how a server
collection is laid out (shards, replicas, write consistency, quantization, payload indexes before the
first point, bounded upsert batches) and how transient failures are retried.

Server requests are checked against a small scripted HTTP server speaking the few REST endpoints the
store uses, and, where a Docker engine answers, against a real `qdrant/qdrant` server."""

from __future__ import annotations

import json
import re
import socket
import threading
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from artsearch.artists import artist_key
from services.search.payload import to_payload
from services.search.qdrant_store import QdrantArtworkStore, QdrantServerSettings, point_id
from services.search.store import (
    ArtworkRecord,
    IndexedArtwork,
    InvalidStoreRequest,
    MetadataChanges,
    NotFound,
    StoreUnavailable,
    UnsupportedOperation,
)

pytestmark = pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")

DIM = 8
FAST_RETRIES = {"retries": 2, "retry_backoff_s": 0.01}


def basis(index: int) -> np.ndarray:
    vector = np.zeros(DIM, dtype=np.float32)
    vector[index] = 1.0
    return vector


def item(artwork_id: str, vector: np.ndarray, **fields: object) -> IndexedArtwork:
    return IndexedArtwork(ArtworkRecord(id=artwork_id, **fields), vector)  # type: ignore[arg-type]


# --- a scripted Qdrant REST endpoint ------------------------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    body: Any


@dataclass
class ScriptedQdrant:
    """Answers the store's REST calls like an empty Qdrant server, except for scripted failures:
    `failures[(method, path regex)]` is a list of HTTP statuses served first, one per request."""

    failures: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    collections: set[str] = field(default_factory=set)
    # `results[(method, path regex)]`: the `result` of a 200 answer to requests that match.
    results: dict[tuple[str, str], Any] = field(default_factory=dict)

    def answer(self, method: str, path: str, body: Any) -> tuple[int, Any]:
        self.requests.append(Recorded(method, path, body))
        for (failing_method, pattern), statuses in self.failures.items():
            if failing_method == method and re.fullmatch(pattern, path) and statuses:
                status = statuses.pop(0)
                return status, {"status": {"error": f"scripted {status}"}, "time": 0.0}
        for (scripted_method, pattern), result in self.results.items():
            if scripted_method == method and re.fullmatch(pattern, path):
                return 200, _ok(result)
        name = path.split("/")[2] if path.startswith("/collections/") else ""
        if method == "GET" and path.endswith("/exists"):
            return 200, _ok({"exists": name in self.collections})
        if method == "PUT" and re.fullmatch(r"/collections/[^/]+", path):
            self.collections.add(name)
            return 200, _ok(True)
        if (method == "PUT" and path.endswith(("/index", "/points"))) or (
            method == "POST" and path.endswith("/points/delete")
        ):
            return 200, _ok({"operation_id": len(self.requests), "status": "completed"})
        return 404, {"status": {"error": f"not scripted: {method} {path}"}, "time": 0.0}

    def paths(self, method: str, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(suffix)]


def _ok(result: Any) -> dict[str, Any]:
    return {"result": result, "status": "ok", "time": 0.0}


@pytest.fixture
def scripted() -> Iterator[tuple[ScriptedQdrant, str]]:
    server_state = ScriptedQdrant()

    class Handler(BaseHTTPRequestHandler):
        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            status, reply = server_state.answer(self.command, self.path.split("?")[0], body)
            data = json.dumps(reply).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_PUT = do_POST = do_DELETE = _serve

        def log_message(self, *args: object) -> None:  # keep test output quiet
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield server_state, f"http://127.0.0.1:{http.server_address[1]}"
    http.shutdown()
    http.server_close()


async def _server_store(url: str, **settings: Any) -> QdrantArtworkStore:
    return await QdrantArtworkStore.open(
        url=url,
        timeout_s=5,
        check_compatibility=False,
        default_collection="paintings",
        settings=QdrantServerSettings(**{**FAST_RETRIES, **settings}),
    )


# --- collection layout on a server --------------------------------------------------------------------


async def test_a_new_server_collection_gets_the_configured_layout(
    scripted: tuple[ScriptedQdrant, str],
) -> None:
    state, url = scripted
    store = await _server_store(
        url, shard_number=6, replication_factor=2, write_consistency_factor=2, quantization=True
    )
    try:
        assert await store.upsert("", [item("a", basis(0)), item("b", basis(1))]) == 2
    finally:
        await store.close()
    (created,) = state.paths("PUT", "/collections/paintings")
    # The whole picture as the unnamed vector (artwork points), "regions" a plain vector with its own
    # HNSW graph (region points), not a MaxSim multivector.
    assert created.body["vectors"] == {
        "": {"size": DIM, "distance": "Cosine"},
        "regions": {"size": DIM, "distance": "Cosine"},
    }
    assert (created.body["shard_number"], created.body["replication_factor"]) == (6, 2)
    assert created.body["write_consistency_factor"] == 2
    assert created.body["quantization_config"]["scalar"]["type"] == "int8"


@pytest.mark.parametrize(("search_ef", "sent"), [(400, {"hnsw_ef": 400}), (None, None)])
async def test_searches_ask_for_the_configured_hnsw_candidates(
    scripted: tuple[ScriptedQdrant, str], search_ef: int | None, sent: dict[str, int] | None
) -> None:
    state, url = scripted
    state.results[("POST", r"/collections/paintings/points/query")] = {"points": []}
    state.results[("POST", r"/collections/paintings/points/query/batch")] = [{"points": []}, {"points": []}]
    store = await _server_store(url, search_ef=search_ef)
    try:
        with_regions = IndexedArtwork(ArtworkRecord(id="a"), basis(0), np.stack([basis(1)]))
        await store.upsert("", [with_regions])
        assert await store.search("", basis(0), limit=100) == []
        assert await store.search("", basis(0), limit=100, match_regions=True) == []
    finally:
        await store.close()
    (plain,) = state.paths("POST", "/points/query")
    (batch,) = state.paths("POST", "/points/query/batch")
    # The gateway's pool of 100 at the server's own ef (100) misses 6 % of the exact top 100 (docs/search.md).
    assert plain.body.get("params") == sent
    assert [search.get("params") for search in batch.body["searches"]] == [sent, sent]


async def test_local_mode_asks_for_no_hnsw_candidates() -> None:
    """Local mode scans every point and warns at each search that asks for an ef: it asks for none."""
    store = await QdrantArtworkStore.open(location=":memory:", default_collection="paintings")
    try:
        await store.upsert("", [item("a", basis(0))])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert [hit.artwork.id for hit in await store.search("", basis(0), limit=5)] == ["a"]
    finally:
        await store.close()
    assert not [w for w in caught if "search_params" in str(w.message)]


async def test_payload_indexes_come_before_the_first_point(scripted: tuple[ScriptedQdrant, str]) -> None:
    state, url = scripted
    store = await _server_store(url)
    try:
        await store.upsert("", [item("a", basis(0))])
    finally:
        await store.close()
    writes = [r for r in state.requests if r.method == "PUT"]
    kinds = ["points" if r.path.endswith("/points") else "index" if r.path.endswith("/index") else "create"
             for r in writes]  # fmt: skip
    assert kinds == ["create", "index", "index", "index", "index", "index", "index", "index", "points"]
    indexed = {r.body["field_name"]: r.body["field_schema"] for r in state.paths("PUT", "/index")}
    assert indexed == {
        "id": "keyword",
        "artist_key": "keyword",
        "style": "keyword",
        "genre": "keyword",
        # The catalogue's declared label kind, which the style vote's filter reads.
        "extra.style_labels": "keyword",
        # The artwork a region point belongs to.
        "region_of": "keyword",
        "year": "integer",
    }


async def test_upserts_go_out_in_bounded_batches(scripted: tuple[ScriptedQdrant, str]) -> None:
    state, url = scripted
    store = await _server_store(url, upsert_batch=256)
    rng = np.random.default_rng(0)
    try:
        many = [item(f"n{i}", rng.standard_normal(DIM).astype(np.float32)) for i in range(600)]
        assert await store.upsert("", many) == 600
    finally:
        await store.close()
    sizes = [len(r.body["points"]) for r in state.paths("PUT", "/points")]
    assert sizes == [256, 256, 88]
    sent = [point["id"] for r in state.paths("PUT", "/points") for point in r.body["points"]]
    assert sent == [point_id(f"n{i}") for i in range(600)]


async def test_regions_are_points_written_after_their_artworks_old_ones_deleted_first(
    scripted: tuple[ScriptedQdrant, str],
) -> None:
    state, url = scripted
    store = await _server_store(url, upsert_batch=4)
    rng = np.random.default_rng(1)
    try:
        three = [
            IndexedArtwork(
                ArtworkRecord(id=f"r{i}", artist="Hokusai", style="ukiyo-e", year=1830),
                basis(i),
                rng.standard_normal((3, DIM)).astype(np.float32),
            )
            for i in range(3)
        ]
        assert await store.upsert("", three) == 3
    finally:
        await store.close()
    writes = [r for r in state.requests if r.path.startswith("/collections/paintings/points")]
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in writes] == [
        ("PUT", "points"),  # the 3 artworks
        ("POST", "delete"),  # their old regions
        ("PUT", "points"),  # their 9 regions, 4 a request
        ("PUT", "points"),
        ("PUT", "points"),
    ]
    artworks, deleted, *regions = (r.body for r in writes)
    assert [p["id"] for p in artworks["points"]] == [point_id(f"r{i}") for i in range(3)]
    assert artworks["points"][0]["vector"] == {"": basis(0).tolist()}
    condition = deleted["filter"]["must"][0]
    assert (condition["key"], condition["match"]["any"]) == ("region_of", ["r0", "r1", "r2"])
    region_points = [p for body in regions for p in body["points"]]
    assert [len(body["points"]) for body in regions] == [4, 4, 1]
    assert all(set(p["vector"]) == {"regions"} for p in region_points)
    assert region_points[0]["payload"] == {
        "region_of": "r0",
        "artist_key": artist_key("Hokusai"),
        "style": "ukiyo-e",
        "genre": "",
        "year": 1830,
    }
    assert len({p["id"] for p in region_points} | {point_id(f"r{i}") for i in range(3)}) == 12


# --- metadata edits on a server -----------------------------------------------------------------------


async def test_an_edit_is_one_request_of_per_key_payload_operations_then_the_regions(
    scripted: tuple[ScriptedQdrant, str],
) -> None:
    state, url = scripted
    store = await _server_store(url)
    stored = {"id": point_id("a"), "payload": to_payload(ArtworkRecord(id="a", extra={"old": "x"}))}
    state.results[("POST", r"/collections/paintings/points")] = [stored]  # what a retrieve finds
    state.results[("POST", r"/collections/paintings/points/batch")] = [
        {"operation_id": 1, "status": "completed"}
    ]
    try:
        await store.upsert("", [item("a", basis(0))])
        changes = MetadataChanges(
            artist="Hokusai", year=0, set_extra={"a.b": "1"}, remove_extra=("old", "x.y")
        )
        updated = await store.update_metadata("", "a", changes)
    finally:
        await store.close()
    assert updated.previous == ArtworkRecord(id="a", extra={"old": "x"})
    (batch,) = state.paths("POST", "/points/batch")
    operations = [
        (kind, {key: value for key, value in body.items() if value is not None})
        for operation in batch.body["operations"]
        for kind, body in operation.items()
    ]
    target = [point_id("a")]
    assert operations == [
        (
            "set_payload",
            {
                "payload": {"artist": "Hokusai", "year": 0, "artist_key": artist_key("Hokusai")},
                "points": target,
            },
        ),
        ("set_payload", {"payload": {"a.b": "1"}, "points": target, "key": "extra"}),
        ("delete_payload", {"keys": ['extra."old"', 'extra."x.y"'], "points": target}),
        # Then the artwork's region points get the new filterable fields.
        (
            "overwrite_payload",
            {
                "payload": {
                    "region_of": "a",
                    "artist_key": artist_key("Hokusai"),
                    "style": "",
                    "genre": "",
                    "year": 0,
                },
                "filter": {"must": [{"key": "region_of", "match": {"any": ["a"]}}]},
            },
        ),
    ]
    assert not state.paths("PUT", "/points")[1:]  # the one upsert above; the edit wrote no point


async def test_an_edit_the_server_finds_no_point_for_is_not_found(
    scripted: tuple[ScriptedQdrant, str],
) -> None:
    state, url = scripted
    store = await _server_store(url)
    stored = {"id": point_id("a"), "payload": to_payload(ArtworkRecord(id="a"))}
    state.results[("POST", r"/collections/paintings/points")] = [stored]
    # Deleted between the read and the write: Qdrant answers 404 for a payload operation on a missing point.
    state.failures[("POST", r"/collections/paintings/points/batch")] = [404]
    try:
        await store.upsert("", [item("a", basis(0))])
        with pytest.raises(NotFound, match="no artwork 'a'"):
            await store.update_metadata("", "a", MetadataChanges(title="back?"))
        state.results[("POST", r"/collections/paintings/points")] = []  # and now the read finds nothing
        with pytest.raises(NotFound, match="no artwork 'a'"):
            await store.update_metadata("", "a", MetadataChanges(title="back?"))
    finally:
        await store.close()
    assert len(state.paths("POST", "/points/batch")) == 1  # a 404 is not retried; a missing point not written
    assert len(state.paths("PUT", "/points")) == 1


# --- retries ----------------------------------------------------------------------------------------


async def test_transient_failures_are_retried(scripted: tuple[ScriptedQdrant, str]) -> None:
    state, url = scripted
    state.failures[("GET", r"/collections/[^/]+/exists")] = [503, 502]
    store = await _server_store(url)
    try:
        assert await store.count("") == 0  # the third try answers
    finally:
        await store.close()
    assert len(state.paths("GET", "/exists")) == 3


async def test_a_lasting_outage_gives_up_after_the_configured_retries(
    scripted: tuple[ScriptedQdrant, str],
) -> None:
    state, url = scripted
    state.failures[("GET", r"/collections/[^/]+/exists")] = [503] * 10
    store = await _server_store(url, retries=2)
    try:
        with pytest.raises(StoreUnavailable, match="HTTP 503"):
            await store.count("")
    finally:
        await store.close()
    assert len(state.paths("GET", "/exists")) == 3


async def test_a_rejected_request_is_not_retried(scripted: tuple[ScriptedQdrant, str]) -> None:
    state, url = scripted
    state.failures[("PUT", r"/collections/[^/]+")] = [400]
    store = await _server_store(url)
    try:
        with pytest.raises(InvalidStoreRequest, match="rejected"):
            await store.upsert("", [item("a", basis(0))])
    finally:
        await store.close()
    assert len(state.paths("PUT", "/collections/paintings")) == 1


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_unreachable_server_raises_store_unavailable() -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    store = await _server_store(url)
    try:
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.count("")
        with pytest.raises(StoreUnavailable):
            await store.upsert("", [item("a", basis(0))])
    finally:
        await store.close()


# --- local mode ---------------------------------------------------------------------------------------


async def test_embedded_storage_is_single_process(tmp_path: Path) -> None:
    first = await QdrantArtworkStore.open(path=tmp_path)
    try:
        with pytest.raises(StoreUnavailable, match="already accessed"):
            await QdrantArtworkStore.open(path=tmp_path)
    finally:
        await first.close()
    second = await QdrantArtworkStore.open(path=tmp_path)  # the lock goes with close()
    await second.close()


async def test_local_mode_has_no_snapshots(tmp_path: Path) -> None:
    store = await QdrantArtworkStore.open(path=tmp_path)
    try:
        await store.upsert("", [item("a", basis(0))])
        with pytest.raises(UnsupportedOperation, match="local mode"):
            await store.create_snapshot("")
        with pytest.raises(UnsupportedOperation):
            await store.restore_snapshot("", "artworks-1-2026-01-01-00-00-00.snapshot")
    finally:
        await store.close()


def test_point_ids_are_deterministic_uuids() -> None:
    assert point_id("hokusai-wave") == point_id("hokusai-wave")
    assert point_id("hokusai-wave") != point_id("hokusai-wave ")
    assert uuid.UUID(point_id("hokusai-wave")).version == 5
    # Pinned: changing the namespace would orphan every stored point.
    assert point_id("hokusai-wave") == str(uuid.uuid5(uuid.uuid5(uuid.NAMESPACE_URL, "urn:artsearch:artwork"),
                                                      "hokusai-wave"))  # fmt: skip


async def test_open_needs_exactly_one_target(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        await QdrantArtworkStore.open()
    with pytest.raises(ValueError, match="exactly one"):
        await QdrantArtworkStore.open(path=tmp_path, location=":memory:")


# --- a real server ----------------------------------------------------------------------------------


@pytest.mark.slow
async def test_server_collection_layout_and_snapshot(qdrant_server_url: str) -> None:
    from qdrant_client import AsyncQdrantClient

    name = f"t_{uuid.uuid4().hex[:12]}"
    settings = QdrantServerSettings(shard_number=2, quantization=True)
    store = await QdrantArtworkStore.open(url=qdrant_server_url, default_collection=name, settings=settings)
    other = AsyncQdrantClient(url=qdrant_server_url)
    try:
        await store.upsert("", [item("a", basis(0)), item("b", basis(1))])
        info = await other.get_collection(name)
        assert info.config.params.shard_number == 2
        assert info.config.quantization_config is not None
        assert set(info.payload_schema) == {
            "id",
            "artist_key",
            "style",
            "genre",
            "extra.style_labels",
            "region_of",
            "year",
        }
        snapshot = await store.create_snapshot("")
        await store.delete("", ["a"])
        assert await store.restore_snapshot("", snapshot.name) == 2
    finally:
        await other.close()
        await store.close()


@pytest.mark.slow
async def test_collection_deleted_by_another_client_reads_empty_then_is_recreated(
    qdrant_server_url: str,
) -> None:
    from qdrant_client import AsyncQdrantClient

    name = f"t_{uuid.uuid4().hex[:12]}"
    store = await QdrantArtworkStore.open(url=qdrant_server_url, default_collection=name)
    other = AsyncQdrantClient(url=qdrant_server_url)
    try:
        await store.upsert("", [item("a", basis(0)), item("b", basis(1))])
        assert await store.count("") == 2
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
