"""The public search API of the gateway, driven through its ASGI app against the real encoder (the exported
model in onnxruntime), search (embedded engine) and influence (curated graph) gRPC services in-process,
over a dozen real catalogue paintings."""

from __future__ import annotations

import io
import struct
import threading
import zlib
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
import pytest_asyncio
from gateway_support import (
    catalogue_subset,
    gateway_client,
    gateway_config,
    image_of,
    ingested_services,
)
from test_gateway_openapi_contract import contract_client

from artsearch.descriptor_layout import DescriptorLayout, aspect_similarities
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import RPC_STARTED
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue
from services.gateway.app import create_app

pytestmark = pytest.mark.slow

VAN_GOGH = ["van-gogh-bedroom-in-arles", "van-gogh-cafe-terrace-at-night", "van-gogh-the-harvest",
            "van-gogh-the-church-at-auvers-sur-oise"]  # fmt: skip
HOKUSAI = ["hokusai-the-great-wave-off-kanagawa", "hokusai-poppies", "hokusai-oiran-and-kamuro"]
OTHERS = ["hiroshige-horse-mackerel-and-prawn", "gauguin-arearea", "kandinsky-composition-viii",
          "renoir-bal-du-moulin-de-la-galette", "degas-the-dance-class"]  # fmt: skip
IDS = VAN_GOGH + HOKUSAI + OTHERS
BEDROOM = VAN_GOGH[0]
UNLABELLED = "unlabelled"


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    subset = catalogue_subset(gcompris_catalogue, IDS)
    assert sorted(e.id for e in subset.entries) == sorted(IDS)
    return subset


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    """The three services in-process, the catalogue subset ingested."""
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("services")) as addresses:
        await _copy_without_styles(addresses["SEARCH_ADDR"], ["hokusai-poppies", "gauguin-arearea"])
        yield addresses


