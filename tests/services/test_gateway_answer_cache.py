"""The gateway's kept answers (services/gateway/answer_cache.py): similar answers served again from memory
and dropped on every catalogue write made through the gateway; search cursors paging the same ranked result
without the picture. Real encoder, search and influence services in-process, a dozen demo paintings."""

from __future__ import annotations

import hashlib
import statistics
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gateway_support import (
    FakeClock,
    catalogue_subset,
    gateway_client,
    gateway_config,
    image_of,
    ingested_services,
)

from artsearch.grpc_server import RPC_STARTED, RPC_TOTAL
from artsearch_tools.catalogue.folder import Catalogue
from services.gateway.answer_cache import LOOKUPS, AnswerCaches, Cursor
from services.gateway.app import create_app

pytestmark = pytest.mark.slow

BEDROOM, CAFE = "van-gogh-bedroom-in-arles", "van-gogh-cafe-terrace-at-night"
IDS = [BEDROOM, CAFE, "van-gogh-the-harvest", "van-gogh-the-church-at-auvers-sur-oise",
       "hokusai-the-great-wave-off-kanagawa", "hokusai-poppies", "hokusai-oiran-and-kamuro",
       "hiroshige-horse-mackerel-and-prawn", "gauguin-arearea", "kandinsky-composition-viii",
       "renoir-bal-du-moulin-de-la-galette", "degas-the-dance-class"]  # fmt: skip
KEY = "answer-cache-admin-key"
AUTH = {"X-API-Key": KEY}


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return catalogue_subset(gcompris_catalogue, IDS)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with ingested_services(model_path, catalogue, tmp_path_factory.mktemp("answer-cache")) as addresses:
        yield addresses


def gateway(
    services: dict[str, str], tmp_path: Path | None = None, **env: str
) -> tuple[FastAPI, AbstractAsyncContextManager[httpx.AsyncClient]]:
    """The app (admin routes on with `tmp_path` as IMAGE_ROOT) and its running client."""
    admin = {}
    if tmp_path is not None:
        admin = {
            "ADMIN_API_KEYS": f"tests:{hashlib.sha256(KEY.encode()).hexdigest()}",
            "IMAGE_ROOT": str(tmp_path),
            "ADMIN_RATE_LIMIT_BURST": "1000",
        }
    app = create_app(gateway_config(services, **admin, **env))
    return app, gateway_client(app)


def lookups(cache: str, result: str) -> float:
    return LOOKUPS.labels(cache, result)._value.get()


def searches() -> float:
    """Search RPCs the in-process search service has answered."""
    return RPC_TOTAL.labels("/artsearch.v1.SearchService/Search", "OK")._value.get()


def encodes() -> float:
    # Started, not handled: a photo searched with its analysis is encoded in stages (EncodeInStages), a call
    # that may end after the answer (a whole photo matched with confidence); any other picture by Encode.
    return sum(
        RPC_STARTED.labels(f"/artsearch.v1.EncoderService/{method}")._value.get()
        for method in ("Encode", "EncodeInStages")
    )


def without_timings(answer: dict) -> dict:
    return {name: value for name, value in answer.items() if name not in ("timings_ms", "next_cursor")}


async def similar(http: httpx.AsyncClient, artwork_id: str = BEDROOM, **params: object) -> dict:
    response = await http.get(f"/v1/artworks/{artwork_id}/similar", params={"k": 25, **params})
    assert response.status_code == 200, response.text
    return response.json()


def ids(answer: dict) -> list[str]:
    return [result["id"] for result in answer["results"]]


async def test_a_repeated_similar_query_is_answered_from_the_cache(services):
    _, opened = gateway(services)
    async with opened as http:
        first = await similar(http, k=5)
        hits, searched = lookups("similar", "hit"), searches()
        again = await similar(http, k=5)
        assert lookups("similar", "hit") == hits + 1 and searches() == searched  # no search again
        assert without_timings(again) == without_timings(first) and "search" not in again["timings_ms"]
        page_two = await similar(http, k=5, offset=5)  # another page of the same ranking: the same entry
        assert lookups("similar", "hit") == hits + 2 and searches() == searched
        whole = await similar(http, k=10)
        assert ids(first) + ids(page_two) == ids(whole)
        # Every parameter that changes the answer is in the key: another weight is another answer.
        await similar(http, k=5, w_colour=1)
        await similar(http, k=5, filter_artist=["Katsushika Hokusai", "Vincent van Gogh"])
        await similar(http, k=5, filter_artist=["Vincent van Gogh", "Katsushika Hokusai"])  # same filter
        assert searches() > searched and lookups("similar", "hit") == hits + 4


