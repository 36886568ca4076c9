"""End to end: the four services as real processes talking gRPC on 127.0.0.1, queried through the gateway."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from heic_files import heic
from PIL import Image
from stack_support import catalogue_stack

from artsearch_client import ArtsearchClient, NotFound, RetryPolicy
from artsearch_tools.cli import sample_query_image
from artsearch_tools.evaluation.photo_variants import phone_photo
from artsearch_tools.launcher import ServiceStack

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def stack(model_path: Path, catalogue, tmp_path_factory: pytest.TempPathFactory):
    # The test's image server runs on 127.0.0.1, which a deployed gateway refuses to fetch from.
    allow_loopback = {"URL_FETCH_ALLOW_PRIVATE": "true"}
    with catalogue_stack(model_path, catalogue, tmp_path_factory.mktemp("stack"), allow_loopback) as running:
        yield running


@pytest.fixture(scope="module")
def gateway(stack: ServiceStack):
    with httpx.Client(base_url=stack.settings.gateway_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def client(stack: ServiceStack):
    """The project's client package; no retries, so each test sees the gateway's first answer."""
    with ArtsearchClient(stack.settings.gateway_url, timeout=60, retry=RetryPolicy(max_attempts=1)) as opened:
        yield opened


def search(client: ArtsearchClient, image: bytes, **params) -> dict:
    """The answer's JSON as the gateway sent it (the client raises on any error answer)."""
    return client.search(image, **params).raw


def test_health_readiness_docs_and_metrics(gateway: httpx.Client):
    assert gateway.get("/healthz").json() == {"status": "ok"}
    ready = gateway.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {
        "ready": True,
        "services": {"encoder": True, "search": True, "influence": True},
        "degraded": [],
    }
    assert gateway.get("/docs").status_code == 200
    assert "/v1/search" in gateway.get("/openapi.json").json()["paths"]
    assert "artsearch_http_requests_total" in gateway.get("/metrics/").text


