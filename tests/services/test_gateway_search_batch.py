"""POST /v1/search/batch: several pictures or catalogue artworks in one request, driven through the gateway's
ASGI app against the real encoder, search and influence services in-process over a few demo-catalogue
paintings. Each query's answer is the one its single route gives, in request order; a bad query gets its
own error and the others are still answered; the number of queries and the body are bounded."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from gateway_support import (
    catalogue_subset,
    gateway_client,
    gateway_config,
    image_of,
    ingested_services,
)
from PIL import Image
from test_gateway_openapi_contract import contract_client

from artsearch_tools.catalogue.folder import Catalogue
from services.gateway.app import create_app

pytestmark = pytest.mark.slow

BEDROOM = "van-gogh-bedroom-in-arles"
WAVE = "hokusai-the-great-wave-off-kanagawa"
IDS = [BEDROOM, WAVE, "van-gogh-cafe-terrace-at-night", "hokusai-poppies", "gauguin-arearea",
       "degas-the-dance-class", "kandinsky-composition-viii"]  # fmt: skip
MAX_QUERIES = 3
MAX_UPLOAD_BYTES = 3 * 1024 * 1024


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return catalogue_subset(gcompris_catalogue, IDS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway over the three services, the paintings ingested, at most MAX_QUERIES queries a batch;
    every 2xx answer is checked against its declared response model."""
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("batch")) as addresses:
        config = gateway_config(
            addresses,
            SEARCH_BATCH_MAX_QUERIES=str(MAX_QUERIES),
            MAX_UPLOAD_BYTES=str(MAX_UPLOAD_BYTES),
        )
        app = create_app(config)
        async with gateway_client(app) as http:
            contract_client(http, app)
            yield http


def _uploads(*pictures: bytes) -> list[tuple[str, tuple[str, bytes, str]]]:
    return [("image", (f"q{i}.jpg", data, "image/jpeg")) for i, data in enumerate(pictures)]


def _ranking(answer: dict[str, Any]) -> list[tuple[str, float]]:
    return [(r["id"], r["score"]) for r in answer["results"]]


def assert_same_ranking(batch_answer: dict[str, Any], single_answer: dict[str, Any]) -> None:
    """Same artworks in the same order with the same scores (to float32 rounding: the encoder may run the
    picture in another inference batch)."""
    got, expected = _ranking(batch_answer), _ranking(single_answer)
    assert [i for i, _ in got] == [i for i, _ in expected]
    assert [s for _, s in got] == pytest.approx([s for _, s in expected], abs=1e-4)


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return reply.json()


def _error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    error = reply.json()["error"]
    assert error["code"] == code, error
    return error


async def test_uploaded_pictures_are_answered_in_order_as_single_searches(client, catalogue):
    bedroom, wave = image_of(catalogue, BEDROOM), image_of(catalogue, WAVE)
    batch = _ok(await client.post("/v1/search/batch", params={"k": 4}, files=_uploads(wave, bedroom)))
    assert (batch["queries"], batch["answered"], batch["failed"]) == (2, 2, 0)
    assert [item["index"] for item in batch["results"]] == [0, 1]
    assert [item["status"] for item in batch["results"]] == [200, 200]
    for item, picture, painting in zip(batch["results"], (wave, bedroom), (WAVE, BEDROOM), strict=True):
        single = _ok(await client.post("/v1/search", params={"k": 4}, files={"image": ("q.jpg", picture)}))
        assert item["answer"]["results"][0]["id"] == painting  # the painting itself first
        assert len(item["answer"]["results"]) == 4
        assert_same_ranking(item["answer"], single)


async def test_json_queries_by_artwork_and_url_with_shared_and_own_parameters(client):
    body = {
        "k": 2,
        "queries": [
            {"artwork_id": BEDROOM},
            {"artwork_id": WAVE, "k": 3, "w_colour": 0.9},
            {"url": "http://127.0.0.1:9/refused.jpg"},  # a private address: refused by the fetch policy
        ],
    }
    batch = _ok(await client.post("/v1/search/batch", json=body))
    first, second, third = batch["results"]
    assert (batch["answered"], batch["failed"]) == (2, 1)
    similar = _ok(await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"k": 2}))
    assert first["status"] == 200 and len(first["answer"]["results"]) == 2
    assert_same_ranking(first["answer"], similar)
    assert BEDROOM not in [r["id"] for r in first["answer"]["results"]]  # as similar: the artwork left out
    own = _ok(await client.get(f"/v1/artworks/{WAVE}/similar", params={"k": 3, "w_colour": 0.9}))
    assert second["status"] == 200 and len(second["answer"]["results"]) == 3
    assert_same_ranking(second["answer"], own)
    assert second["answer"]["weights"] == own["weights"]
    assert third["status"] == 400 and "answer" not in third
    assert third["error"]["code"]
    # The query string applies to every query, under the body's parameters.
    by_query = _ok(
        await client.post("/v1/search/batch", params={"k": 1}, json={"queries": [{"artwork_id": WAVE}]})
    )
    assert len(by_query["results"][0]["answer"]["results"]) == 1


