"""Browse-by-cluster and the evaluation pictures through the gateway's ASGI app: the cluster routes against
the real encoder (exported model in onnxruntime), search (embedded engine) and influence gRPC services
in-process over 16 real GCompris paintings; the picture routes over a folder of real PNG files."""

from __future__ import annotations

import asyncio
import dataclasses
import io
import math
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gateway_support import in_process_services, ingest_targets
from PIL import Image

from artsearch.clustering import purity
from artsearch.config import ConfigError, Env
from artsearch.grpc_client import open_channel
from artsearch.v1 import search_pb2, search_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from artsearch_tools.ingest import ingest_catalogue
from artsearch_tools.launcher import free_ports
from services.gateway.app import create_app
from services.gateway.clusters import ClusterSettings
from services.gateway.config import GatewayConfig
from services.gateway.evaluation_pictures import (
    EvaluationPictureSettings,
    picture_title,
)

PAINTINGS = 16
SCROLL_PAGE = 5  # 16 paintings: four Scroll pages per clustering
UNLABELLED = "unlabelled"
GROWING = "growing"


def gateway_app(env: dict[str, str]) -> FastAPI:
    """The gateway app, with the cluster and evaluation picture routes (services/gateway/routes/)."""
    return create_app(GatewayConfig.from_env(Env(env)))


class RecordedCalls:
    """Wraps the app's downstream.call: the request type of every gRPC call the gateway makes."""

    def __init__(self, app: FastAPI) -> None:
        self.requests: list[str] = []
        downstream = app.state.downstream
        original = downstream.call

        async def call(service, method, request, timeout, request_id):
            self.requests.append(type(request).__name__)
            return await original(service, method, request, timeout, request_id)

        downstream.call = call

    @property
    def scrolls(self) -> int:
        return self.requests.count("ScrollRequest")


class Gateway:
    """The app running (lifespan entered) with an httpx client on it and its downstream calls recorded."""

    def __init__(self, env: dict[str, str]) -> None:
        self.app = gateway_app(env)

    async def __aenter__(self) -> Gateway:
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.calls = RecordedCalls(self.app)
        transport = httpx.ASGITransport(app=self.app)
        self.client = httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=120)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.client.aclose()
        await self._lifespan.__aexit__(None, None, None)

    async def get(self, url: str, **params: object) -> httpx.Response:
        return await self.client.get(url, params=params)


# ---- clusters ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    full = load_catalogue(gcompris_catalogue)
    entries = sorted(full.entries, key=lambda entry: entry.id)[:PAINTINGS]
    return dataclasses.replace(full, entries=entries, problems=[])


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def addresses(
    model_path: Path, catalogue: Catalogue, tmp_path_factory
) -> AsyncIterator[dict[str, str]]:
    """The three services in-process, the 16 paintings ingested; also a copy of six of them without style
    labels, and a copy of all that a test grows."""
    async with in_process_services(model_path, tmp_path_factory.mktemp("services")) as found:
        report = await ingest_catalogue(catalogue, ingest_targets(found))
        assert report.added == PAINTINGS, report.summary()
        ids = [entry.id for entry in catalogue.entries]
        await _copy(found["SEARCH_ADDR"], ids[:6], UNLABELLED, keep_styles=False)
        await _copy(found["SEARCH_ADDR"], ids, GROWING)
        yield found


async def _copy(address: str, ids: list[str], collection: str, keep_styles: bool = True) -> None:
    async with open_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        found = await stub.Get(search_pb2.GetRequest(ids=ids, with_embeddings=True), timeout=10)
        assert len(found.items) == len(ids)
        for item in found.items:
            if not keep_styles:
                item.artwork.style = ""
        await stub.Upsert(search_pb2.UpsertRequest(collection=collection, items=found.items), timeout=10)


async def _add_a_copy(address: str, artwork_id: str, collection: str) -> None:
    async with open_channel(address) as channel:
        stub = search_pb2_grpc.SearchServiceStub(channel)
        request = search_pb2.GetRequest(collection=collection, ids=[artwork_id], with_embeddings=True)
        copy = (await stub.Get(request, timeout=10)).items[0]
        copy.artwork.id = "a-copy"
        await stub.Upsert(search_pb2.UpsertRequest(collection=collection, items=[copy]), timeout=10)


def _env(addresses: dict[str, str], **settings: str) -> dict[str, str]:
    return {**addresses, "CLUSTER_SCROLL_PAGE": str(SCROLL_PAGE), **settings}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(addresses: dict[str, str]) -> AsyncIterator[Gateway]:
    async with Gateway(_env(addresses)) as running:
        yield running