async def test_catalogue_and_influence_writes_through_the_gateway_drop_the_kept_answers(
    services, catalogue, tmp_path
):
    _, opened = gateway(services, tmp_path)
    async with opened as http:
        before = await similar(http)
        assert "cache-copy" not in ids(before)
        assert without_timings(await similar(http)) == without_timings(before)  # kept
        added = await http.post(
            "/v1/artworks",
            headers=AUTH,
            data={"id": "cache-copy", "title": "Bedroom copy", "artist": "Vincent van Gogh"},
            files={"image": ("copy.jpg", image_of(catalogue, BEDROOM), "image/jpeg")},
        )
        assert added.status_code == 201, added.text
        misses = lookups("similar", "miss")
        with_copy = await similar(http)
        assert lookups("similar", "miss") == misses + 1 and ids(with_copy)[0] == "cache-copy"

        patched = await http.patch("/v1/artworks/cache-copy", headers=AUTH, json={"title": "Renamed copy"})
        assert patched.status_code == 200, patched.text
        assert (await similar(http))["results"][0]["title"] == "Renamed copy"

        deleted = await http.delete("/v1/artworks/cache-copy", headers=AUTH)
        assert deleted.status_code == 204, deleted.text
        assert "cache-copy" not in ids(await similar(http))

        # The influence graph ranks too: a new edge from the source artist changes a result's hops.
        answer = await similar(http)
        far = next(r for r in answer["results"] if r["scores"]["influence_hops"] not in (0, 1))
        edge = {"influencer": "Vincent van Gogh", "influenced": far["artist"]}
        influenced = await http.post("/v1/influences", headers=AUTH, json={"influences": [edge]})
        assert influenced.status_code in (200, 201), influenced.text
        after = {r["id"]: r for r in (await similar(http))["results"]}
        assert after[far["id"]]["scores"]["influence_hops"] == 1


async def test_kept_answers_expire_after_their_ttl(services):
    app, opened = gateway(services)
    async with opened as http:
        clock = FakeClock()
        app.state.answer_caches = AnswerCaches(app.state.config, clock=clock)
        await similar(http, k=3)
        searched = searches()
        await similar(http, k=3)
        assert searches() == searched
        clock.now += app.state.config.similar_cache_ttl_s + 1
        await similar(http, k=3)
        assert searches() > searched


async def test_zero_entries_turns_the_similar_cache_off(services):
    _, opened = gateway(services, SIMILAR_CACHE_ENTRIES="0")
    async with opened as http:
        hits = lookups("similar", "hit")
        await similar(http, k=3)
        searched = searches()
        await similar(http, k=3)
        assert searches() > searched and lookups("similar", "hit") == hits


async def test_cursors_page_a_picture_search_without_the_picture(services, catalogue):
    image = {"image": ("q.jpg", image_of(catalogue, CAFE), "image/jpeg")}
    _, opened = gateway(services)
    async with opened as http:
        whole = (await http.post("/v1/search", params={"k": 11, "pool": 11}, files=image)).json()
        assert whole["next_cursor"] is None  # the whole pool in one page
        page = (await http.post("/v1/search", params={"k": 4, "pool": 11}, files=image)).json()
        encoded, searched, seen = encodes(), searches(), ids(page)
        offsets = [page["offset"]]
        while page["next_cursor"] is not None:
            response = await http.get("/v1/search", params={"cursor": page["next_cursor"]})
            assert response.status_code == 200, response.text
            page = response.json()
            seen += ids(page)
            offsets.append(page["offset"])
        assert seen == ids(whole) and len(set(seen)) == 11 and offsets == [0, 4, 8]
        assert encodes() == encoded and searches() == searched  # no encode, no search: the kept ranking
        assert without_timings(page) | {"k": 11, "offset": 0, "results": []} == without_timings(whole) | {
            "results": []
        }


async def test_bad_expired_and_foreign_cursors_are_clear_4xx(services, tmp_path):
    app, opened = gateway(services, tmp_path)
    async with opened as http:
        for garbage in ("x", "!!!", "a" * 500, Cursor("t", -1, 3).encode(), Cursor("t", 0, 1000).encode()):
            response = await http.get("/v1/search", params={"cursor": garbage})
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"
        unknown = await http.get("/v1/search", params={"cursor": Cursor("never-given", 3, 3).encode()})
        assert unknown.status_code == 410 and unknown.json()["error"]["code"] == "cursor_expired"

        cursor = (await similar(http, k=3))["next_cursor"]
        foreign = await http.get(f"/v1/artworks/{CAFE}/similar", params={"cursor": cursor})
        assert foreign.status_code == 400 and foreign.json()["error"]["code"] == "invalid_cursor"
        own = await http.get(f"/v1/artworks/{BEDROOM}/similar", params={"cursor": cursor})
        assert own.status_code == 200 and own.json()["offset"] == 3

        # A catalogue write drops the kept rankings: the cursor is gone, not stale.
        edited = await http.patch(f"/v1/artworks/{CAFE}", headers=AUTH, json={"genre": "cityscape"})
        assert edited.status_code == 200, edited.text
        gone = await http.get("/v1/search", params={"cursor": cursor})
        assert gone.status_code == 410 and gone.json()["error"]["code"] == "cursor_expired"

        clock = FakeClock()
        app.state.answer_caches = AnswerCaches(app.state.config, clock=clock)
        cursor = (await similar(http, k=3))["next_cursor"]
        clock.now += app.state.config.search_cursor_ttl_s + 1
        expired = await http.get("/v1/search", params={"cursor": cursor})
        assert expired.status_code == 410


