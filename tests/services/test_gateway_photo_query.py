"""A visitor's photo through the gateway (in-process services, the real model, the 36 demo paintings):
the painting located in a wall photo finds what the whole photo does not, a grey print is compared without
colour, and both switches (locate, grey) bring the previous behaviour back."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import pytest_asyncio
from gateway_support import gateway_client, gateway_config, ingested_services
from painting_photos import gallery_wall, grey_print
from PIL import Image

from artsearch.grpc_client import open_channel
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from services.gateway.app import create_app
from services.gateway.downstream import SEARCH, DownstreamError

pytestmark = pytest.mark.slow
WALL_PHOTOS = 8


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return load_catalogue(gcompris_catalogue)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("services")) as addresses:
        yield addresses


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(services: dict[str, str]) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(create_app(gateway_config(services))) as http:
        yield http


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=88)
    return buffer.getvalue()


async def search_json(client: httpx.AsyncClient, photo: bytes, **params: str) -> dict:
    response = await client.post(
        "/v1/search", params={"k": "5", "rerank": "false", **params}, files={"image": ("p.jpg", photo)}
    )
    assert response.status_code == 200, response.text
    return response.json()


async def test_the_located_painting_finds_wall_photos_the_whole_photo_misses(client, catalogue):
    found_located = found_whole = rescued = 0
    for index, entry in enumerate(catalogue.entries[:WALL_PHOTOS]):
        painting = Image.open(catalogue.path_of(entry)).convert("RGB")
        photo = jpeg(gallery_wall(painting, index)[0])
        located = await search_json(client, photo)
        whole = await search_json(client, photo, locate="off")
        hit_located = located["results"][0]["id"] == entry.id
        hit_whole = whole["results"][0]["id"] == entry.id
        found_located += hit_located
        found_whole += hit_whole
        rescued += hit_located and not hit_whole
        assert located["query"]["located"] is not None
        assert located["query"]["searched_located"] is True
        assert whole["query"]["searched_located"] is False and whole["query"]["locate"] == "off"
    assert found_located == WALL_PHOTOS, (found_located, found_whole)
    assert rescued >= 1 and found_whole < found_located, (found_located, found_whole)


async def test_the_query_object_describes_the_painting_found(client, catalogue):
    entry = catalogue.entries[0]
    photo, truth = gallery_wall(Image.open(catalogue.path_of(entry)).convert("RGB"), 0)
    answer = await search_json(client, jpeg(photo))
    located = answer["query"]["located"]
    assert len(located["corners"]) == 4 and all(len(corner) == 2 for corner in located["corners"])
    assert (
        max(
            abs(a - b)
            for got, want in zip(located["corners"], truth, strict=True)
            for a, b in zip(got, want, strict=True)
        )
        < 0.05
    )
    assert 0.5 <= located["confidence"] <= 1 and 0 < located["area_fraction"] < 1
    assert answer["query"]["greyscale"] is False and answer["query"]["colour_dropped"] is False
    assert answer["results"][0]["id"] == entry.id


async def test_a_grey_print_is_compared_without_colour_unless_switched_off(client, catalogue):
    entry = catalogue.entries[5]
    photo = jpeg(grey_print(Image.open(catalogue.path_of(entry)).convert("RGB"), 5))
    answer = await search_json(client, photo)
    assert answer["query"]["greyscale"] is True and answer["query"]["colour_dropped"] is True
    assert answer["weights"]["colour"] == 0
    assert answer["results"][0]["id"] == entry.id
    kept = await search_json(client, photo, grey="off")
    assert kept["query"]["colour_dropped"] is False and kept["weights"]["colour"] > 0
    # An explicit colour weight is the client's choice: kept even for a grey photo.
    chosen = await search_json(client, photo, w_colour="0.2")
    assert chosen["query"]["colour_dropped"] is False and chosen["weights"]["colour"] > 0


async def test_with_both_switches_off_the_answer_has_no_query_analysis(client, catalogue):
    photo = jpeg(Image.open(catalogue.path_of(catalogue.entries[2])).convert("RGB"))
    answer = await search_json(client, photo, locate="off", grey="off")
    assert "query" not in answer
    assert answer["results"][0]["id"] == catalogue.entries[2].id


async def test_a_bad_switch_value_is_422(client, catalogue):
    photo = jpeg(Image.open(catalogue.path_of(catalogue.entries[2])).convert("RGB"))
    response = await client.post("/v1/search", params={"locate": "maybe"}, files={"image": ("p.jpg", photo)})
    assert response.status_code == 422
    response = await client.post("/v1/search", json={"url": "https://example.org/a.jpg", "grey": "sometimes"})
    assert response.status_code == 422


async def test_a_failed_search_with_the_located_painting_leaves_the_whole_photos_answer(services, catalogue):
    """Fault injected on purpose: the search service fails the located crop's search (a deadline, say); the
    answer is the whole photo's, not an error."""
    entry = catalogue.entries[1]
    photo = jpeg(gallery_wall(Image.open(catalogue.path_of(entry)).convert("RGB"), 1)[0])
    async with open_channel(services["ENCODER_ADDR"]) as channel:
        encoded = await encoder_pb2_grpc.EncoderServiceStub(channel).Encode(
            encoder_pb2.EncodeRequest(images=[photo], analyse=True), timeout=30
        )
    located = np.array(encoded.analyses[0].located_embedding.values, dtype=np.float32)
    assert located.size
    app = create_app(gateway_config(services))
    async with gateway_client(app) as http:
        downstream = app.state.downstream
        real_search = downstream.search
        failed = []

        async def search(query, *args, **kwargs):
            if np.allclose(np.array(query.values, dtype=np.float32), located, atol=1e-5):
                failed.append(True)
                raise DownstreamError(SEARCH, grpc.StatusCode.DEADLINE_EXCEEDED, "injected")
            return await real_search(query, *args, **kwargs)

        downstream.search = search
        answer = await search_json(http, photo)
        whole = await search_json(http, photo, locate="off")
    assert failed, "the located painting's search was not made"
    assert [r["id"] for r in answer["results"]] == [r["id"] for r in whole["results"]]