async def _copy_without_styles(address: str, ids: list[str]) -> None:
    """A second collection whose artworks carry no style label."""
    async with open_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        found = await stub.Get(search_pb2.GetRequest(ids=ids, with_embeddings=True), timeout=10)
        for item in found.items:
            item.artwork.style = ""
        await stub.Upsert(search_pb2.UpsertRequest(collection=UNLABELLED, items=found.items), timeout=10)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(services: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway with URL fetching from 127.0.0.1 allowed (the test image server runs there); every 2xx
    answer it gets is checked against the response model /openapi.json declares for it."""
    app = create_app(gateway_config(services, URL_FETCH_ALLOW_PRIVATE="true"))
    async with gateway_client(app) as http:
        contract_client(http, app)
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def strict_client(services: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway as deployed: private addresses refused."""
    async with gateway_client(create_app(gateway_config(services))) as http:
        yield http


@pytest.fixture(scope="module")
def image_server(catalogue: Catalogue) -> Iterator[str]:
    """Serves /<id>.jpg for the catalogue subset on 127.0.0.1, plus /page.html."""
    files = {f"/{artwork_id}.jpg": image_of(catalogue, artwork_id) for artwork_id in IDS}

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_GET(self) -> None:
            body, kind = files.get(self.path), "image/jpeg"
            if body is None:
                body, kind = b"<html>hello</html>", "text/html"
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


async def upload(
    client: httpx.AsyncClient, image: bytes, route: str = "/v1/search", **params
) -> httpx.Response:
    return await client.post(route, params=params, files={"image": ("query.jpg", image, "image/jpeg")})


async def search_ok(client: httpx.AsyncClient, image: bytes, **params) -> dict:
    reply = await upload(client, image, **params)
    assert reply.status_code == 200, reply.text
    return reply.json()


def ids_of(answer: dict) -> list[str]:
    return [r["id"] for r in answer["results"]]


def assert_error(reply: httpx.Response, status: int, code: str, mentions: str = "") -> None:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code, error
    assert mentions.lower() in error["message"].lower(), error


# --- search by upload -------------------------------------------------------------------------------------


async def test_upload_finds_itself_first_and_explains_every_result(client, catalogue):
    answer = await search_ok(client, image_of(catalogue, BEDROOM), k=len(IDS))
    top = answer["results"][0]
    assert top["id"] == BEDROOM and top["artist"] == "Vincent van Gogh"
    assert top["scores"]["visual"] == pytest.approx(1.0, abs=2e-3)
    assert top["image_url"] == f"/v1/artworks/{BEDROOM}/image"
    assert top["thumbnail_url"] == f"/v1/artworks/{BEDROOM}/thumbnail"
    source = answer["source_artist"]
    assert {name: source[name] for name in ("name", "key", "how", "in_influence_graph", "method")} == {
        "name": "Vincent van Gogh",
        "key": "vincent van gogh",
        "how": "inferred",
        "in_influence_graph": True,
        "method": "vote",
    }
    # The painting itself is far more similar than the rest: nearly all of the vote (and of the lead).
    assert source["confidence"] > 0.99 and source["voters"] == 10
    assert source["applied_confidence"] == pytest.approx(source["confidence"] - source["runner_up"]["share"])
    assert source["applied_confidence"] > 0.99
    weights = answer["weights"]
    assert set(weights) == {"content", "style", "colour", "influence"} and weights["influence"] == 1.0
    assert weights["content"] + weights["style"] + weights["colour"] == pytest.approx(1.0)
    assert answer["style_prediction"]["label"] == "Post-Impressionism"
    assert answer["degraded"] == [] and {"encode", "search", "influence"} <= answer["timings_ms"].keys()
    assert answer["model"]["name"]
    scores = [r["score"] for r in answer["results"]]
    assert scores == sorted(scores, reverse=True)
    for result in answer["results"]:
        s = result["scores"]
        # The fused visual score is the weighted sum of the per-aspect similarities.
        fused = sum(weights[a] * s[a] for a in ("content", "style", "colour"))
        assert s["visual"] == pytest.approx(fused, abs=3e-3), result["id"]
        assert (
            s["final"]
            == result["score"]
            == pytest.approx(s["visual"] * (1 + s["influence_weight"]), abs=1e-5)
        )


async def test_explanations_carry_hops_penalties_and_influence_paths(client, catalogue):
    # The seed system's inference (confidence 1): the brief's formula exactly.
    answer = await search_ok(
        client, image_of(catalogue, BEDROOM), k=len(IDS), pool=len(IDS), source_inference="nearest"
    )
    assert answer["source_artist"]["method"] == "nearest" and answer["source_artist"]["confidence"] == 1.0
    by_artist: dict[str, list[dict]] = {}
    for result in answer["results"]:
        by_artist.setdefault(result["artist"], []).append(result)
    van_gogh = sorted(by_artist["Vincent van Gogh"], key=lambda r: r["scores"]["visual"], reverse=True)
    assert [r["scores"]["same_artist_rank"] for r in van_gogh] == [0, 1, 2, 3]
    assert [r["scores"]["same_artist_penalty"] for r in van_gogh] == [1.0, 0.5, 0.25, 0.125]
    assert all(
        r["scores"]["influence_hops"] == 0 and r["influence_path"] == ["Vincent van Gogh"] for r in van_gogh
    )
    for hokusai in by_artist["Katsushika Hokusai"]:
        assert hokusai["scores"]["influence_hops"] == 1 and hokusai["scores"]["same_artist_penalty"] is None
        assert hokusai["influence_path"] == ["Vincent van Gogh", "Katsushika Hokusai"]
        assert hokusai["scores"]["influence_weight"] == 1.0
    for result in answer["results"]:
        hops, path = result["scores"]["influence_hops"], result["influence_path"]
        if hops is None:
            assert path is None and result["scores"]["influence_weight"] == pytest.approx(0.01)
        else:
            assert len(path) == hops + 1 and path[0] == "Vincent van Gogh" and path[-1] == result["artist"]


async def test_explicit_source_artist_by_query_or_old_form_field(client, catalogue):
    image = image_of(catalogue, "hokusai-the-great-wave-off-kanagawa")
    answer = await search_ok(client, image, k=5, source_artist="Van Gogh")
    assert (
        answer["source_artist"]["how"] == "explicit" and answer["source_artist"]["key"] == "vincent van gogh"
    )
    form = await client.post("/v1/search", files={"image": ("q.jpg", image)}, data={"artist": "Claude Monet"})
    assert form.status_code == 200, form.text
    assert form.json()["source_artist"]["name"] == "Claude Monet"
    assert form.json()["source_artist"]["how"] == "explicit"


async def test_influence_weight_scales_the_boost(client, catalogue):
    image = image_of(catalogue, BEDROOM)
    off = await search_ok(client, image, k=len(IDS), influence_weight=0)
    visual = [r["scores"]["visual"] for r in off["results"]]
    assert visual == sorted(visual, reverse=True), "weight 0 keeps the visual order"
    assert all(
        r["score"] == r["scores"]["visual"] and r["scores"]["influence_weight"] == 0 for r in off["results"]
    )
    double = await search_ok(client, image, k=len(IDS), influence_weight=2.5)
    assert double["weights"]["influence"] == 2.5
    # The boost is scaled by the vote's confidence c: final = visual * (1 + 2.5 * c * w_i).
    c = double["source_artist"]["applied_confidence"]
    for result in double["results"]:
        s = result["scores"]
        w_i = s["same_artist_penalty"] or (1 / s["influence_hops"] if s["influence_hops"] else 0.01)
        assert s["influence_weight"] == pytest.approx(2.5 * c * w_i, abs=1e-5)
        assert s["final"] == pytest.approx(s["visual"] * (1 + 2.5 * c * w_i), abs=1e-5)
    no_rerank = await search_ok(client, image, k=len(IDS), rerank="false")
    assert [r["score"] for r in no_rerank["results"]] == [r["scores"]["visual"] for r in no_rerank["results"]]


async def test_aspect_scores_are_the_exact_per_aspect_cosines(client, catalogue, services) -> None:
    """The search service scores candidates on each aspect without shipping their vectors (part
    projections); the gateway's per-aspect figures must equal the cosines computed from the vectors."""
    image = image_of(catalogue, "hokusai-poppies")
    answer = await search_ok(client, image, k=len(IDS), rerank="false")
    async with open_channel(services["ENCODER_ADDR"]) as encoder_channel:
        encoded = await encoder_pb2_grpc.EncoderServiceStub(encoder_channel).Encode(
            encoder_pb2.EncodeRequest(images=[image]), timeout=30
        )
    layout = DescriptorLayout.from_model_info(encoded.model)
    query = np.asarray(encoded.embeddings[0].values, dtype=np.float32)
    async with open_channel(services["SEARCH_ADDR"]) as search_channel:
        stored = await search_pb2_grpc.SearchServiceStub(search_channel).Get(
            search_pb2.GetRequest(ids=ids_of(answer), with_embeddings=True), timeout=10
        )
    vectors = {item.artwork.id: np.asarray(item.embedding.values, dtype=np.float32) for item in stored.items}
    assert len(vectors) == len(IDS)
    for result in answer["results"]:
        exact = aspect_similarities(query, vectors[result["id"]], layout)
        for aspect in layout.names:
            assert result["scores"][aspect] == pytest.approx(float(exact[aspect]), abs=2e-3), (
                result["id"],
                aspect,
            )


async def test_aspect_weights_change_scores_and_order(client, catalogue):
    image = image_of(catalogue, "hokusai-poppies")
    default = await search_ok(client, image, k=len(IDS), rerank="false")
    colour = await search_ok(client, image, k=len(IDS), rerank="false", w_content=0, w_style=0, w_colour=3)
    assert colour["weights"] == {"content": 0.0, "style": 0.0, "colour": 1.0, "influence": 1.0}
    by_id = {result["id"]: result["scores"] for result in default["results"]}
    for result in colour["results"]:
        assert result["scores"]["visual"] == pytest.approx(result["scores"]["colour"], abs=3e-3)
        # Aspects weighted 0 are still explained, as in the default search.
        for aspect in ("content", "style", "colour"):
            assert result["scores"][aspect] == pytest.approx(by_id[result["id"]][aspect], abs=1e-5)
    assert ids_of(colour) != ids_of(default)
    style_only = await search_ok(client, image, k=3, w_style=1, w_content=0, w_colour=0)
    assert style_only["weights"]["style"] == 1.0
    # One weight alone keeps the encoder's defaults for the others (normalised to sum 1).
    partial = await search_ok(client, image, k=3, w_style=0.5)
    defaults = default["weights"]
    expected = 0.5 / (defaults["content"] + 0.5 + defaults["colour"])
    assert partial["weights"]["style"] == pytest.approx(expected, abs=1e-6)


def encodes_handled() -> float:
    """Encode RPCs the in-process encoder has answered (artsearch.grpc_server's counter)."""
    # Started, not handled: a photo searched with its analysis is encoded in stages (EncodeInStages), a call
    # that may end after the answer (a whole photo matched with confidence); any other picture by Encode.
    return sum(
        RPC_STARTED.labels(f"/artsearch.v1.EncoderService/{method}")._value.get()
        for method in ("Encode", "EncodeInStages")
    )


async def test_the_same_picture_sent_again_is_not_encoded_again(services, catalogue):
    """Moving a weight slider sends the same picture with new weights: its encoding is kept (query_cache.py),
    the answer is the one the new weights give."""
    image = image_of(catalogue, "gauguin-arearea")
    async with gateway_client(create_app(gateway_config(services))) as http:
        before = encodes_handled()
        first = await search_ok(http, image, k=4, rerank="false")
        colour = await search_ok(http, image, k=4, rerank="false", w_content=0, w_style=0, w_colour=1)
        assert encodes_handled() == before + 1
        assert "encode" in first["timings_ms"] and "encode" not in colour["timings_ms"]
        assert colour["weights"]["colour"] == 1.0
        assert [r["scores"]["visual"] for r in colour["results"]] == pytest.approx(
            [r["scores"]["colour"] for r in colour["results"]], abs=3e-3
        )
        await search_ok(http, image + b"\0", k=4)  # other bytes: encoded
        await search_ok(http, image, k=4, locate="off", grey="off")  # not analysed: another entry
        assert encodes_handled() == before + 3
        await upload(http, image, route="/v1/predict-style")  # the not-analysed entry again
        assert encodes_handled() == before + 3
    async with gateway_client(create_app(gateway_config(services, QUERY_CACHE_ENTRIES="0"))) as http:
        await search_ok(http, image, k=4)
        await search_ok(http, image, k=4)
        assert encodes_handled() == before + 5


async def test_filters_on_artist_style_genre_and_years(client, catalogue):
    image = image_of(catalogue, BEDROOM)
    hokusai = await search_ok(client, image, filter_artist="hokusai")
    assert ids_of(hokusai) and {r["artist"] for r in hokusai["results"]} == {"Katsushika Hokusai"}
    two = await client.post(
        "/v1/search",
        params=[("filter_style", "Ukiyo-e"), ("filter_style", "Impressionism"), ("k", "25")],
        files={"image": ("q.jpg", image)},
    )
    assert {r["style"] for r in two.json()["results"]} == {"Ukiyo-e", "Impressionism"}
    years = await search_ok(client, image, year_min=1885, year_max=1889)
    assert ids_of(years) and all(1885 <= r["year"] <= 1889 for r in years["results"])
    early = await search_ok(client, image, year_max=1850)
    assert all(r["year"] and r["year"] <= 1850 for r in early["results"])
    assert sorted(ids_of(early)) == ["hiroshige-horse-mackerel-and-prawn", "hokusai-poppies",
                                     "hokusai-the-great-wave-off-kanagawa"]  # fmt: skip
    portraits = await search_ok(client, image, filter_genre="portrait")
    assert all(r["genre"] == "portrait" for r in portraits["results"])
    nothing = await search_ok(client, image, filter_artist="Nobody At All")
    assert nothing["results"] == [] and nothing["candidates"] == 0


async def test_exclude_same_artist_uses_the_inferred_or_explicit_source(client, catalogue):
    image = image_of(catalogue, BEDROOM)
    answer = await search_ok(client, image, k=len(IDS), exclude_same_artist="true")
    assert answer["source_artist"]["name"] == "Vincent van Gogh"
    assert answer["results"] and all(r["artist"] != "Vincent van Gogh" for r in answer["results"])
    assert answer["candidates"] == len(IDS) - len(VAN_GOGH)
    explicit = await search_ok(client, image, k=len(IDS), exclude_same_artist="true", source_artist="Hokusai")
    artists = {r["artist"] for r in explicit["results"]}
    assert "Katsushika Hokusai" not in artists and "Vincent van Gogh" in artists


async def test_pages_follow_each_other(client, catalogue):
    image = image_of(catalogue, "renoir-bal-du-moulin-de-la-galette")
    whole = await search_ok(client, image, k=9, pool=12)
    first = await search_ok(client, image, k=3, offset=0, pool=12)
    second = await search_ok(client, image, k=3, offset=3, pool=12)
    third = await search_ok(client, image, k=3, offset=6, pool=12)
    assert ids_of(first) + ids_of(second) + ids_of(third) == ids_of(whole)
    assert (second["offset"], second["k"], second["pool"]) == (3, 3, 12)
    raised = await search_ok(client, image, k=5, offset=8, pool=2)
    assert raised["pool"] == 13 and len(raised["results"]) == len(IDS) - 8


# --- search by URL ----------------------------------------------------------------------------------------


async def test_json_url_search_with_body_parameters(client, image_server):
    reply = await client.post(
        "/v1/search",
        params={"k": 10},
        json={"url": f"{image_server}/{HOKUSAI[0]}.jpg", "k": 4, "filter_style": ["Ukiyo-e"], "w_style": 0.6},
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert ids_of(answer)[0] == HOKUSAI[0] and answer["k"] == 4 and len(answer["results"]) == 4
    assert {r["style"] for r in answer["results"]} == {"Ukiyo-e"}
    assert "fetch" in answer["timings_ms"]


async def test_url_errors(client, strict_client, image_server):
    image_url = f"{image_server}/{HOKUSAI[0]}.jpg"
    assert_error(
        await strict_client.post("/v1/search", json={"url": image_url}), 400, "url_forbidden", "loopback"
    )
    metadata = "http://169.254.169.254/latest/meta-data/"
    assert_error(await client.post("/v1/search", json={"url": metadata}), 400, "url_forbidden", "metadata")
    assert_error(await client.post("/v1/search", json={"url": "file:///etc/passwd"}), 400, "invalid_url")
    html = await client.post("/v1/search", json={"url": f"{image_server}/page.html"})
    assert_error(html, 415, "unsupported_media_type", "text/html")
    assert_error(
        await client.post("/v1/search", json={"url": image_url, "k": 0}), 422, "invalid_parameter", "k"
    )
    unknown_field = await client.post("/v1/search", json={"url": image_url, "colour": 1})
    assert_error(unknown_field, 422, "invalid_request", "colour")
    assert_error(await client.post("/v1/search", json={"uri": image_url}), 422, "invalid_request", "url")
    bad_json = await client.post(
        "/v1/search", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_error(bad_json, 422, "invalid_request")
    text = await client.post("/v1/search", content=b"hello", headers={"content-type": "text/plain"})
    assert_error(text, 415, "unsupported_media_type")


# --- similar, one artwork ---------------------------------------------------------------------------------


async def test_similar_leaves_the_artwork_out_and_uses_its_artist(client):
    reply = await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"k": 5})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert BEDROOM not in ids_of(answer) and len(answer["results"]) == 5
    assert answer["source_artist"]["how"] == "artwork"
    assert answer["source_artist"]["name"] == "Vincent van Gogh"
    assert "encode" not in answer["timings_ms"]
    excluded = await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"exclude_same_artist": "true"})
    assert all(r["artist"] != "Vincent van Gogh" for r in excluded.json()["results"])
    styled = await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"filter_style": "Ukiyo-e", "k": 2})
    assert [r["style"] for r in styled.json()["results"]] == ["Ukiyo-e", "Ukiyo-e"]