async def test_the_caches_stay_bounded(services):
    app, opened = gateway(services, SIMILAR_CACHE_ENTRIES="2", SEARCH_CURSOR_ENTRIES="3")
    async with opened as http:
        cursors = [(await similar(http, artwork_id, k=2))["next_cursor"] for artwork_id in IDS[:6]]
        caches: AnswerCaches = app.state.answer_caches
        assert len(caches.similar) == 2 and len(caches.pools) == 3
        oldest = await http.get("/v1/search", params={"cursor": cursors[0]})
        assert oldest.status_code == 410  # dropped, least recently used first
        newest = await http.get("/v1/search", params={"cursor": cursors[-1]})
        assert newest.status_code == 200
    _, opened = gateway(services, SEARCH_CURSOR_ENTRIES="0")
    async with opened as http:
        assert (await similar(http, k=2))["next_cursor"] is None  # cursors off


async def test_a_ranking_computed_before_a_write_is_not_kept(services):
    """A similar query that read the catalogue before a write and ends after it must not fill the cache."""
    app, opened = gateway(services)
    async with opened as http:
        caches: AnswerCaches = app.state.answer_caches
        generation = caches.generation
        caches.invalidate()  # a write landed while a query was being answered
        answer = await similar(http, k=2)
        assert caches.generation == generation + 1 and answer["results"]
        ((_, kept),) = caches.similar._entries.items()  # the answer just kept, at the new generation
        caches.keep_similar("stale-key", kept.value, generation)
        assert caches.similar_answer("stale-key") is None


async def test_measure_repeated_similar_latency(services, capsys):
    """Median latency of a repeated similar query, cache on vs off (printed; the cache must be faster)."""
    medians = {}
    for entries in ("256", "0"):
        _, opened = gateway(services, SIMILAR_CACHE_ENTRIES=entries)
        async with opened as http:
            first_started = time.perf_counter()
            await similar(http)
            first = time.perf_counter() - first_started
            times = []
            for _ in range(15):
                started = time.perf_counter()
                await similar(http)
                times.append(time.perf_counter() - started)
            medians[entries] = (first * 1000, statistics.median(times) * 1000)
    with capsys.disabled():
        print(f"\nsimilar k=25 (first ms, repeated median ms): cache on {medians['256']}, off {medians['0']}")
    assert medians["256"][1] < medians["0"][1]


async def test_measure_page_two_by_cursor_against_sending_the_picture_again(services, catalogue, capsys):
    """Page 2 of a picture search: by cursor, or the picture sent again with offset (its encoding kept by
    the picture cache, so only search, influence and explanation are repeated). Printed; cursor faster."""
    image = {"image": ("q.jpg", image_of(catalogue, CAFE), "image/jpeg")}
    by_cursor, by_offset = [], []
    _, opened = gateway(services)
    async with opened as http:
        for _ in range(10):
            first = (await http.post("/v1/search", params={"k": 5}, files=image)).json()
            started = time.perf_counter()
            await http.get("/v1/search", params={"cursor": first["next_cursor"]})
            by_cursor.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await http.post("/v1/search", params={"k": 5, "offset": 5}, files=image)
            by_offset.append((time.perf_counter() - started) * 1000)
    cursor_ms, offset_ms = statistics.median(by_cursor), statistics.median(by_offset)
    with capsys.disabled():
        print(f"\npage 2 median ms: by cursor {cursor_ms:.2f}, picture again + offset {offset_ms:.2f}")
    assert cursor_ms < offset_ms


async def test_cluster_pages_follow_next_cursor_like_next_offset(services):
    _, opened = gateway(services)
    async with opened as http:
        whole = (await http.get("/v1/clusters/0", params={"n": 2, "limit": 100})).json()
        assert whole["next_cursor"] is None and whole["size"] > 2
        page = (await http.get("/v1/clusters/0", params={"n": 2, "limit": 2})).json()
        seen = [m["id"] for m in page["members"]]
        while page["next_cursor"] is not None:
            response = await http.get("/v1/clusters/0", params={"cursor": page["next_cursor"]})
            assert response.status_code == 200, response.text
            page = response.json()
            assert page["n"] == 2 and page["limit"] == 2 and page["offset"] == len(seen)
            seen += [m["id"] for m in page["members"]]
        assert seen == [m["id"] for m in whole["members"]]
        first = (await http.get("/v1/clusters/0", params={"n": 2, "limit": 2})).json()["next_cursor"]
        for cluster, cursor in ((1, first), (0, "garbage"), (0, Cursor("t", 1, 1).encode())):
            response = await http.get(f"/v1/clusters/{cluster}", params={"cursor": cursor})
            assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"
