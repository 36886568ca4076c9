"""The gateway's image and thumbnail routes and its static files, through the real FastAPI app (in-process,
httpx.ASGITransport) over real in-process encoder, search and influence gRPC servers, with a few real
GCompris paintings in a temporary IMAGE_ROOT."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gateway_support import gateway_client, in_process_services
from PIL import Image

from artsearch.config import ConfigError, Env
from artsearch.grpc_client import open_channel
from artsearch.v1 import common_pb2, encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc
from artsearch_tools.launcher import free_ports
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.gateway.media import MediaSettings, resolve_image_path

pytestmark = pytest.mark.slow  # runs the real encoder model

CATALOGUE = "gcompris"
PAINTINGS = [
    "hokusai-the-great-wave-off-kanagawa.jpg",
    "van-gogh-the-night-cafe.jpg",
    "cassatt-summertime.jpg",
]


@pytest.fixture(scope="module")
def image_root(gcompris_catalogue: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """IMAGE_ROOT/gcompris with three real paintings (one converted to PNG with alpha), a text file, and a
    symbolic link pointing out of IMAGE_ROOT."""
    root = tmp_path_factory.mktemp("images")
    folder = root / CATALOGUE
    folder.mkdir()
    for name in PAINTINGS[:2]:
        shutil.copy(gcompris_catalogue / name, folder / name)
    with Image.open(gcompris_catalogue / PAINTINGS[2]) as painting:
        rgba = painting.convert("RGBA")
        rgba.putalpha(128)
        rgba.save(folder / "translucent.png")
    (folder / "notes.txt").write_text("not an image\n")
    (folder / "outside.jpg").symlink_to("/etc/passwd")
    return root


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def services(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict]:
    """The three gRPC services in-process; yields their addresses."""
    async with in_process_services(
        model_path, tmp_path_factory.mktemp("services"), max_batch_images=4
    ) as found:
        yield found


def _artwork(artwork_id: str, image_uri: str, catalogue: str = CATALOGUE) -> common_pb2.Artwork:
    return common_pb2.Artwork(
        id=artwork_id, title=artwork_id, artist="Vincent van Gogh", image_uri=image_uri, catalogue=catalogue
    )


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def artworks(services: dict, image_root: Path) -> dict[str, str]:
    """Stores the paintings (encoded by the real encoder) and artworks whose image is missing, outside
    IMAGE_ROOT, not an image or remote; returns id -> image_uri."""
    folder = image_root / CATALOGUE
    paintings = {p.stem: p.name for p in sorted(folder.iterdir()) if p.suffix in {".jpg", ".png"}}
    paintings.pop("outside")
    async with open_channel(services["ENCODER_ADDR"]) as channel:
        encoder = encoder_pb2_grpc.EncoderServiceStub(channel)
        images = [(folder / name).read_bytes() for name in paintings.values()]
        encoded = await encoder.Encode(encoder_pb2.EncodeRequest(images=images), timeout=60)
    embeddings = list(encoded.embeddings)
    by_id = {
        **paintings,
        "escape": "../../etc/passwd",
        "absolute": "/etc/passwd",
        "symlink-out": "outside.jpg",
        "missing": "gone.jpg",
        "not-an-image": "notes.txt",
        "remote": "https://images.example.org/irises.jpg",
    }
    items = [
        search_pb2.IndexedArtwork(
            artwork=_artwork(artwork_id, uri), embedding=embeddings[i % len(embeddings)]
        )
        for i, (artwork_id, uri) in enumerate(by_id.items())
    ]
    async with open_channel(services["SEARCH_ADDR"]) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        reply = await search.Upsert(search_pb2.UpsertRequest(items=items), timeout=30)
    assert reply.upserted == len(items)
    return by_id


@pytest.fixture(scope="module")
def app(services: dict, image_root: Path) -> FastAPI:
    return create_app(GatewayConfig.from_env(Env({**services, "IMAGE_ROOT": str(image_root)})))


@pytest_asyncio.fixture(loop_scope="session", scope="module")
async def gateway(app: FastAPI, artworks: dict) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(app) as client:
        yield client


def _jpeg_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG"
        return image.size


async def test_the_image_is_the_file_with_its_content_type_and_cache_headers(gateway, image_root):
    reply = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/image")
    assert reply.status_code == 200, reply.text
    assert reply.content == (image_root / CATALOGUE / "van-gogh-the-night-cafe.jpg").read_bytes()
    assert reply.headers["content-type"] == "image/jpeg"
    assert reply.headers["cache-control"].startswith("public, max-age=")
    assert reply.headers["etag"].startswith('"')
    png = await gateway.get("/v1/artworks/translucent/image")
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content == (image_root / CATALOGUE / "translucent.png").read_bytes()


async def test_a_matching_if_none_match_gets_304_and_a_changed_file_a_new_etag(gateway, image_root):
    first = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/image")
    etag = first.headers["etag"]
    again = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/image", headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag and again.headers["cache-control"] == first.headers["cache-control"]
    listed = await gateway.get(
        "/v1/artworks/van-gogh-the-night-cafe/image", headers={"If-None-Match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304
    stale = await gateway.get(
        "/v1/artworks/van-gogh-the-night-cafe/image", headers={"If-None-Match": '"other"'}
    )
    assert stale.status_code == 200 and stale.content == first.content
    path = image_root / CATALOGUE / "van-gogh-the-night-cafe.jpg"
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/image", headers={"If-None-Match": etag})
    assert touched.status_code == 200 and touched.headers["etag"] != etag


async def test_thumbnails_are_jpegs_of_the_asked_size_and_cached(gateway, app, image_root):
    with Image.open(image_root / CATALOGUE / "van-gogh-the-night-cafe.jpg") as painting:
        painting_size = painting.size
    cache = app.state.thumbnails
    for size in (64, 256, 512):
        reply = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": size})
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"] == "image/jpeg"
        width, height = _jpeg_size(reply.content)
        assert max(width, height) == min(size, max(painting_size))
        # the aspect ratio is kept
        assert width / height == pytest.approx(painting_size[0] / painting_size[1], rel=0.05)
    hits, misses = cache.hits, cache.misses
    default = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail")
    assert max(_jpeg_size(default.content)) == 256
    assert (cache.hits, cache.misses) == (hits + 1, misses)
    assert default.headers["cache-control"].startswith("public, max-age=")
    not_modified = await gateway.get(
        "/v1/artworks/van-gogh-the-night-cafe/thumbnail", headers={"If-None-Match": default.headers["etag"]}
    )
    assert not_modified.status_code == 304
    other_size = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": 128})
    assert other_size.headers["etag"] != default.headers["etag"]


async def test_a_changed_file_gets_a_new_thumbnail(gateway, image_root):
    path = image_root / CATALOGUE / "translucent.png"
    first = await gateway.get("/v1/artworks/translucent/thumbnail", params={"size": 128})
    assert first.status_code == 200, first.text
    # alpha is flattened on white: the half-transparent painting comes out light
    with Image.open(io.BytesIO(first.content)) as thumbnail:
        assert thumbnail.mode == "RGB" and thumbnail.convert("L").getextrema()[0] >= 100
    Image.new("RGB", (300, 100), "black").save(path)
    second = await gateway.get("/v1/artworks/translucent/thumbnail", params={"size": 128})
    assert second.status_code == 200 and second.headers["etag"] != first.headers["etag"]
    assert _jpeg_size(second.content) == (128, 43)


@pytest.mark.parametrize("artwork_id", ["escape", "absolute", "symlink-out"])
async def test_paths_outside_image_root_are_refused(gateway, artwork_id):
    for route in ("image", "thumbnail"):
        reply = await gateway.get(f"/v1/artworks/{artwork_id}/{route}")
        assert reply.status_code == 403, reply.text
        assert reply.json()["error"]["code"] == "image_forbidden"
        assert b"root:" not in reply.content


@pytest.mark.parametrize(
    ("artwork_id", "status", "code"),
    [
        ("no-such-artwork", 404, "not_found"),
        ("missing", 404, "image_not_found"),
        ("not-an-image", 404, "image_not_found"),
    ],
)
async def test_unknown_artworks_and_missing_files_get_a_json_404(gateway, artwork_id, status, code):
    for route in ("image", "thumbnail"):
        reply = await gateway.get(f"/v1/artworks/{artwork_id}/{route}")
        assert reply.status_code == status, reply.text
        assert reply.headers["content-type"] == "application/json"
        assert reply.json()["error"]["code"] == code
        assert reply.json()["error"]["message"]


async def test_remote_images_redirect(gateway, artworks):
    for route in ("image", "thumbnail"):
        reply = await gateway.get(f"/v1/artworks/remote/{route}")
        assert reply.status_code == 307
        assert reply.headers["location"] == artworks["remote"]


async def test_every_offered_thumbnail_size_is_made(gateway):
    for size in (64, 128, 256, 512):
        reply = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": size})
        assert reply.status_code == 200, (size, reply.text)
        assert max(_jpeg_size(reply.content)) == size


@pytest.mark.parametrize(
    "size", ["10", "63", "65", "96", "100", "127", "129", "300", "513", "1024", "100000"]
)
async def test_thumbnail_sizes_outside_the_fixed_set_get_a_json_400(gateway, app, size):
    """Each size is a decode and a cache entry: any size a client likes would bypass the cache."""
    misses = app.state.thumbnails.misses
    reply = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": size})
    assert reply.status_code == 400, reply.text
    error = reply.json()["error"]
    assert error["code"] == "invalid_size"
    assert f"size={size}" in error["message"] and "64, 128, 256, 512" in error["message"]
    assert app.state.thumbnails.misses == misses  # nothing decoded


async def test_a_size_that_is_not_a_number_is_a_json_422(gateway):
    reply = await gateway.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": "big"})
    assert reply.status_code == 422
    assert "size" in reply.json()["error"]["message"]


async def test_thumbnail_max_size_leaves_out_the_larger_sizes(services, image_root, artworks):
    env = {**services, "IMAGE_ROOT": str(image_root), "THUMBNAIL_MAX_SIZE": "300"}
    async with gateway_client(create_app(GatewayConfig.from_env(Env(env)))) as client:
        spec = (await client.get("/openapi.json")).json()
        (size,) = [p for p in spec["paths"]["/v1/artworks/{artwork_id}/thumbnail"]["get"]["parameters"]
                   if p["name"] == "size"]  # fmt: skip
        assert size["schema"]["enum"] == [64, 128, 256] and size["schema"]["default"] == 256
        reply = await client.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": 512})
        assert reply.status_code == 400 and "64, 128, 256" in reply.json()["error"]["message"]


async def test_a_source_over_max_image_pixels_gets_no_thumbnail(services, image_root, artworks):
    """The thumbnails decode at most MAX_IMAGE_PIXELS, the uploads' limit (a 3 MP picture over a 2 MP
    limit here); the image itself is still served."""
    Image.new("RGB", (3000, 1000), "teal").save(image_root / CATALOGUE / "wide.png")
    await _store_artwork(services, "wide", "wide.png")
    env = {**services, "IMAGE_ROOT": str(image_root), "MAX_IMAGE_PIXELS": "2000000"}
    async with gateway_client(create_app(GatewayConfig.from_env(Env(env)))) as client:
        reply = await client.get("/v1/artworks/wide/thumbnail", params={"size": 64})
        assert reply.status_code == 404, reply.text
        assert reply.json()["error"]["code"] == "image_unreadable"
        assert "more than 2000000 pixels" in reply.json()["error"]["message"]
        assert (await client.get("/v1/artworks/wide/image")).status_code == 200
        small = await client.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail", params={"size": 64})
        assert small.status_code == 200


async def _store_artwork(services: dict, artwork_id: str, image_uri: str) -> None:
    """Stores an artwork whose image is `image_uri`, with another artwork's descriptor."""
    async with open_channel(services["SEARCH_ADDR"]) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        found = await search.Get(search_pb2.GetRequest(ids=["van-gogh-the-night-cafe"], with_embeddings=True))
        item = search_pb2.IndexedArtwork(
            artwork=_artwork(artwork_id, image_uri), embedding=found.items[0].embedding
        )
        await search.Upsert(search_pb2.UpsertRequest(items=[item]), timeout=30)