async def test_similar_matches_a_search_by_the_same_image(client, catalogue):
    # Visual order: with the re-rank, the same-artist penalty counts the artwork itself in one, not the other.
    by_upload = await search_ok(client, image_of(catalogue, BEDROOM), k=6, rerank="false")
    by_id = (await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"k": 5, "rerank": "false"})).json()
    assert ids_of(by_upload)[0] == BEDROOM and ids_of(by_upload)[1:] == ids_of(by_id)
    for from_upload, from_id in zip(by_upload["results"][1:], by_id["results"], strict=True):
        assert from_upload["scores"]["visual"] == pytest.approx(from_id["scores"]["visual"], abs=3e-3)


async def test_one_artwork_and_unknown_ids(client):
    reply = await client.get("/v1/artworks/hokusai-the-great-wave-off-kanagawa")
    assert reply.status_code == 200
    assert reply.json()["title"] == "The Great Wave off Kanagawa" and reply.json()["year"] == 1831
    assert_error(await client.get("/v1/artworks/no-such-artwork"), 404, "not_found", "no-such-artwork")
    assert_error(await client.get("/v1/artworks/no-such-artwork/similar"), 404, "not_found")


# --- style prediction -------------------------------------------------------------------------------------


async def test_predict_style_by_upload_and_url(client, catalogue, image_server):
    reply = await upload(
        client, image_of(catalogue, "hokusai-the-great-wave-off-kanagawa"), "/v1/predict-style"
    )
    assert reply.status_code == 200, reply.text
    style = reply.json()["style"]
    assert style["label"] == "Ukiyo-e" and 0 < style["confidence"] <= 1
    assert style["top"][0] == {"label": "Ukiyo-e", "score": style["confidence"]} and len(style["top"]) == 3
    assert reply.json()["neighbours"][0]["id"] == "hokusai-the-great-wave-off-kanagawa"
    by_url = await client.post("/v1/predict-style", json={"url": f"{image_server}/{VAN_GOGH[1]}.jpg"})
    assert by_url.status_code == 200, by_url.text
    assert by_url.json()["style"]["label"] == "Post-Impressionism"
    assert_error(await client.post("/v1/predict-style", json={"url": "gopher://x"}), 400, "invalid_url")


