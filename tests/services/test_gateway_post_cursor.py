"""POST /v1/search with a `cursor` (JSON body field or form field): the next page of a previous answer, the
same as GET /v1/search?cursor=, for clients that only POST; driven through the gateway's ASGI app against the
real encoder, search and influence services in-process over a few demo-catalogue paintings."""

from __future__ import annotations

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
from test_gateway_openapi_contract import contract_client

from artsearch_tools.catalogue.folder import Catalogue
from services.gateway.app import create_app

pytestmark = pytest.mark.slow

BEDROOM = "van-gogh-bedroom-in-arles"
WAVE = "hokusai-the-great-wave-off-kanagawa"
IDS = [BEDROOM, WAVE, "van-gogh-cafe-terrace-at-night", "hokusai-poppies", "gauguin-arearea",
       "degas-the-dance-class", "kandinsky-composition-viii", "renoir-bal-du-moulin-de-la-galette",
       "hokusai-oiran-and-kamuro"]  # fmt: skip
CURSOR_ENTRIES = 2


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return catalogue_subset(gcompris_catalogue, IDS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway keeping the ranked results of CURSOR_ENTRIES searches; 2xx answers held to their model."""
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("cursor")) as addresses:
        app = create_app(gateway_config(addresses, SEARCH_CURSOR_ENTRIES=str(CURSOR_ENTRIES)))
        async with gateway_client(app) as http:
            contract_client(http, app)
            yield http


def _ok(reply: httpx.Response) -> dict[str, Any]:
    assert reply.status_code == 200, reply.text
    return reply.json()


def _page(answer: dict[str, Any]) -> tuple[list[str], str | None, int]:
    return [r["id"] for r in answer["results"]], answer["next_cursor"], answer["offset"]


async def test_a_posted_cursor_pages_as_the_get_route(client, catalogue):
    first = _ok(
        await client.post(
            "/v1/search", params={"k": 3}, files={"image": ("q.jpg", image_of(catalogue, WAVE))}
        )
    )
    cursor = first["next_cursor"]
    assert cursor
    by_get = _ok(await client.get("/v1/search", params={"cursor": cursor}))
    by_json = _ok(await client.post("/v1/search", json={"cursor": cursor}))
    by_multipart = _ok(await client.post("/v1/search", files={"cursor": (None, cursor)}))
    by_urlencoded = _ok(await client.post("/v1/search", data={"cursor": cursor}))
    assert _page(by_get)[2] == 3  # page 2 of the same ranking
    for answer in (by_json, by_multipart, by_urlencoded):
        assert _page(answer) == _page(by_get)
        assert [r["score"] for r in answer["results"]] == [r["score"] for r in by_get["results"]]
    assert not set(_page(first)[0]) & set(_page(by_json)[0])
    # Page 3 by POST again, from page 2's cursor; a similar answer's cursor pages by POST too.
    third = _ok(await client.post("/v1/search", json={"cursor": by_json["next_cursor"]}))
    assert _page(third)[2] == 6
    similar = _ok(await client.get(f"/v1/artworks/{BEDROOM}/similar", params={"k": 2}))
    assert _page(_ok(await client.post("/v1/search", json={"cursor": similar["next_cursor"]}))) == _page(
        _ok(await client.get("/v1/search", params={"cursor": similar["next_cursor"]}))
    )


async def test_posted_cursor_errors_are_those_of_the_get_route(client, catalogue):
    for reply in (
        await client.post("/v1/search", json={"cursor": "not-a-cursor"}),
        await client.post("/v1/search", data={"cursor": "not-a-cursor"}),
        await client.get("/v1/search", params={"cursor": "not-a-cursor"}),
    ):
        assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_cursor", reply.text
    old = _ok(await client.get(f"/v1/artworks/{WAVE}/similar", params={"k": 2}))["next_cursor"]
    for artwork_id in IDS[2 : 2 + CURSOR_ENTRIES]:  # newer rankings push the old one out of the cursor cache
        await client.get(f"/v1/artworks/{artwork_id}/similar", params={"k": 2})
    for reply in (
        await client.post("/v1/search", json={"cursor": old}),
        await client.post("/v1/search", files={"cursor": (None, old)}),
        await client.get("/v1/search", params={"cursor": old}),
    ):
        assert reply.status_code == 410 and reply.json()["error"]["code"] == "cursor_expired", reply.text
    picture = {"image": ("q.jpg", image_of(catalogue, WAVE)), "cursor": (None, old)}
    both = [
        await client.post("/v1/search", json={"cursor": old, "url": "https://example.org/a.jpg"}),
        await client.post("/v1/search", files=picture),
        await client.post("/v1/search", json={"cursor": ""}),
    ]
    assert [(r.status_code, r.json()["error"]["code"]) for r in both] == [(422, "invalid_request")] * 3


async def test_the_cursor_field_is_in_the_openapi_document(client):
    spec = _ok(await client.get("/openapi.json"))
    content = spec["paths"]["/v1/search"]["post"]["requestBody"]["content"]
    assert "cursor" in content["application/json"]["schema"]["properties"]
    assert "cursor" in content["multipart/form-data"]["schema"]["properties"]
    assert content["application/json"]["examples"]["by_cursor"]["value"]["cursor"]
    assert {"required": ["cursor"]} in content["application/json"]["schema"]["oneOf"]