async def test_only_the_photo_as_taken_is_matched_against_regions(services, catalogue):
    """The located painting is a whole picture: its search skips the costlier region matching, the photo's
    own search (which may show a detail) keeps it when neither the artworks alone nor the located painting
    gave a confident match (none is, here: WHOLE_PHOTO_CONFIDENT_SCORE above 1). The search calls are
    recorded, not changed."""
    entry = catalogue.entries[2]
    photo = jpeg(gallery_wall(Image.open(catalogue.path_of(entry)).convert("RGB"), 2)[0])
    async with open_channel(services["ENCODER_ADDR"]) as channel:
        encoded = await encoder_pb2_grpc.EncoderServiceStub(channel).Encode(
            encoder_pb2.EncodeRequest(images=[photo], analyse=True), timeout=30
        )
    whole = np.array(encoded.embeddings[0].values, dtype=np.float32)
    located = np.array(encoded.analyses[0].located_embedding.values, dtype=np.float32)
    app = create_app(gateway_config({**services, "WHOLE_PHOTO_CONFIDENT_SCORE": "1.5"}))
    async with gateway_client(app) as http:
        downstream = app.state.downstream
        real_search = downstream.search
        calls: list[tuple[np.ndarray, bool]] = []

        async def search(query, *args, **kwargs):
            calls.append((np.array(query.values, dtype=np.float32), kwargs.get("match_regions", False)))
            return await real_search(query, *args, **kwargs)

        downstream.search = search
        answer = await search_json(http, photo)
    assert answer["query"]["searched_located"] is True
    assert answer["results"][0]["id"] == entry.id
    # The photo searched by the artworks alone, the crop (no confident match either way), then the photo
    # with the artworks' regions too; the crop never against the regions.
    assert [matched for _, matched in calls] == [False, False, True], calls

    def closer_to_whole(vector: np.ndarray) -> bool:
        return cosine(vector, whole) > cosine(vector, located)

    assert [closer_to_whole(vector) for vector, _ in calls] == [True, False, True]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


async def test_the_switches_are_documented_in_openapi(client):
    spec = (await client.get("/openapi.json")).json()
    parameters = {p["name"]: p for p in spec["paths"]["/v1/search"]["post"]["parameters"]}
    for name in ("locate", "grey"):
        assert parameters[name]["schema"]["enum"] == ["auto", "off"]
        assert parameters[name]["schema"]["default"] == "auto"
        assert parameters[name]["description"]