async def _all_members(gateway: Gateway, cluster: int, n: int, limit: int) -> list[dict]:
    members: list[dict] = []
    offset: int | None = 0
    while offset is not None:
        reply = await gateway.get(f"/v1/clusters/{cluster}", n=n, offset=offset, limit=limit)
        assert reply.status_code == 200, reply.text
        page = reply.json()
        assert page["offset"] == offset and page["limit"] == limit
        assert len(page["members"]) == min(limit, page["size"] - offset)
        members += page["members"]
        offset = page["next_offset"]
    return members


@pytest.mark.slow
async def test_the_clusters_cover_the_catalogue_largest_first(gateway, catalogue):
    reply = await gateway.get("/v1/clusters", n=4)
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert (answer["n"], answer["artworks"], answer["unclustered"]) == (4, PAINTINGS, 0)
    clusters = answer["clusters"]
    assert [cluster["id"] for cluster in clusters] == [0, 1, 2, 3]
    sizes = [cluster["size"] for cluster in clusters]
    assert sum(sizes) == PAINTINGS and all(size > 0 for size in sizes)
    assert sizes == sorted(sizes, reverse=True)
    styles = {entry.id: entry.style for entry in catalogue.entries}
    artists = {entry.id: entry.artist for entry in catalogue.entries}
    for cluster in clusters:
        assert cluster["url"] == f"/v1/clusters/{cluster['id']}?n=4"
        representatives = cluster["representatives"]
        assert 1 <= len(representatives) == min(4, cluster["size"])
        for artwork in representatives:
            assert artwork["title"] and artwork["artist"] == artists[artwork["id"]]
            assert artwork["thumbnail_url"] == f"/v1/artworks/{artwork['id']}/thumbnail"
            assert artwork["image_url"] == f"/v1/artworks/{artwork['id']}/image"
        assert 1 <= len(cluster["top_styles"]) <= 3 and 1 <= len(cluster["top_artists"]) <= 3
        counts = [style["count"] for style in cluster["top_styles"]]
        assert counts == sorted(counts, reverse=True) and sum(counts) <= cluster["size"]
        assert cluster["style_purity"] == pytest.approx(counts[0] / cluster["size"], abs=1e-6)
    # The collection's purity by style is that of the clusters the members route lists.
    members = {c["id"]: await _all_members(gateway, c["id"], 4, 24) for c in clusters}
    rows = [(cluster, member["id"]) for cluster, listed in members.items() for member in listed]
    expected = purity([cluster for cluster, _ in rows], [styles[artwork_id] for _, artwork_id in rows])
    assert answer["purity"] == {"label": "style", "value": pytest.approx(expected, abs=1e-6), "labelled": 16}
    assert 0 < expected <= 1


@pytest.mark.slow
async def test_members_are_the_cluster_nearest_its_centre_first_page_by_page(gateway, catalogue):
    listed = (await gateway.get("/v1/clusters", n=3)).json()["clusters"]
    seen: list[str] = []
    for cluster in listed:
        members = await _all_members(gateway, cluster["id"], 3, limit=2)
        ids = [member["id"] for member in members]
        assert len(ids) == cluster["size"]
        similarity = [member["similarity"] for member in members]
        assert similarity == sorted(similarity, reverse=True), "nearest the centre first"
        assert all(-1 <= value <= 1 for value in similarity)
        # The representatives are the cluster's first members: they belong to it.
        assert [artwork["id"] for artwork in cluster["representatives"]] == ids[:4]
        seen += ids
    assert sorted(seen) == sorted(entry.id for entry in catalogue.entries), "every artwork in one cluster"
    whole = await gateway.get(f"/v1/clusters/{listed[0]['id']}", n=3, limit=100)
    assert [m["id"] for m in whole.json()["members"]] == [
        m["id"] for m in await _all_members(gateway, listed[0]["id"], 3, limit=1)
    ]
    past_the_end = await gateway.get("/v1/clusters/0", n=3, offset=50)
    assert past_the_end.status_code == 200
    assert past_the_end.json()["members"] == [] and past_the_end.json()["next_offset"] is None