async def test_pictures_searched_a_moment_ago_are_re_ranked_by_their_picture_id(client, catalogue):
    wave = image_of(catalogue, WAVE)
    first = _ok(await client.post("/v1/search", params={"k": 3}, files={"image": ("q.jpg", wave)}))
    reweighted = {"k": 3, "w_style": 0.7, "w_content": 0.2, "w_colour": 0.1}
    body = {"queries": [{"picture_id": first["picture_id"], **reweighted}, {"picture_id": "f" * 64 + "-a"}]}
    batch = _ok(await client.post("/v1/search/batch", json=body))
    by_id, expired = batch["results"]
    resent = _ok(await client.post("/v1/search", params=reweighted, files={"image": ("q.jpg", wave)}))
    assert by_id["status"] == 200 and by_id["answer"]["weights"] == resent["weights"]
    assert_same_ranking(by_id["answer"], resent)
    assert expired["status"] == 410 and expired["error"]["code"] == "picture_expired"
    both = {"queries": [{"picture_id": first["picture_id"], "artwork_id": WAVE}]}
    _error(await client.post("/v1/search/batch", json=both), 422, "invalid_request")


async def test_bad_queries_get_their_own_errors_and_the_others_are_answered(client, catalogue):
    bedroom = image_of(catalogue, BEDROOM)
    truncated = bedroom[: len(bedroom) // 3]  # a JPEG header, then nothing the decoder can finish
    batch = _ok(
        await client.post("/v1/search/batch", files=_uploads(b"not a picture at all", truncated, bedroom))
    )
    not_image, cut, good = batch["results"]
    assert not_image["status"] == 415 and not_image["error"]["code"] == "unsupported_media_type"
    assert cut["status"] == 400 and cut["error"]["code"] == "invalid_image"
    assert good["status"] == 200 and good["answer"]["results"][0]["id"] == BEDROOM
    assert (batch["answered"], batch["failed"]) == (1, 2)

    oversized = io.BytesIO()
    Image.effect_noise((1400, 1400), 80).convert("RGB").save(oversized, "PNG")  # noise: > 3 MiB as PNG
    assert len(oversized.getvalue()) > MAX_UPLOAD_BYTES
    batch = _ok(await client.post("/v1/search/batch", files=_uploads(oversized.getvalue(), bedroom)))
    assert [item["status"] for item in batch["results"]] == [413, 200]
    assert batch["results"][0]["error"]["code"] == "too_large"

    body = {
        "queries": [
            {"artwork_id": "no-such-artwork"},
            {"artwork_id": WAVE, "year_min": 1900, "year_max": 1800},
        ]
    }
    batch = _ok(await client.post("/v1/search/batch", json=body))
    assert [item["status"] for item in batch["results"]] == [404, 422]  # as GET .../similar answers them
    assert [item["error"]["code"] for item in batch["results"]] == ["not_found", "invalid_parameter"]


async def test_the_number_of_queries_and_the_body_are_bounded(client, catalogue):
    bedroom = image_of(catalogue, BEDROOM)
    for count in (MAX_QUERIES + 1, MAX_QUERIES + 3):  # one past the limit, and past the form parser's limit
        reply = await client.post("/v1/search/batch", files=_uploads(*[bedroom] * count))
        assert str(MAX_QUERIES) in _error(reply, 413, "too_many_queries")["message"]
    queries = [{"artwork_id": WAVE}] * (MAX_QUERIES + 1)
    _error(await client.post("/v1/search/batch", json={"queries": queries}), 413, "too_many_queries")
    _error(await client.post("/v1/search/batch", json={"queries": []}), 422, "invalid_request")
    _error(await client.post("/v1/search/batch", json={"queries": [{"k": 3}]}), 422, "invalid_request")
    _error(await client.post("/v1/search/batch", files={"other": ("a.txt", b"x")}), 422, "invalid_request")
    _error(await client.post("/v1/search/batch", content=b"x", headers={"content-type": "text/plain"}), 415,
           "unsupported_media_type")  # fmt: skip
    # A body larger than MAX_QUERIES uploads is refused as it arrives.
    huge = b"\xff\xd8\xff" + bytes(MAX_UPLOAD_BYTES + 1024)
    reply = await client.post("/v1/search/batch", files=_uploads(huge, huge, huge, huge))
    assert reply.status_code == 413, reply.text


async def test_the_route_is_in_the_openapi_document(client):
    spec = _ok(await client.get("/openapi.json"))
    operation = spec["paths"]["/v1/search/batch"]["post"]
    assert operation["operationId"] == "search_batch"
    assert set(operation["requestBody"]["content"]) == {"multipart/form-data", "application/json"}
    assert operation["responses"]["200"]["content"]["application/json"]["example"]["results"]