async def test_predict_style_is_unknown_without_labels(services, catalogue):
    async with gateway_client(
        create_app(gateway_config(services, SEARCH_COLLECTION=UNLABELLED))
    ) as unlabelled:
        reply = await upload(unlabelled, image_of(catalogue, "hokusai-poppies"), "/v1/predict-style")
        style = reply.json()["style"]
        assert {name: style[name] for name in ("label", "confidence", "top", "voters")} == {
            "label": "unknown",
            "confidence": 0.0,
            "top": [],
            "voters": 0,
        }


# --- bad requests -----------------------------------------------------------------------------------------


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"k": 0}, "k"),
        ({"k": 1000}, "k"),
        ({"k": "many"}, "k"),
        ({"pool": 0}, "pool"),
        ({"offset": -1}, "offset"),
        ({"offset": 990, "k": 20}, "offset"),
        ({"w_style": -1}, "w_style"),
        ({"w_colour": "inf"}, "w_colour"),
        ({"influence_weight": 1000}, "influence_weight"),
        ({"year_min": 1900, "year_max": 1800}, "year_min"),
        ({"w_content": 0, "w_style": 0, "w_colour": 0}, "positive"),
    ],
)
async def test_bad_parameters_are_422(client, catalogue, params, mentions):
    reply = await upload(client, image_of(catalogue, BEDROOM), **params)
    assert reply.status_code == 422, reply.text
    assert mentions in reply.json()["error"]["message"]


