"""The package on its own: what it imports, the two clients' API, how calls are sent, how answers are read
(against the scripted server of scripted_server.py)."""

from __future__ import annotations

import ast
import inspect
import json
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from scripted_server import Answer, ScriptedServer

import artsearch_client
from artsearch_client import (
    ArtsearchClient,
    AsyncArtsearchClient,
    Gone,
    NewArtwork,
    NewInfluence,
    PictureExpired,
    SearchResponse,
)

PACKAGE = Path(artsearch_client.__file__).parent


def _imported_top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_the_package_imports_only_httpx_and_the_standard_library():
    imported = set().union(*(_imported_top_level_names(p) for p in PACKAGE.rglob("*.py")))
    foreign = imported - set(sys.stdlib_module_names) - {"httpx", "artsearch_client", "__future__"}
    assert not foreign, f"artsearch_client imports {sorted(foreign)}: its only dependency is httpx"


def test_the_sync_and_async_clients_offer_the_same_calls():
    def calls(kind: type) -> dict[str, inspect.Signature]:
        return {
            name: inspect.signature(member)
            for name, member in vars(kind).items()
            if callable(member) and not name.startswith("_")
        }

    sync, asynchronous = calls(ArtsearchClient), calls(AsyncArtsearchClient)
    assert sync.keys() == asynchronous.keys()
    for name in sync:
        assert list(sync[name].parameters) == list(asynchronous[name].parameters), name
        if name not in ("iter_artworks",):
            assert inspect.iscoroutinefunction(getattr(AsyncArtsearchClient, name)), name


def test_search_parameters_go_as_the_gateway_reads_them(server: ScriptedServer):
    server.then(Answer.json(200, {"results": [], "source_artist": {"how": "none"}}))
    server.then(Answer.json(200, {"results": [], "source_artist": {"how": "none"}}))
    with ArtsearchClient(server.url, api_key="the-key") as client:
        client.similar(
            "a/b c",
            k=5,
            rerank=False,
            w_style=0.6,
            filter_style=["Ukiyo-e", "Impressionism"],
            filter_artist="Hokusai",
            year_max=1850,
        )
        client.search_url(
            "https://example.org/wave.jpg", k=3, filter_genre="landscape", exclude_same_artist=True
        )
        with pytest.raises(TypeError, match="unknown search parameters"):
            client.search(b"x", colour_weight=1)  # type: ignore[call-arg]
    similar, by_url = server.received
    path = urlsplit(similar.path)
    assert path.path == "/v1/artworks/a%2Fb%20c/similar"
    assert parse_qsl(path.query) == [
        ("k", "5"),
        ("rerank", "false"),
        ("w_style", "0.6"),
        ("filter_style", "Ukiyo-e"),
        ("filter_style", "Impressionism"),
        ("filter_artist", "Hokusai"),
        ("year_max", "1850"),
    ]
    assert json.loads(by_url.body) == {
        "url": "https://example.org/wave.jpg",
        "k": 3,
        "filter_genre": ["landscape"],
        "exclude_same_artist": True,
    }
    # The key goes only where it is needed.
    assert "x-api-key" not in similar.headers and "x-api-key" not in by_url.headers


def test_admin_calls_carry_the_key_and_the_metadata(server: ScriptedServer, tmp_path: Path):
    picture = tmp_path / "wave.png"
    picture.write_bytes(b"\x89PNG fake bytes")
    server.then(Answer.json(201, {"artwork": {"id": "w", "title": "Wave"}, "degraded": []}))
    server.then(Answer.json(200, {"added": 2, "rejected": 0, "results": [], "degraded": []}))
    server.then(Answer.json(200, {"artwork": {"id": "w", "title": "Wave", "year": None}, "degraded": []}))
    server.then(Answer(204, b""))
    server.then(Answer.json(200, {"artists_added": 1, "influences_added": 1}))
    with ArtsearchClient(server.url, api_key="the-key") as client:
        client.add_artwork(picture, "Wave", id="w", year=1831, extra={"museum": "Met"}, replace=True)
        client.add_artworks([NewArtwork(picture, "One"), NewArtwork(b"\x89PNG 2", "Two", filename="two.png")])
        client.edit_artwork("w", year=None, extra={"museum": None})
        assert client.delete_artwork("w") is None
        client.add_influences([NewInfluence("Hokusai", "Van Gogh", source="Van Gogh Museum")])
    added, batch, edit, delete, influences = server.received
    assert all(r.headers["x-api-key"] == "the-key" for r in server.received)
    assert added.path == "/v1/artworks?replace=true" and b'filename="wave.png"' in added.body
    for field, value in (
        ("title", b"Wave"),
        ("id", b"w"),
        ("year", b"1831"),
        ("extra", b'{"museum": "Met"}'),
    ):
        assert f'name="{field}"'.encode() in added.body and value in added.body
    assert b'"filename": "wave.png"' in batch.body and b'"filename": "two.png"' in batch.body
    assert (edit.method, json.loads(edit.body)) == ("PATCH", {"year": None, "extra": {"museum": None}})
    assert (delete.method, delete.path) == ("DELETE", "/v1/artworks/w")
    assert json.loads(influences.body)["influences"][0]["relation"] == "influenced"