def test_a_catalogue_painting_finds_itself_first(client: ArtsearchClient, catalogue):
    for entry in catalogue.entries[:: max(1, len(catalogue.entries) // 6)]:
        answer = search(client, (catalogue.root / entry.filename).read_bytes(), k=5)
        top = answer["results"][0]
        assert top["id"] == entry.id, (entry.title, [r["title"] for r in answer["results"]])
        assert top["scores"]["visual"] == pytest.approx(1.0, abs=1e-3)
        # Its own artist is the inferred source (voted, with its confidence c): the most similar work gets
        # the full same-artist boost, scaled by c.
        source = answer["source_artist"]
        assert source["how"] == "inferred" and source["method"] == "vote" and source["name"] == entry.artist
        assert top["scores"]["same_artist_rank"] == 0
        assert top["scores"]["influence_weight"] == source["applied_confidence"] > 0.5


def test_the_query_command_prints_a_table_or_the_json_answer(stack: ServiceStack, catalogue, tmp_path: Path):
    entry = catalogue.entries[0]
    image = catalogue.root / entry.filename
    command = [sys.executable, "-m", "artsearch_tools.cli", "query", str(image), "--k", "3"]
    command += ["--gateway", stack.settings.gateway_url]
    as_json = subprocess.run([*command, "--json"], capture_output=True, text=True, timeout=120)
    assert as_json.returncode == 0, as_json.stderr
    answer = json.loads(as_json.stdout)
    assert len(answer["results"]) == 3 and answer["results"][0]["id"] == entry.id
    table = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("source artist:") and entry.title in table.stdout


def test_the_query_command_reports_the_gateways_error_and_fails(stack: ServiceStack, catalogue):
    image = catalogue.root / catalogue.entries[0].filename
    command = [sys.executable, "-m", "artsearch_tools.cli", "query", str(image), "--k", "0"]
    refused = subprocess.run(
        [*command, "--gateway", stack.settings.gateway_url], capture_output=True, text=True, timeout=120
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error 422: ") and '"invalid_request"' in refused.stderr


def test_a_60_percent_crop_finds_its_painting_in_the_top_5(client: ArtsearchClient, catalogue):
    misses = []
    for entry in catalogue.entries:
        answer = search(client, sample_query_image(catalogue.root / entry.filename, 0.6), k=5, rerank=False)
        if entry.id not in [r["id"] for r in answer["results"]]:
            misses.append(entry.title)
    assert not misses, f"{len(misses)}/{len(catalogue.entries)} crops missed their painting: {misses}"


def test_a_phones_heic_photo_finds_its_painting_as_its_jpeg_twin_does(client: ArtsearchClient, catalogue):
    """iPhones (and many Android phones) save HEIC, with the sensor's pixels stored turned and the turn
    recorded: a museum app sending the camera's file as it is gets the answer the JPEG would get."""
    for number, entry in enumerate(catalogue.entries[:: max(1, len(catalogue.entries) // 6)]):
        painting = Image.open(catalogue.root / entry.filename).convert("RGB")
        photo = phone_photo(painting, np.random.default_rng(2026 + number))
        stored_turned = heic(photo.transpose(Image.Transpose.ROTATE_90), orientation=6, quality=80)
        twin = io.BytesIO()
        photo.save(twin, "JPEG", quality=90)
        from_heic, from_jpeg = search(client, stored_turned, k=3), search(client, twin.getvalue(), k=3)
        assert from_heic["results"][0]["id"] == entry.id, (entry.title, from_heic["results"][0]["title"])
        assert from_jpeg["results"][0]["id"] == entry.id
        visual = [answer["results"][0]["scores"]["visual"] for answer in (from_heic, from_jpeg)]
        assert visual[0] == pytest.approx(visual[1], abs=0.05)


def test_results_are_explained_and_best_first(client: ArtsearchClient, catalogue):
    entry = next(e for e in catalogue.entries if "gogh" in e.artist.lower())
    answer = search(client, sample_query_image(catalogue.root / entry.filename, 0.6), k=10)
    results = answer["results"]
    assert len(results) == 10
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for r in results:
        assert {"id", "title", "artist", "score", "scores"} <= r.keys()
        s = r["scores"]
        assert s["final"] == pytest.approx(s["visual"] * (1 + s["influence_weight"]), abs=1e-5)
    assert answer["degraded"] == []


def test_explicit_source_artist_is_used(gateway: httpx.Client, catalogue):
    entry = catalogue.entries[0]
    image = (catalogue.root / entry.filename).read_bytes()
    reply = gateway.post(
        "/v1/search", params={"k": 5}, files={"image": ("q.jpg", image)}, data={"artist": "Claude Monet"}
    )
    assert reply.status_code == 200, reply.text
    source = reply.json()["source_artist"]
    assert source["how"] == "explicit" and source["in_influence_graph"] is True


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"this is not an image at all", 415),
        (b"", 400),
    ],
)
def test_bad_uploads_get_a_json_4xx(gateway: httpx.Client, payload: bytes, expected: int):
    reply = gateway.post("/v1/search", files={"image": ("x.jpg", payload)})
    assert reply.status_code == expected
    assert reply.json()["error"]["message"]
    assert gateway.get("/readyz").status_code == 200


def test_truncated_and_tiny_images_and_bad_params_get_a_json_4xx(gateway: httpx.Client, catalogue):
    jpeg = (catalogue.root / catalogue.entries[0].filename).read_bytes()
    tiny = io.BytesIO()
    Image.new("RGB", (1, 1)).save(tiny, "PNG")
    for payload in (jpeg[: len(jpeg) // 3], tiny.getvalue()):
        reply = gateway.post("/v1/search", files={"image": ("x.jpg", payload)})
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["message"]
    for params in ({"k": 0}, {"k": 100000}, {"pool": -1}, {"k": "many"}):
        reply = gateway.post("/v1/search", params=params, files={"image": ("x.jpg", jpeg)})
        assert reply.status_code == 422, (params, reply.text)
        assert reply.json()["error"]["message"]
    missing = gateway.post("/v1/search", data={"nothing": "here"})
    assert missing.status_code == 422 and "image" in missing.json()["error"]["message"]


def test_influence_down_serves_visual_results_then_recovers(
    stack: ServiceStack, client: ArtsearchClient, catalogue
):
    image = sample_query_image(catalogue.root / catalogue.entries[0].filename, 0.6)
    stack.stop_service("influence")
    try:
        answer = search(client, image, k=5)
        assert answer["degraded"] == ["influence"]
        assert answer["results"], "visual results are still served"
        assert [r["score"] for r in answer["results"]] == [r["scores"]["visual"] for r in answer["results"]]
        ready = client.readiness()  # still ready: influence is optional, its outage listed
        assert (ready.ready, ready.degraded) == (True, ["influence"])
    finally:
        stack.start_service("influence")
    stack.wait_ready(timeout=60)
    assert search(client, image, k=5)["degraded"] == []


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture(scope="module")
def image_server(catalogue) -> Iterator[str]:
    """The catalogue folder over HTTP on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(catalogue.root)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()
    httpd.server_close()


def test_search_by_image_url(gateway: httpx.Client, catalogue, image_server: str):
    entry = next(e for e in catalogue.entries if "gogh" in e.artist.lower())
    reply = gateway.post("/v1/search", json={"url": f"{image_server}/{entry.filename}", "k": 5})
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["results"][0]["id"] == entry.id and len(answer["results"]) == 5
    assert answer["style_prediction"]["label"] == entry.style
    linked = [r for r in answer["results"] if r["scores"]["influence_hops"]]
    for result in linked:
        assert result["influence_path"][0] == answer["source_artist"]["name"]
        assert len(result["influence_path"]) == result["scores"]["influence_hops"] + 1
    refused = gateway.post("/v1/search", json={"url": "http://169.254.169.254/latest/meta-data/"})
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "url_forbidden"


def test_similar_artworks_and_metadata(client: ArtsearchClient, catalogue):
    entry = next(e for e in catalogue.entries if "hokusai" in e.artist.lower())
    answer = client.similar(entry.id, k=8, exclude_same_artist=True)
    assert answer.source_artist.how == "artwork" and answer.source_artist.name == entry.artist
    assert len(answer.results) == 8
    assert all(r.id != entry.id and r.artist != entry.artist for r in answer.results)
    assert client.artwork(entry.id).title == entry.title
    with pytest.raises(NotFound) as missing:
        client.similar("not-an-artwork")
    assert missing.value.status == 404


def test_predict_style(client: ArtsearchClient, catalogue):
    entry = next(e for e in catalogue.entries if e.style == "Ukiyo-e")
    style = client.predict_style(sample_query_image(catalogue.root / entry.filename, 0.6)).style
    assert style.label == "Ukiyo-e" and 0 < style.confidence <= 1 and len(style.top) == 3