async def test_bad_uploads(client):
    assert_error(await upload(client, b"just some text, not a picture"), 415, "unsupported_media_type")
    assert_error(await upload(client, b""), 400, "invalid_image", "empty")
    assert_error(await upload(client, png_header_only(10_000, 10_000)), 413, "too_many_pixels", "10000x10000")
    tiny = io.BytesIO()
    from PIL import Image

    Image.new("RGB", (1, 1)).save(tiny, "PNG")
    assert_error(await upload(client, tiny.getvalue()), 400, "invalid_image")  # the encoder's own check
    missing = await client.post("/v1/search", data={"nothing": "here"})
    assert_error(missing, 422, "invalid_request", "image")
    assert_error(await upload(client, b"x", "/v1/predict-style"), 415, "unsupported_media_type")


async def test_openapi_documents_both_request_bodies(client):
    spec = (await client.get("/openapi.json")).json()
    search = spec["paths"]["/v1/search"]["post"]
    content = search["requestBody"]["content"]
    # The picture itself, or the picture_id of a previous answer (tests/services/test_gateway_picture_id.py),
    # or the cursor of a previous answer for its next page (tests/services/test_gateway_post_cursor.py).
    one_of = [{"required": [picture]} for picture in ("image", "picture_id", "cursor")]
    assert content["multipart/form-data"]["schema"]["oneOf"] == one_of
    assert content["application/json"]["schema"]["oneOf"] == [{"required": ["url"]}, *one_of[1:]]
    assert content["application/json"]["examples"]["by_url"]["value"]["url"].startswith("https://")
    names = {p["name"] for p in search["parameters"]}
    assert {"k", "offset", "pool", "rerank", "influence_weight", "source_artist", "w_content", "w_style",
            "w_colour", "filter_artist", "filter_style", "filter_genre", "year_min", "year_max",
            "exclude_same_artist"} <= names  # fmt: skip
    similar = spec["paths"]["/v1/artworks/{artwork_id}/similar"]["get"]
    assert names <= {p["name"] for p in similar["parameters"]}
    assert "application/json" in spec["paths"]["/v1/predict-style"]["post"]["requestBody"]["content"]


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