def test_a_gateway_not_ready_is_an_answer_not_an_error(server: ScriptedServer):
    body = {"ready": False, "services": {"encoder": False, "search": True, "influence": True}, "degraded": []}
    server.then(Answer.json(503, body))
    with ArtsearchClient(server.url) as client:
        readiness = client.readiness()
    assert readiness.ready is False and readiness.services["encoder"] is False


def test_answers_keep_fields_a_newer_gateway_adds():
    answer = SearchResponse.from_json(
        {
            "results": [
                {"id": "a", "title": "A", "score": 1.0, "scores": {"visual": 1.0, "novel": 7}, "new": 1}
            ],
            "source_artist": {"name": None, "how": "none"},
            "next_cursor": "abc",
            "brand_new_section": {"x": 1},
        }
    )
    assert answer.raw["brand_new_section"] == {"x": 1} and answer.next_cursor == "abc"
    assert answer.results[0].raw["new"] == 1 and answer.results[0].scores.raw["novel"] == 7
    assert answer.style_prediction is None and answer.degraded == []


def test_a_batch_needs_one_file_name_per_image():
    with ArtsearchClient("http://127.0.0.1:9") as client, pytest.raises(ValueError, match="file name"):
        client.add_artworks(
            [NewArtwork(b"1", "A", filename="x.jpg"), NewArtwork(b"2", "B", filename="x.jpg")]
        )


PICTURE_ID = "ab" * 32 + "-a"
EXPIRED = {"error": {"code": "picture_expired", "message": "picture_id: no longer kept"}}


def test_a_picture_is_searched_again_by_its_id_and_sent_again_once_expired(server: ScriptedServer):
    answer = {"results": [], "source_artist": {"how": "none"}, "picture_id": PICTURE_ID}
    server.then(Answer.json(200, answer))
    server.then(Answer.json(410, EXPIRED))
    server.then(Answer.json(410, EXPIRED))
    server.then(Answer.json(200, answer))
    with ArtsearchClient(server.url) as client:
        again = client.search_by_picture_id(PICTURE_ID, w_style=0.9, filter_artist="Hokusai")
        assert again.picture_id == PICTURE_ID
        with pytest.raises(PictureExpired) as expired:
            client.search_by_picture_id(PICTURE_ID, k=3)
        assert isinstance(expired.value, Gone) and expired.value.code == "picture_expired"
        assert expired.value.attempts == 1  # a 410 is an answer: not retried
        resent = client.search_or_resend(PICTURE_ID, b"\xff\xd8 the picture", k=3)
        assert resent.picture_id == PICTURE_ID
    by_id, _expired, expired_again, upload = server.received
    assert json.loads(by_id.body) == {"picture_id": PICTURE_ID, "w_style": 0.9, "filter_artist": ["Hokusai"]}
    assert json.loads(expired_again.body) == {"picture_id": PICTURE_ID, "k": 3}
    assert upload.path == "/v1/search?k=3" and b"the picture" in upload.body  # sent again, as an upload


async def test_the_async_client_searches_by_picture_id_too(server: ScriptedServer):
    server.then(Answer.json(410, EXPIRED))
    server.then(Answer.json(200, {"results": [], "source_artist": {"how": "none"}, "picture_id": None}))
    async with AsyncArtsearchClient(server.url) as client:
        answer = await client.search_or_resend(PICTURE_ID, b"\xff\xd8 picture", w_colour=0)
    assert answer.picture_id is None
    by_id, upload = server.received
    assert json.loads(by_id.body) == {"picture_id": PICTURE_ID, "w_colour": 0}
    assert upload.path == "/v1/search?w_colour=0" and b"picture" in upload.body