async def test_the_web_ui_files_are_served(gateway):
    page = await gateway.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    script = await gateway.get("/static/app.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    style = await gateway.get("/static/style.css")
    assert style.status_code == 200 and style.headers["content-type"].startswith("text/css")
    missing = await gateway.get("/static/nothing-here.js")
    assert missing.status_code == 404 and missing.json()["error"]["message"]


async def test_without_image_root_local_images_are_not_configured(services, artworks):
    app = create_app(GatewayConfig.from_env(Env(services)))
    async with gateway_client(app) as client:
        reply = await client.get("/v1/artworks/van-gogh-the-night-cafe/image")
        assert reply.status_code == 404
        assert reply.json()["error"] == {
            "code": "images_not_configured",
            "message": "images not configured: IMAGE_ROOT is not set",
        }
        thumbnail = await client.get("/v1/artworks/van-gogh-the-night-cafe/thumbnail")
        assert thumbnail.status_code == 404
        assert (await client.get("/v1/artworks/remote/image")).status_code == 307


def test_settings_from_the_environment(tmp_path):
    settings = MediaSettings.from_env(
        Env({"IMAGE_ROOT": str(tmp_path), "THUMBNAIL_CACHE_SIZE": "7", "THUMBNAIL_MAX_SIZE": "300"})
    )
    assert settings.image_root == tmp_path.resolve()
    assert (settings.thumbnail_cache_size, settings.thumbnail_max_size) == (7, 300)
    assert settings.thumbnail_sizes == (64, 128, 256)
    assert MediaSettings.from_env(Env({})).max_source_pixels == 50_000_000
    assert MediaSettings.from_env(Env({"MAX_IMAGE_PIXELS": "1000"})).max_source_pixels == 1000
    # The setting it replaces is refused rather than silently ignored.
    with pytest.raises(ConfigError, match=r"THUMBNAIL_MAX_SOURCE_PIXELS .* MAX_IMAGE_PIXELS"):
        MediaSettings.from_env(Env({"THUMBNAIL_MAX_SOURCE_PIXELS": "200000000"}))
    assert MediaSettings.from_env(Env({})).image_root is None
    with pytest.raises(ConfigError, match="IMAGE_ROOT"):
        MediaSettings.from_env(Env({"IMAGE_ROOT": str(tmp_path / "absent")}))
    with pytest.raises(ConfigError, match="THUMBNAIL_CACHE_SIZE"):
        MediaSettings.from_env(Env({"THUMBNAIL_CACHE_SIZE": "-1"}))


@pytest.mark.parametrize(
    ("catalogue", "image_uri"),
    [
        ("c", "../../x.jpg"),
        ("..", "x.jpg"),
        ("c", "/etc/passwd"),
        ("", ""),
        ("c", "a/../../../x"),
        ("c", "\0"),
    ],
)
def test_resolving_refuses_every_way_out(tmp_path, catalogue, image_uri):
    with pytest.raises(Exception, match="outside IMAGE_ROOT"):
        resolve_image_path(tmp_path / "root", catalogue, image_uri)


def test_resolving_keeps_paths_inside(tmp_path):
    assert resolve_image_path(tmp_path, "c", "sub/../x.jpg") == (tmp_path / "c" / "x.jpg").resolve()


async def test_search_service_down_gets_a_json_503_with_retry_after(services, image_root):
    (closed_port,) = free_ports(1)
    down = {**services, "SEARCH_ADDR": f"127.0.0.1:{closed_port}", "SEARCH_TIMEOUT_S": "2"}
    app = create_app(GatewayConfig.from_env(Env({**down, "IMAGE_ROOT": str(image_root)})))
    async with gateway_client(app) as client:
        for route in ("image", "thumbnail"):
            reply = await client.get(f"/v1/artworks/van-gogh-the-night-cafe/{route}")
            assert reply.status_code == 503, reply.text
            assert reply.headers["retry-after"]
            assert reply.json()["error"]["code"] == "search_unavailable"