async def test_openapi_operation_ids_are_the_handlers_names(client):
    """The contract client generators build method names from: changing one is a breaking change."""
    spec = (await client.get("/openapi.json")).json()
    ids = {
        f"{method.upper()} {path}": operation["operationId"]
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
    }
    assert ids == {
        "GET /healthz": "healthz",
        "GET /readyz": "readyz",
        "POST /v1/search": "search",
        "GET /v1/search": "search_page",
        "POST /v1/search/batch": "search_batch",
        "GET /v1/artworks/{artwork_id}/similar": "similar",
        "GET /v1/artworks/{artwork_id}": "artwork",
        "PATCH /v1/artworks/{artwork_id}": "edit_artwork",
        "DELETE /v1/artworks/{artwork_id}": "delete_artwork",
        "POST /v1/predict-style": "predict_style",
        "GET /v1/artworks/{artwork_id}/image": "artwork_image",
        "GET /v1/artworks/{artwork_id}/thumbnail": "artwork_thumbnail",
        "GET /v1/clusters": "list_clusters",
        "GET /v1/clusters/{cluster}": "cluster_members",
        "GET /v1/evaluation/pictures": "evaluation_pictures",
        "GET /v1/evaluation/pictures/{name}": "evaluation_picture",
        "GET /v1/artworks": "list_artworks",
        "POST /v1/artworks": "add_artwork",
        "POST /v1/artworks/batch": "add_artworks",
        "GET /v1/artists": "list_artists",
        "POST /v1/artists": "add_artists",
        "GET /v1/artists/path": "artist_path",
        "GET /v1/artists/{name}/neighbours": "artist_neighbours",
        "POST /v1/influences": "add_influences",
    }