@pytest.mark.slow
async def test_a_clustering_is_cached_and_computed_once_for_concurrent_requests(addresses):
    async with Gateway(_env(addresses)) as gateway:
        first = await gateway.get("/v1/clusters", n=5)
        assert first.status_code == 200 and first.json()["cached"] is False
        pages = gateway.calls.scrolls
        assert pages == math.ceil(PAINTINGS / SCROLL_PAGE), "the descriptors come page by page"
        again = await gateway.get("/v1/clusters", n=5)
        members = await gateway.get("/v1/clusters/1", n=5)
        assert again.json()["cached"] is True and members.json()["cached"] is True
        assert gateway.calls.scrolls == pages, "the cached clustering is used: no Scroll"
        assert again.json()["clusters"] == first.json()["clusters"]
        # Requests arriving together share one computation.
        replies = await asyncio.gather(*(gateway.get("/v1/clusters", n=6) for _ in range(4)))
        assert all(reply.status_code == 200 for reply in replies)
        assert gateway.calls.scrolls == 2 * pages
        assert sum(not reply.json()["cached"] for reply in replies) == 1
        assert len({str(reply.json()["clusters"]) for reply in replies}) == 1
        assert gateway.app.state.clusters.computations == 2


@pytest.mark.slow
async def test_same_catalogue_same_clusters_and_a_changed_one_is_clustered_again(addresses):
    async with Gateway(_env(addresses, SEARCH_COLLECTION=GROWING, CLUSTER_CACHE_S="0")) as gateway:
        first = (await gateway.get("/v1/clusters", n=4)).json()
        second = (await gateway.get("/v1/clusters", n=4)).json()
        assert gateway.calls.scrolls == 2 * math.ceil(PAINTINGS / SCROLL_PAGE), "CLUSTER_CACHE_S=0: no cache"
        assert second["clusters"] == first["clusters"], "seeded: the same catalogue clusters the same"
    async with Gateway(_env(addresses, SEARCH_COLLECTION=GROWING)) as gateway:
        assert (await gateway.get("/v1/clusters", n=4)).json()["artworks"] == PAINTINGS
        await _add_a_copy(addresses["SEARCH_ADDR"], first["clusters"][0]["representatives"][0]["id"], GROWING)
        scrolls = gateway.calls.scrolls
        grown = (await gateway.get("/v1/clusters", n=4)).json()
        assert grown["artworks"] == PAINTINGS + 1 and grown["cached"] is False
        assert gateway.calls.scrolls > scrolls


@pytest.mark.slow
@pytest.mark.parametrize(
    ("url", "params", "parameter"),
    [
        ("/v1/clusters", {"n": 0}, "n"),
        ("/v1/clusters", {"n": 1}, "n"),
        ("/v1/clusters", {"n": 65}, "n"),
        ("/v1/clusters", {"n": "many"}, "n"),
        ("/v1/clusters/0", {"n": 100}, "n"),
        ("/v1/clusters/0", {"offset": -1}, "offset"),
        ("/v1/clusters/0", {"limit": 0}, "limit"),
        ("/v1/clusters/0", {"limit": 101}, "limit"),
        ("/v1/clusters/-1", {}, "cluster"),
        ("/v1/clusters/first", {}, "cluster"),
    ],
)
async def test_bad_parameters_get_a_json_422_naming_them(gateway, url, params, parameter):
    reply = await gateway.get(url, **params)
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_request" and parameter in error["message"]


@pytest.mark.slow
async def test_an_unknown_cluster_is_a_json_404(gateway):
    for cluster, n in ((4, 4), (16, 16), (63, 2)):
        reply = await gateway.get(f"/v1/clusters/{cluster}", n=n)
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "cluster_not_found"
        assert f"no cluster {cluster}" in reply.json()["error"]["message"]


@pytest.mark.slow
async def test_an_empty_catalogue_has_no_clusters(addresses):
    async with Gateway(_env(addresses, SEARCH_COLLECTION="nothing-here")) as gateway:
        reply = await gateway.get("/v1/clusters")
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        assert (answer["clusters"], answer["artworks"], answer["purity"], answer["n"]) == ([], 0, None, 12)
        assert gateway.calls.scrolls == 0
        assert (await gateway.get("/v1/clusters/0")).status_code == 404


@pytest.mark.slow
async def test_a_catalogue_without_styles_has_no_purity(addresses):
    async with Gateway(_env(addresses, SEARCH_COLLECTION=UNLABELLED)) as gateway:
        answer = (await gateway.get("/v1/clusters", n=12)).json()
        assert answer["artworks"] == 6 and answer["purity"] is None
        assert 1 <= len(answer["clusters"]) <= 6, "never more clusters than artworks"
        assert sum(cluster["size"] for cluster in answer["clusters"]) == 6
        for cluster in answer["clusters"]:
            assert cluster["top_styles"] == [] and cluster["style_purity"] is None
            assert cluster["top_artists"]