async def test_openapi_declares_our_error_body_for_every_error_answer(client):
    spec = (await client.get("/openapi.json")).json()
    assert "HTTPValidationError" not in str(spec)  # FastAPI's default 422 body; ours is ErrorBody
    error_body = spec["components"]["schemas"]["ErrorBody"]
    assert error_body["required"] == ["error"]
    assert resolve(spec, error_body["properties"]["error"])["required"] == ["code", "message"]
    errors_by_route = {}
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            statuses = set()
            for status, response in operation["responses"].items():
                if path == "/readyz" or not status.startswith(("4", "5")):
                    continue
                statuses.add(int(status))
                schema = resolve(spec, response["content"]["application/json"]["schema"])
                assert {"code", "message"} <= set(resolve(spec, schema["properties"]["error"])["properties"])
                if status in ("429", "503"):
                    assert response["headers"]["Retry-After"]["required"] is True, (method, path, status)
            errors_by_route[f"{method.upper()} {path}"] = statuses
    assert {422, 503} <= errors_by_route["GET /v1/artworks/{artwork_id}/similar"]
    assert {400, 413, 415, 422, 429, 503} <= errors_by_route["POST /v1/search"]
    assert {400, 401, 403, 409, 413, 415, 422, 429, 503} <= errors_by_route["POST /v1/artworks"]
    for route in ("POST /v1/artworks/batch", "PATCH /v1/artworks/{artwork_id}", "POST /v1/influences"):
        assert {401, 403, 413, 429} <= errors_by_route[route]


async def test_an_unavailable_encoder_is_a_503_with_retry_after(services):
    """Fault: nothing listens at the encoder address."""
    async with gateway_client(create_app(gateway_config(services, ENCODER_ADDR="127.0.0.1:1"))) as http:
        reply = await upload(http, png_header_only(8, 8))
    assert_error(reply, 503, "encoder_unavailable")
    assert int(reply.headers["Retry-After"]) >= 1


async def test_an_image_over_the_upload_limit_is_413_also_when_the_body_fits(services, catalogue):
    """The body limit leaves room for multipart overhead; the image itself is held to MAX_UPLOAD_BYTES."""
    image = image_of(catalogue, BEDROOM)
    limit = len(image) - 1
    async with gateway_client(create_app(gateway_config(services, MAX_UPLOAD_BYTES=str(limit)))) as http:
        assert_error(await upload(http, image), 413, "too_large", f"larger than {limit} bytes")
        assert_error(await upload(http, image, route="/v1/predict-style"), 413, "too_large")
        assert (await http.get("/healthz")).status_code == 200