@pytest.mark.slow
async def test_a_catalogue_over_the_limit_is_refused_before_scrolling(addresses):
    async with Gateway(_env(addresses, CLUSTER_MAX_ARTWORKS="10")) as gateway:
        for url in ("/v1/clusters", "/v1/clusters/0"):
            reply = await gateway.get(url)
            assert reply.status_code == 422, reply.text
            error = reply.json()["error"]
            assert error["code"] == "catalogue_too_large"
            assert "16" in error["message"] and "10" in error["message"]
        assert gateway.calls.scrolls == 0


async def test_search_service_down_is_a_json_503_with_retry_after():
    (closed,) = free_ports(1)
    env = {"ENCODER_ADDR": f"127.0.0.1:{closed}", "SEARCH_ADDR": f"127.0.0.1:{closed}",
           "INFLUENCE_ADDR": f"127.0.0.1:{closed}", "SEARCH_TIMEOUT_S": "1"}  # fmt: skip
    async with Gateway(env) as gateway:
        for url in ("/v1/clusters", "/v1/clusters/0"):
            reply = await gateway.get(url)
            assert reply.status_code == 503, reply.text
            assert reply.headers["retry-after"]
            assert reply.json()["error"]["code"] == "search_unavailable"


def test_cluster_settings_from_the_environment():
    defaults = ClusterSettings.from_env(Env({}))
    assert (defaults.max_artworks, defaults.cache_s, defaults.default_count) == (20_000, 300.0, 12)
    settings = ClusterSettings.from_env(
        Env({"CLUSTER_MAX_ARTWORKS": "500", "CLUSTER_CACHE_S": "0", "CLUSTER_DEFAULT_COUNT": "6"})
    )
    assert (settings.max_artworks, settings.cache_s, settings.default_count) == (500, 0.0, 6)
    for bad in (
        {"CLUSTER_DEFAULT_COUNT": "1"},
        {"CLUSTER_DEFAULT_COUNT": "20", "CLUSTER_MAX_COUNT": "10"},
        {"CLUSTER_SCROLL_PAGE": "1001"},
        {"CLUSTER_MAX_ARTWORKS": "0"},
        {"CLUSTER_CACHE_S": "soon"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            ClusterSettings.from_env(Env(bad))


def _offline_env(**settings: str) -> dict[str, str]:
    """Addresses nobody listens on: the picture routes need no service."""
    (closed,) = free_ports(1)
    address = f"127.0.0.1:{closed}"
    return {"ENCODER_ADDR": address, "SEARCH_ADDR": address, "INFLUENCE_ADDR": address, **settings}


async def test_the_routes_are_in_the_openapi_document_with_examples():
    async with Gateway(_offline_env()) as gateway:
        paths = (await gateway.get("/openapi.json")).json()["paths"]
    listing = paths["/v1/clusters"]["get"]
    assert listing["responses"]["200"]["content"]["application/json"]["example"]["clusters"]
    assert {"422", "503"} <= set(listing["responses"])
    assert {p["name"] for p in listing["parameters"]} == {"n"}
    members = paths["/v1/clusters/{cluster}"]["get"]
    assert {p["name"] for p in members["parameters"]} == {"cluster", "n", "offset", "limit", "cursor"}
    assert members["responses"]["404"]["content"]["application/json"]["example"]["error"]["code"]
    pictures = paths["/v1/evaluation/pictures"]["get"]
    assert pictures["responses"]["200"]["content"]["application/json"]["example"]["pictures"]
    assert "image/png" in paths["/v1/evaluation/pictures/{name}"]["get"]["responses"]["200"]["content"]


# ---- evaluation pictures -------------------------------------------------------------------------------


def _png(path: Path, size: tuple[int, int], colour: str) -> bytes:
    Image.new("RGB", size, colour).save(path, "PNG")
    return path.read_bytes()


@pytest.fixture()
def pictures_dir(tmp_path: Path) -> Path:
    """Two evaluation PNGs, and what must not be served: a text file, a .png that is not a PNG, a link to
    a PNG outside, a PNG in a sub-folder, a hidden file."""
    folder = tmp_path / "img"
    folder.mkdir()
    _png(folder / "pr_curves.png", (120, 40), "navy")
    _png(folder / "map_gcompris.png", (60, 48), "orange")
    (folder / "notes.txt").write_text("not a picture\n")
    (folder / "fake.png").write_text("not a PNG at all, whatever the name says\n")
    outside = tmp_path / "secret.png"
    _png(outside, (10, 10), "red")
    (folder / "link.png").symlink_to(outside)
    (folder / "sub").mkdir()
    _png(folder / "sub" / "inner.png", (10, 10), "green")
    _png(folder / ".hidden.png", (10, 10), "blue")
    return folder


async def test_the_pictures_list_names_titles_and_urls(pictures_dir):
    async with Gateway(_offline_env(EVALUATION_DIR=str(pictures_dir))) as gateway:
        reply = await gateway.get("/v1/evaluation/pictures")
    assert reply.status_code == 200, reply.text
    assert reply.json()["pictures"] == [
        {
            "name": "pr_curves.png",
            "title": "Precision-recall curves of each descriptor aspect",
            "url": "/v1/evaluation/pictures/pr_curves.png",
            "width": 120,
            "height": 40,
            "bytes": (pictures_dir / "pr_curves.png").stat().st_size,
        },
        {
            "name": "map_gcompris.png",
            "title": "Map of the GCompris paintings: t-SNE of the descriptors, coloured by label",
            "url": "/v1/evaluation/pictures/map_gcompris.png",
            "width": 60,
            "height": 48,
            "bytes": (pictures_dir / "map_gcompris.png").stat().st_size,
        },
    ]


async def test_a_picture_is_served_as_png_with_cache_headers(pictures_dir):
    async with Gateway(_offline_env(EVALUATION_DIR=str(pictures_dir))) as gateway:
        reply = await gateway.get("/v1/evaluation/pictures/map_gcompris.png")
        assert reply.status_code == 200, reply.text
        assert reply.content == (pictures_dir / "map_gcompris.png").read_bytes()
        assert reply.headers["content-type"] == "image/png"
        assert reply.headers["cache-control"] == "public, max-age=3600"
        with Image.open(io.BytesIO(reply.content)) as picture:
            assert picture.size == (60, 48)
        etag = reply.headers["etag"]
        same = await gateway.client.get(
            "/v1/evaluation/pictures/map_gcompris.png", headers={"If-None-Match": etag}
        )
        assert same.status_code == 304 and same.content == b"" and same.headers["etag"] == etag
        _png(pictures_dir / "map_gcompris.png", (30, 30), "purple")  # the evaluation ran again
        changed = await gateway.client.get(
            "/v1/evaluation/pictures/map_gcompris.png", headers={"If-None-Match": etag}
        )
        assert changed.status_code == 200 and changed.headers["etag"] != etag


@pytest.mark.parametrize(
    "name",
    ["notes.txt", "fake.png", "link.png", "sub%2Finner.png", ".hidden.png", "..%2Fsecret.png", "..",
     "%2E%2E%2Fsecret.png", "%2Fetc%2Fpasswd", "missing.png", "PR_CURVES.PNG"],
)  # fmt: skip
async def test_only_listed_pictures_are_served(pictures_dir, name):
    async with Gateway(_offline_env(EVALUATION_DIR=str(pictures_dir))) as gateway:
        reply = await gateway.get(f"/v1/evaluation/pictures/{name}")
    assert reply.status_code == 404, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["message"]
    assert b"root:" not in reply.content


async def test_without_evaluation_dir_the_pictures_are_not_configured():
    async with Gateway(_offline_env()) as gateway:
        for url in ("/v1/evaluation/pictures", "/v1/evaluation/pictures/pr_curves.png"):
            reply = await gateway.get(url)
            assert reply.status_code == 404
            assert reply.json()["error"] == {
                "code": "evaluation_not_configured",
                "message": "evaluation pictures not configured: EVALUATION_DIR is not set",
            }


def test_picture_settings_and_titles(tmp_path):
    assert EvaluationPictureSettings.from_env(Env({})).directory is None
    settings = EvaluationPictureSettings.from_env(
        Env({"EVALUATION_DIR": str(tmp_path), "EVALUATION_CACHE_MAX_AGE_S": "60"})
    )
    assert (settings.directory, settings.cache_max_age_s) == (tmp_path.resolve(), 60)
    with pytest.raises(ConfigError, match="EVALUATION_DIR"):
        EvaluationPictureSettings.from_env(Env({"EVALUATION_DIR": str(tmp_path / "absent")}))
    assert picture_title("map_tuxpaint_thumbnails.png") == (
        "Map of the Tux Paint stamps: t-SNE of the descriptors, with thumbnails"
    )
    assert picture_title("ann_recall-latency.png") == "Ann recall latency"
