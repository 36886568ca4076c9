"""The admin API of the gateway (catalogue and artist management) driven over HTTP (httpx.ASGITransport)
against real in-process encoder (onnxruntime, the exported model), search (embedded engine) and influence
(curated in-memory graph) gRPC servers."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
import pytest_asyncio
from gateway_support import EndlessUpload, call_asgi, gateway_client, in_process_services
from PIL import Image, ImageDraw
from uvicorn_server import served

from artsearch.config import Env
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import search_pb2, search_pb2_grpc
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration

KEY, OTHER_KEY = "curator-secret-key", "second-secret-key"
COLLECTION = "admintest"


def key_entry(name: str, key: str) -> str:
    return f"{name}:{hashlib.sha256(key.encode()).hexdigest()}"


def painting(seed: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 72), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = int(rng.integers(0, 96)), int(rng.integers(0, 72)), int(rng.integers(5, 30))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


AUTH = {"X-API-Key": KEY}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def addresses(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with in_process_services(model_path, tmp_path_factory.mktemp("admin"), max_batch_images=8) as found:
        yield found


@asynccontextmanager
async def gateway(addresses: dict[str, str], **settings: str) -> AsyncIterator[httpx.AsyncClient]:
    env = {**addresses, "SEARCH_COLLECTION": COLLECTION, "ENCODE_TIMEOUT_S": "60", **settings}
    async with gateway_client(create_app(GatewayConfig.from_env(Env(env)))) as client:
        yield client


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def client(addresses, image_root) -> AsyncIterator[httpx.AsyncClient]:
    keys = f"{key_entry('curator', KEY)},{key_entry('second', OTHER_KEY)}"
    # Wrong keys are not throttled here: several tests present them through this one shared client
    # (test_gateway_admin_hardening.py tests the throttle).
    async with gateway(
        addresses,
        ADMIN_API_KEYS=keys,
        ADMIN_RATE_LIMIT_BURST="1000",
        IMAGE_ROOT=str(image_root),
        ADMIN_AUTH_MAX_FAILURES="0",
    ) as http:
        yield http


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def search(addresses) -> AsyncIterator[search_pb2_grpc.SearchServiceStub]:
    async with open_channel(addresses["SEARCH_ADDR"]) as channel:
        yield search_pb2_grpc.SearchServiceStub(channel)


async def stored(search, *ids: str) -> dict[str, search_pb2.IndexedArtwork]:
    reply = await search.Get(
        search_pb2.GetRequest(collection=COLLECTION, ids=list(ids), with_embeddings=True), timeout=10
    )
    return {item.artwork.id: item for item in reply.items}


async def count(search) -> int:
    return (await search.Count(search_pb2.CountRequest(collection=COLLECTION), timeout=10)).count


async def add(client, image: bytes, headers=AUTH, params=None, **fields: str) -> httpx.Response:
    return await client.post(
        "/v1/artworks",
        headers=headers,
        params=params,
        data=fields,
        files={"image": ("a.png", image, "image/png")},
    )


def assert_error(response: httpx.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    for word in words:
        assert word in error["message"], error


def files_under(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


# ---- keys ---------------------------------------------------------------------------------------------


async def test_writes_and_the_listing_need_a_valid_key(client, search):
    before = await count(search)
    attempts = [
        ("POST", "/v1/artworks", {}),
        ("GET", "/v1/artworks", {}),
        ("PATCH", "/v1/artworks/x", {"json": {"title": "t"}}),
        ("DELETE", "/v1/artworks/x", {}),
        ("POST", "/v1/artists", {"json": {"artists": [{"name": "Keyless Painter"}]}}),
        ("POST", "/v1/influences", {"json": {"influences": [{"influencer": "A B", "influenced": "C D"}]}}),
    ]
    for headers, words in [
        ({}, ("needs an admin API key",)),
        ({"X-API-Key": "wrong"}, ("not valid",)),
        ({"Authorization": f"Bearer {KEY}x"}, ("not valid",)),
        ({"Authorization": f"Basic {KEY}"}, ("needs",)),
    ]:
        for method, url, extra in attempts:
            response = await client.request(method, url, headers=headers, **extra)
            assert_error(response, 401, "unauthorized", *words)
            assert response.headers["WWW-Authenticate"] == "Bearer"
    unauthorised = await add(client, painting(1), headers={}, title="Sneaky")
    assert_error(unauthorised, 401, "unauthorized")
    assert await count(search) == before
    lookup = await client.get("/v1/artists", params={"prefix": "Keyless"})
    assert lookup.status_code == 200 and lookup.json()["artists"] == []


async def test_without_configured_keys_the_admin_api_is_disabled(addresses):
    async with gateway(addresses) as http:
        response = await http.get("/v1/artworks", headers=AUTH)
        assert_error(response, 403, "admin_disabled", "ADMIN_API_KEYS")
        assert_error(await http.post("/v1/influences", headers=AUTH, json={}), 403, "admin_disabled")
        assert (await http.get("/v1/artists", params={"prefix": "gogh"})).status_code == 200


async def test_each_key_is_rate_limited_with_retry_after(addresses):
    keys = f"{key_entry('curator', KEY)},{key_entry('second', OTHER_KEY)}"
    async with gateway(
        addresses, ADMIN_API_KEYS=keys, ADMIN_RATE_LIMIT_PER_MIN="1", ADMIN_RATE_LIMIT_BURST="2"
    ) as http:
        for _ in range(2):
            assert (await http.get("/v1/artworks", headers=AUTH)).status_code == 200
        limited = await http.get("/v1/artworks", headers=AUTH)
        assert_error(limited, 429, "rate_limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert (
            await http.get("/v1/artworks", headers={"Authorization": f"Bearer {OTHER_KEY}"})
        ).status_code == 200
        assert_error(await http.get("/v1/artworks", headers={"X-API-Key": "wrong"}), 401, "unauthorized")


# ---- keys are checked from the headers, before any body byte is read -----------------------------------


ENDLESS = {"Transfer-Encoding": "chunked", "Content-Type": "multipart/form-data; boundary=b"}
GUARDED = [
    ("POST", "/v1/artworks"),
    ("POST", "/v1/artworks/batch"),
    ("PATCH", "/v1/artworks/some-id"),
    ("DELETE", "/v1/artworks/some-id"),
    ("POST", "/v1/artists"),
    ("POST", "/v1/influences"),
]


@pytest.mark.parametrize(("method", "path"), GUARDED)
@pytest.mark.parametrize(
    ("configured", "headers", "status", "code"),
    [
        (True, {}, 401, "unauthorized"),
        (True, {"X-API-Key": "wrong"}, 401, "unauthorized"),
        (True, {"Authorization": f"Bearer {KEY}x"}, 401, "unauthorized"),
        (False, AUTH, 403, "admin_disabled"),
    ],
)
async def test_a_refused_key_is_answered_before_any_body_byte_is_read(
    addresses, method, path, configured, headers, status, code
):
    keys = {"ADMIN_API_KEYS": key_entry("curator", KEY)} if configured else {}
    app = create_app(GatewayConfig.from_env(Env({**addresses, **keys})))
    upload = EndlessUpload()
    answer = await call_asgi(app, method, path, {**ENDLESS, **headers}, upload)
    assert answer["status"] == status
    assert json.loads(answer["body"])["error"]["code"] == code
    answer_headers = dict(answer["headers"])
    assert answer_headers[b"connection"] == b"close"  # the endless rest is not drained either
    assert b"x-request-id" in answer_headers  # answered inside the request context: logged and counted
    assert upload.taken == 0


async def test_a_rate_limited_key_is_answered_before_the_body_and_a_request_takes_one_token(addresses):
    env = {**addresses, "SEARCH_COLLECTION": COLLECTION}
    env |= {"ADMIN_API_KEYS": key_entry("curator", KEY), "ADMIN_RATE_LIMIT_BURST": "2"}
    app = create_app(GatewayConfig.from_env(Env(env | {"ADMIN_RATE_LIMIT_PER_MIN": "1"})))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as http:
            # Two requests, two tokens: the key check of the middleware and of the route count once.
            assert (await http.get("/v1/artworks", headers=AUTH)).status_code == 200
            assert (await http.get("/v1/artworks", headers=AUTH)).status_code == 200
        upload = EndlessUpload()
        answer = await call_asgi(app, "POST", "/v1/artworks", {**ENDLESS, **AUTH}, upload)
    assert answer["status"] == 429 and upload.taken == 0
    assert int(dict(answer["headers"])[b"retry-after"]) >= 1


async def read_answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    """The head and the body of one HTTP answer (the body by its Content-Length)."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    return head, await reader.readexactly(length)


@pytest.fixture
async def real_server(addresses) -> AsyncIterator[tuple[str, int]]:
    """The gateway behind uvicorn, small limits: 100 kB images, batches of 2."""
    env = {**addresses, "SEARCH_COLLECTION": COLLECTION, "ENCODE_TIMEOUT_S": "60"}
    env |= {"ADMIN_API_KEYS": key_entry("curator", KEY), "ADMIN_RATE_LIMIT_BURST": "1000"}
    env |= {"MAX_UPLOAD_BYTES": "100000", "ADMIN_MAX_BATCH_ITEMS": "2"}
    async with served(create_app(GatewayConfig.from_env(Env(env)))) as address:
        yield address


async def test_a_real_server_answers_a_wrong_key_from_the_headers_alone(real_server):
    """Only the request head is sent (declaring a 150 kB body, under the limit): a wrong key is answered
    at once; with the right key the server waits for the body, which is what a wrong key used to get."""
    answers = {}
    for key in ("wrong", KEY):
        reader, writer = await asyncio.open_connection(*real_server)
        writer.write(
            b"POST /v1/artworks HTTP/1.1\r\nHost: gateway\r\nX-API-Key: %s\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 150000\r\n\r\n" % key.encode()
        )
        await writer.drain()
        try:
            answers[key] = await asyncio.wait_for(read_answer(reader), 2 if key == KEY else 10)
        except TimeoutError:
            answers[key] = None
        writer.close()
    head, body = answers["wrong"]
    assert head.startswith(b"HTTP/1.1 401 ")
    assert json.loads(body)["error"] == {"code": "unauthorized", "message": "the API key is not valid"}
    assert answers[KEY] is None


def chunked_multipart(data: dict[str, str], files: list, piece: int = 16 * 1024):
    """Headers and an async body of a multipart request that httpx sends chunked (no Content-Length)."""
    request = httpx.Request("POST", "http://gateway/", data=data, files=files)
    encoded = request.read()

    async def body() -> AsyncIterator[bytes]:
        for start in range(0, len(encoded), piece):
            yield encoded[start : start + piece]

    return {"Content-Type": request.headers["Content-Type"]}, body()


async def test_chunked_uploads_within_the_limits_are_added_and_larger_ones_refused(real_server, search):
    url = "http://{}:{}".format(*real_server)
    big = painting(40) + b"\0" * 150_000  # a PNG with trailing bytes: over the 100 kB image limit
    async with httpx.AsyncClient(base_url=url, headers=AUTH, timeout=60) as http:
        headers, body = chunked_multipart(
            {"id": "chunked-one", "title": "Chunked"}, [("image", ("a.png", painting(41)))]
        )
        added = await http.post("/v1/artworks", headers=headers, content=body)
        assert added.status_code == 201, added.text
        headers, body = chunked_multipart({"title": "Too big"}, [("image", ("a.png", big))])
        assert_error(await http.post("/v1/artworks", headers=headers, content=body), 413, "too_large")
        # The batch route's limit is 2 images' worth: the same large picture gets to the route, which
        # rejects that image alone; a batch body over the limit is refused whole.
        metadata = [
            {"filename": "b1.png", "id": "chunked-b1", "title": "B1"},
            {"filename": "big.png", "title": "Big"},
        ]
        files = [("images", ("b1.png", painting(42))), ("images", ("big.png", big))]
        headers, body = chunked_multipart({"metadata": json.dumps(metadata)}, files)
        batch = await http.post("/v1/artworks/batch", headers=headers, content=body)
        assert batch.status_code == 200, batch.text
        assert (batch.json()["added"], batch.json()["rejected"]) == (1, 1)
        files = [("images", (f"b{i}.png", big)) for i in range(3)]
        headers, body = chunked_multipart({"metadata": "[]"}, files)
        assert_error(await http.post("/v1/artworks/batch", headers=headers, content=body), 413, "too_large")
    assert {"chunked-one", "chunked-b1"} <= set(await stored(search, "chunked-one", "chunked-b1"))


# ---- artworks -----------------------------------------------------------------------------------------


async def test_an_added_artwork_is_stored_indexed_and_its_artist_joins_the_graph(client, search, image_root):
    image = painting(10)
    response = await add(
        client,
        image,
        id="admin-one",
        title="Study in Circles",
        artist="Olga Adminska",
        style="Abstract",
        genre="study",
        year="1921",
        catalogue="museum-x",
        extra=json.dumps({"licence": "CC0"}),
    )
    assert response.status_code == 201, response.text
    artwork = response.json()["artwork"]
    assert response.json()["degraded"] == []
    assert {k: artwork[k] for k in ("id", "title", "artist", "style", "genre", "year", "catalogue")} == {
        "id": "admin-one",
        "title": "Study in Circles",
        "artist": "Olga Adminska",
        "style": "Abstract",
        "genre": "study",
        "year": 1921,
        "catalogue": "museum-x",
    }
    assert artwork["image_uri"] == "admin-one.png" and artwork["image_url"] == "/v1/artworks/admin-one/image"
    assert artwork["extra"]["licence"] == "CC0" and artwork["extra"]["added_by"] == "curator"
    assert (image_root / "museum-x" / "admin-one.png").read_bytes() == image
    assert files_under(image_root / "museum-x") == ["admin-one.png"]  # no temporary file left behind

    record = (await stored(search, "admin-one"))["admin-one"]
    assert (record.artwork.title, record.artwork.year, record.artwork.catalogue) == (
        "Study in Circles",
        1921,
        "museum-x",
    )
    public = await client.get("/v1/artworks/admin-one")
    if public.status_code != 405:  # the public read route, where the gateway has it
        assert public.status_code == 200 and public.json()["title"] == "Study in Circles"
    found = await client.post("/v1/search", params={"k": 1}, files={"image": ("q.png", image, "image/png")})
    assert found.status_code == 200 and found.json()["results"][0]["id"] == "admin-one"
    artists = await client.get("/v1/artists", params={"prefix": "adminska"})
    assert [a["name"] for a in artists.json()["artists"]] == ["Olga Adminska"]


async def test_an_existing_id_is_refused_unless_replaced_and_ids_default_to_the_image_hash(
    client, search, image_root
):
    first = await add(client, painting(11), id="admin-two", title="First")
    assert first.status_code == 201
    clash = await add(client, painting(12), id="admin-two", title="Second")
    assert_error(clash, 409, "already_exists", "admin-two")
    assert (await stored(search, "admin-two"))["admin-two"].artwork.title == "First"
    jpeg = painting(12, "JPEG")
    replaced = await add(client, jpeg, params={"replace": "true"}, id="admin-two", title="Second")
    assert replaced.status_code == 201 and replaced.json()["artwork"]["image_uri"] == "admin-two.jpg"
    assert (await stored(search, "admin-two"))["admin-two"].artwork.title == "Second"
    assert files_under(image_root / "uploads") == ["admin-two.jpg"]  # the replaced PNG is gone

    unnamed = await add(client, painting(13), title="No id given")
    assert unnamed.status_code == 201
    expected_id = f"uploads-{hashlib.sha256(painting(13)).hexdigest()[:16]}"
    assert unnamed.json()["artwork"]["id"] == expected_id
    assert_error(await add(client, painting(13), title="Again"), 409, "already_exists")


@pytest.mark.parametrize(
    ("image", "fields", "status", "code", "words"),
    [
        (b"not an image at all", {"title": "t"}, 415, "unsupported_media_type", ("accepted format",)),
        (b"", {"title": "t"}, 400, "invalid_image", ("empty",)),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, {"title": "t"}, 400, "invalid_image", ("PNG",)),
        (None, {}, 422, "invalid_request", ("title",)),
        (None, {"title": "  "}, 400, "invalid_metadata", ("title", "required")),
        (None, {"title": "t", "id": "../../etc/passwd"}, 400, "invalid_metadata", ("id",)),
        (None, {"title": "t", "catalogue": "../outside"}, 400, "invalid_metadata", ("catalogue",)),
        (None, {"title": "t", "year": "last year"}, 400, "invalid_metadata", ("year", "integer")),
        (None, {"title": "t", "year": "99999"}, 400, "invalid_metadata", ("year", "outside")),
        (None, {"title": "t", "extra": "{not json"}, 400, "invalid_metadata", ("extra", "JSON")),
        (None, {"title": "t", "extra": '{"added_by": "me"}'}, 400, "invalid_metadata", ("reserved",)),
        (None, {"title": "t", "extra": '{"n": 3}'}, 400, "invalid_metadata", ("extra.n", "string")),
        (None, {"title": "tab\there"}, 400, "invalid_metadata", ("title", "control")),
        (None, {"title": "t", "artist": "???"}, 400, "invalid_metadata", ("artist", "letters")),
        (None, {"title": "t", "colour": "red"}, 201, None, ()),  # unknown form fields are ignored
    ],
)
async def test_bad_additions_are_4xx_naming_the_problem_and_store_nothing(
    client, search, image_root, image, fields, status, code, words
):
    before, files_before = await count(search), files_under(image_root)
    response = await add(client, painting(20) if image is None else image, **fields)
    if status == 201:
        assert response.status_code == 201
        assert (
            await client.delete(f"/v1/artworks/{response.json()['artwork']['id']}", headers=AUTH)
        ).status_code == 204
        return
    assert_error(response, status, code, *words)
    assert await count(search) == before and files_under(image_root) == files_before


async def test_a_failed_upsert_leaves_no_image_file_behind(addresses, search, tmp_path):
    """Fault: the search service refuses the upsert (the collection holds 4-d vectors)."""
    item = search_pb2.IndexedArtwork(
        artwork={"id": "tiny", "title": "Tiny"}, embedding={"values": [1, 0, 0, 0]}
    )
    await search.Upsert(search_pb2.UpsertRequest(collection="fourdims", items=[item]), timeout=10)
    keys = key_entry("curator", KEY)
    settings = {"ADMIN_API_KEYS": keys, "IMAGE_ROOT": str(tmp_path), "SEARCH_COLLECTION": "fourdims"}
    async with gateway(addresses, **settings) as http:
        response = await add(http, painting(25), id="never-stored", title="Refused")
        assert_error(response, 400, "invalid_request", "search")
    assert files_under(tmp_path) == []
    reply = await search.Get(search_pb2.GetRequest(collection="fourdims", ids=["never-stored"]), timeout=10)
    assert list(reply.missing_ids) == ["never-stored"]


async def test_an_image_store_that_cannot_be_written_is_a_503_with_retry_after(addresses, search, tmp_path):
    """Fault: the catalogue's folder under IMAGE_ROOT is a file, so the image cannot be written."""
    (tmp_path / "blocked").write_text("not a folder")
    settings = {"ADMIN_API_KEYS": key_entry("curator", KEY), "IMAGE_ROOT": str(tmp_path)}
    async with gateway(addresses, **settings) as http:
        response = await add(http, painting(27), id="never-written", title="Unwritten", catalogue="blocked")
    assert_error(response, 503, "image_storage_unavailable")
    assert int(response.headers["Retry-After"]) >= 1
    assert "never-written" not in await stored(search, "never-written")


async def test_an_influence_outage_still_stores_the_artwork_marked_degraded(addresses, search):
    """Fault: nothing listens at the influence address."""
    keys = key_entry("curator", KEY)
    async with gateway(addresses, ADMIN_API_KEYS=keys, INFLUENCE_ADDR="127.0.0.1:1") as http:
        response = await add(
            http, painting(26), id="admin-degraded", title="Alone", artist="Unreachable Graph"
        )
        assert response.status_code == 201 and response.json()["degraded"] == ["influence"]
        assert_error(await http.get("/v1/artists"), 503, "influence_unavailable")
    assert "admin-degraded" in await stored(search, "admin-degraded")


async def test_a_batch_adds_the_good_images_and_rejects_each_bad_one_with_its_reason(
    client, search, image_root
):
    metadata = [
        {
            "filename": "good1.png",
            "id": "batch-one",
            "title": "Batch One",
            "artist": "Batch Painter",
            "year": 1900,
        },
        {"filename": "good2.jpg", "id": "batch-two", "title": "Batch Two", "catalogue": "batchcat"},
        {"filename": "broken.png", "id": "batch-broken", "title": "Broken"},
        {"filename": "badmeta.png", "id": "batch-bad-meta", "title": "Bad", "year": "soon"},
        {"filename": "dupid.png", "id": "batch-one", "title": "Same id"},
        {"filename": "missing.png", "title": "Nobody uploaded me"},
    ]
    files = [
        ("images", ("good1.png", painting(30), "image/png")),
        ("images", ("good2.jpg", painting(31, "JPEG"), "image/jpeg")),
        ("images", ("broken.png", b"\x89PNG\r\n\x1a\n garbage", "image/png")),
        ("images", ("badmeta.png", painting(32), "image/png")),
        ("images", ("dupid.png", painting(33), "image/png")),
        ("images", ("nometa.png", painting(34), "image/png")),
    ]
    response = await client.post(
        "/v1/artworks/batch", headers=AUTH, data={"metadata": json.dumps(metadata)}, files=files
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["added"], body["rejected"]) == (2, 5)
    results = {r["filename"]: r for r in body["results"]}
    assert results["good1.png"]["status"] == "added" and results["good1.png"]["artwork"]["year"] == 1900
    assert results["good2.jpg"]["artwork"]["catalogue"] == "batchcat"
    reasons = {name: r.get("reason", "") for name, r in results.items()}
    assert "PNG" in reasons["broken.png"]
    assert "year" in reasons["badmeta.png"]
    assert "twice" in reasons["dupid.png"]
    assert "no entry" in reasons["nometa.png"]
    assert "no uploaded image" in reasons["missing.png"]
    assert set(await stored(search, "batch-one", "batch-two", "batch-broken", "batch-bad-meta")) == {
        "batch-one",
        "batch-two",
    }
    assert (image_root / "batchcat" / "batch-two.jpg").is_file()
    again = await client.post(
        "/v1/artworks/batch",
        headers=AUTH,
        data={"metadata": json.dumps(metadata[:1])},
        files=files[:1],
    )
    assert (
        again.json()["results"][0]["status"] == "rejected"
        and "exists" in again.json()["results"][0]["reason"]
    )


@pytest.mark.parametrize(
    ("metadata", "words"),
    [
        ("not json", ("JSON",)),
        ('{"filename": "a.png"}', ("list",)),
        ('[{"title": "x"}]', ("metadata[0]", "filename")),
    ],
)
async def test_a_batch_with_unusable_metadata_is_refused_whole(client, search, metadata, words):
    before = await count(search)
    response = await client.post(
        "/v1/artworks/batch",
        headers=AUTH,
        data={"metadata": metadata},
        files=[("images", ("a.png", painting(40), "image/png"))],
    )
    assert_error(response, 400, "invalid_metadata", *words)
    assert await count(search) == before


async def test_a_patch_changes_metadata_and_keeps_the_stored_vector(client, search):
    assert (
        await add(client, painting(50), id="admin-patch", title="Before", artist="Patch Painter")
    ).status_code == 201
    vector = np.array((await stored(search, "admin-patch"))["admin-patch"].embedding.values)
    response = await client.patch(
        "/v1/artworks/admin-patch",
        headers=AUTH,
        json={
            "title": "After",
            "year": 1888,
            "style": None,
            "artist": "Renamed Painter",
            "extra": {"museum": "M"},
        },
    )
    assert response.status_code == 200, response.text
    artwork = response.json()["artwork"]
    assert (artwork["title"], artwork["year"], artwork["style"], artwork["artist"]) == (
        "After",
        1888,
        None,
        "Renamed Painter",
    )
    record = (await stored(search, "admin-patch"))["admin-patch"]
    assert (record.artwork.title, record.artwork.year, record.artwork.extra["museum"]) == ("After", 1888, "M")
    assert record.artwork.image_uri == "admin-patch.png" and record.artwork.extra["added_by"] == "curator"
    np.testing.assert_allclose(np.array(record.embedding.values), vector, atol=2e-3)
    assert (await client.get("/v1/artists", params={"prefix": "renamed painter"})).json()["artists"]

    removed = await client.patch("/v1/artworks/admin-patch", headers=AUTH, json={"extra": {"museum": None}})
    assert "museum" not in removed.json()["artwork"]["extra"]

    for body, status, code in [
        ({}, 400, "invalid_metadata"),
        ({"title": ""}, 400, "invalid_metadata"),
        ({"catalogue": "elsewhere"}, 422, "invalid_request"),
        ({"id": "other"}, 422, "invalid_request"),
        ({"year": "nineteen"}, 422, "invalid_request"),
        ({"title": "x\u0000y"}, 400, "invalid_metadata"),
        ({"extra": {"added_by": None}}, 400, "invalid_metadata"),
        ({"artist": "x" * 501}, 422, "invalid_request"),
    ]:
        assert_error(await client.patch("/v1/artworks/admin-patch", headers=AUTH, json=body), status, code)
    lone_surrogate = b'{"title": "bad \\ud800 text"}'
    response = await client.patch(
        "/v1/artworks/admin-patch",
        headers={**AUTH, "Content-Type": "application/json"},
        content=lone_surrogate,
    )
    assert response.status_code in (400, 422), response.text
    assert (await stored(search, "admin-patch"))["admin-patch"].artwork.title == "After"
    assert_error(
        await client.patch("/v1/artworks/no-such-work", headers=AUTH, json={"title": "t"}), 404, "not_found"
    )


async def upsert_plain(search, *ids: str, **fields: object) -> None:
    """Artworks stored straight into search (no image to encode): the admin routes only edit them."""
    vector = [1.0] + [0.0] * 2663
    items = [
        search_pb2.IndexedArtwork(artwork={"id": i, "title": i, **fields}, embedding={"values": vector})
        for i in ids
    ]
    await search.Upsert(search_pb2.UpsertRequest(collection=COLLECTION, items=items), timeout=10)


async def test_a_patch_racing_a_delete_never_brings_the_artwork_back(client, search):
    ids = [f"admin-race-{n}" for n in range(12)]
    await upsert_plain(search, *ids, artist="Race Painter")
    before = await count(search)

    def requests_for(n: int, artwork_id: str) -> list:
        url = f"/v1/artworks/{artwork_id}"
        patches = [
            client.patch(url, headers=AUTH, json=body)
            for body in ({"title": "Patched"}, {"year": 1900}, {"extra": {"k": "v"}}, {"artist": f"New {n}"})
        ]
        patches.insert(n % 5, client.delete(url, headers=AUTH))  # the DELETE before, among, after the PATCHes
        return patches

    calls = [requests_for(n, artwork_id) for n, artwork_id in enumerate(ids)]
    answers = await asyncio.gather(*(call for per_id in calls for call in per_id))
    for n, artwork_id in enumerate(ids):
        mine = answers[n * 5 : n * 5 + 5]
        deleted = mine.pop(n % 5)
        assert deleted.status_code == 204, deleted.text
        for patched in mine:
            assert patched.status_code in (200, 404), patched.text
            if patched.status_code == 404:
                assert_error(patched, 404, "not_found", artwork_id)
        assert_error(await client.get(f"/v1/artworks/{artwork_id}"), 404, "not_found")
    assert await stored(search, *ids) == {}
    assert await count(search) == before - len(ids)


async def test_concurrent_patches_of_different_fields_all_stay(client, search):
    ids = [f"admin-merge-{n}" for n in range(6)]
    await upsert_plain(search, *ids, extra={"keep": "me", "drop": "me"})
    bodies = [
        {"title": "Merged title"},
        {"year": 1877},
        {"genre": "marine"},
        {"extra": {"first": "1"}},
        {"extra": {"second": "2", "drop": None}},
    ]
    answers = await asyncio.gather(
        *(client.patch(f"/v1/artworks/{i}", headers=AUTH, json=body) for i in ids for body in bodies)
    )
    assert all(answer.status_code == 200 for answer in answers), [a.text for a in answers]
    for record in (await stored(search, *ids)).values():
        artwork = record.artwork
        assert (artwork.title, artwork.year, artwork.genre) == ("Merged title", 1877, "marine")
        assert dict(artwork.extra) == {"keep": "me", "first": "1", "second": "2"}


async def test_a_patch_answers_the_stored_record_and_registers_only_a_new_artist(client, search):
    await upsert_plain(search, "admin-artist", artist="Already Stored Artist")
    same = await client.patch(
        "/v1/artworks/admin-artist", headers=AUTH, json={"artist": "Already Stored Artist"}
    )
    assert same.status_code == 200 and same.json()["degraded"] == []
    # Not registered: the artist did not change (only artists new to the artwork join the graph).
    assert (await client.get("/v1/artists", params={"prefix": "already stored"})).json()["artists"] == []
    renamed = await client.patch("/v1/artworks/admin-artist", headers=AUTH, json={"artist": "Freshly Named"})
    assert renamed.json()["artwork"]["artist"] == "Freshly Named"
    assert (await client.get("/v1/artists", params={"prefix": "freshly named"})).json()["artists"]
    # Only an empty extra: nothing to change, the stored record comes back as it is.
    unchanged = await client.patch("/v1/artworks/admin-artist", headers=AUTH, json={"extra": {}})
    assert unchanged.status_code == 200 and unchanged.json()["artwork"] == renamed.json()["artwork"]
    quoted = await client.patch("/v1/artworks/admin-artist", headers=AUTH, json={"extra": {'say "hi"': None}})
    assert_error(quoted, 400, "invalid_metadata", "cannot be removed")
    assert_error(
        await client.patch("/v1/artworks/no-such-work", headers=AUTH, json={"extra": {}}), 404, "not_found"
    )


async def test_delete_removes_the_record_and_its_added_image(client, search, image_root):
    assert (
        await add(client, painting(60), id="admin-gone", title="Short-lived", catalogue="temp")
    ).status_code == 201
    assert (image_root / "temp" / "admin-gone.png").is_file()
    response = await client.delete("/v1/artworks/admin-gone", headers=AUTH)
    assert response.status_code == 204 and response.content == b""
    assert await stored(search, "admin-gone") == {}
    assert not (image_root / "temp" / "admin-gone.png").exists()
    assert_error(await client.delete("/v1/artworks/admin-gone", headers=AUTH), 404, "not_found")


async def test_delete_leaves_images_it_did_not_write(client, search, image_root):
    ingested = image_root / "ingested" / "kept.png"
    ingested.parent.mkdir(parents=True, exist_ok=True)
    ingested.write_bytes(b"ingested image")
    vector = [1.0] + [0.0] * (2663)
    item = search_pb2.IndexedArtwork(
        artwork={"id": "ingested-kept", "title": "Kept", "catalogue": "ingested", "image_uri": "kept.png"},
        embedding={"values": vector},
    )
    await search.Upsert(search_pb2.UpsertRequest(collection=COLLECTION, items=[item]), timeout=10)
    assert (await client.delete("/v1/artworks/ingested-kept", headers=AUTH)).status_code == 204
    assert ingested.read_bytes() == b"ingested image"


async def test_the_listing_pages_through_every_artwork_once(client, search):
    assert (await add(client, painting(70), id="admin-list-1", title="L1")).status_code == 201
    assert (await add(client, painting(71), id="admin-list-2", title="L2")).status_code == 201
    ids, cursor, pages = [], None, 0
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get("/v1/artworks", headers=AUTH, params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["artworks"]) <= 2 and page["limit"] == 2
        ids += [artwork["id"] for artwork in page["artworks"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(ids) == len(set(ids)) == await count(search) and pages >= 2
    assert {"admin-list-1", "admin-list-2"} <= set(ids)
    assert_error(
        await client.get("/v1/artworks", headers=AUTH, params={"cursor": "not-a-cursor"}),
        400,
        "invalid_request",
    )
    assert_error(await client.get("/v1/artworks", headers=AUTH, params={"limit": 0}), 422, "invalid_request")


# ---- artists and influences ---------------------------------------------------------------------------


async def test_artist_reads_need_no_key(client):
    listed = await client.get("/v1/artists", params={"prefix": "Gogh"})
    assert listed.status_code == 200
    assert listed.json()["artists"][0] == {
        "key": "vincent van gogh",
        "name": "Vincent van Gogh",
        "birth_year": 1853,
        "death_year": 1890,
        "movement": listed.json()["artists"][0]["movement"],
    }
    page = (await client.get("/v1/artists", params={"limit": 3})).json()
    assert len(page["artists"]) == 3 and page["next_cursor"] == page["artists"][-1]["key"]
    following = (await client.get("/v1/artists", params={"limit": 3, "cursor": page["next_cursor"]})).json()
    assert following["artists"][0]["key"] > page["next_cursor"]

    neighbours = await client.get("/v1/artists/Van Gogh/neighbours")
    assert neighbours.status_code == 200
    body = neighbours.json()
    assert body["artist"]["key"] == "vincent van gogh"
    influencers = {n["artist"]["key"]: n for n in body["influencers"]}
    assert influencers["anton mauve"]["relation"] == "teacher"
    assert "henri matisse" in {n["artist"]["key"] for n in body["influenced"]}
    assert_error(
        await client.get("/v1/artists/Nobody Whatsoever/neighbours"), 404, "not_found", "Nobody Whatsoever"
    )

    path = (await client.get("/v1/artists/path", params={"from": "Hokusai", "to": "Matisse"})).json()
    assert path["found"] and path["hops"] == 2
    assert [a["key"] for a in path["artists"]] == ["katsushika hokusai", "vincent van gogh", "henri matisse"]
    assert path["edges"][0] == {
        "influencer": "katsushika hokusai",
        "influenced": "vincent van gogh",
        "relation": "influenced",
        "source": "Van Gogh Museum: Van Gogh and Japan",
    }
    too_short = (
        await client.get("/v1/artists/path", params={"from": "Hokusai", "to": "Matisse", "max_hops": 1})
    ).json()
    assert too_short == {"found": False, "hops": None, "artists": [], "edges": []}
    assert_error(
        await client.get("/v1/artists/path", params={"from": "Hokusai"}), 422, "invalid_request", "to"
    )
    assert_error(
        await client.get("/v1/artists/path", params={"from": "a", "to": "b", "max_hops": -1}),
        422,
        "invalid_request",
    )
    assert_error(await client.get("/v1/artists", params={"limit": 5000}), 422, "invalid_request")


async def test_artists_and_influences_are_added_with_a_key(client):
    added = await client.post(
        "/v1/artists",
        headers=AUTH,
        json={
            "artists": [{"name": "Hilda Newcomer", "birth_year": 1901, "movement": "Test School"}],
            "influences": [{"influencer": "Hokusai", "influenced": "Hilda Newcomer", "source": "a letter"}],
        },
    )
    assert added.status_code == 200 and added.json() == {"artists_added": 1, "influences_added": 1}
    edges = await client.post(
        "/v1/influences",
        headers=AUTH,
        json={
            "influences": [{"influencer": "Hilda Newcomer", "influenced": "Ivo Pupil", "relation": "teacher"}]
        },
    )
    assert edges.json() == {"artists_added": 1, "influences_added": 1}
    hilda = (await client.get("/v1/artists/hilda newcomer/neighbours")).json()
    assert hilda["artist"]["birth_year"] == 1901 and hilda["artist"]["movement"] == "Test School"
    assert [(n["artist"]["key"], n["source"]) for n in hilda["influencers"]] == [
        ("katsushika hokusai", "a letter")
    ]
    assert [(n["artist"]["key"], n["relation"]) for n in hilda["influenced"]] == [("ivo pupil", "teacher")]
    path = (await client.get("/v1/artists/path", params={"from": "Ivo Pupil", "to": "Van Gogh"})).json()
    assert path["hops"] == 3


@pytest.mark.parametrize(
    ("url", "body", "status", "code"),
    [
        (
            "/v1/influences",
            {"influences": [{"influencer": "Van Gogh", "influenced": "vincent van gogh"}]},
            400,
            "invalid_request",
        ),
        (
            "/v1/influences",
            {"influences": [{"influencer": "A B", "influenced": "C D", "relation": "admired"}]},
            422,
            "invalid_request",
        ),
        ("/v1/influences", {"influences": []}, 422, "invalid_request"),
        (
            "/v1/influences",
            {"influences": [{"influencer": "!!!", "influenced": "C D"}]},
            422,
            "invalid_request",
        ),
        ("/v1/artists", {"artists": [{"name": ""}]}, 422, "invalid_request"),
        ("/v1/artists", {"artists": [{"name": "Real Name", "birth_year": "when"}]}, 422, "invalid_request"),
        ("/v1/artists", {"artists": [{"name": "Real Name", "nickname": "x"}]}, 422, "invalid_request"),
        ("/v1/artists", {"artists": [{"name": "bad\u0007bell"}]}, 422, "invalid_request"),
        ("/v1/artists", [], 422, "invalid_request"),
    ],
)
async def test_bad_graph_additions_add_nothing(client, url, body, status, code):
    before = (await client.get("/v1/artists", params={"limit": 1000})).json()
    assert_error(await client.post(url, headers=AUTH, json=body), status, code)
    after = (await client.get("/v1/artists", params={"limit": 1000})).json()
    assert after == before


@pytest.mark.parametrize(
    "url",
    [
        "/v1/artists/%00/neighbours",
        "/v1/artists/%ED%A0%80/neighbours",
        "/v1/artists/%FF%FE/neighbours",
        "/v1/artists/" + "x" * 600 + "/neighbours",
        "/v1/artists?prefix=%00",
        "/v1/artists?cursor=%ED%A0%80",
        "/v1/artists?prefix=" + "p" * 300,
        "/v1/artists/path?from=%01&to=b",
        "/v1/artists/path?from=a&to=%ED%A0%80",
    ],
)
async def test_odd_input_on_public_artist_routes_never_fails_the_server(client, url):
    """Invalid UTF-8 in a query arrives as replacement characters (a valid, unknown name: 200)."""
    response = await client.get(url)
    assert response.status_code in (200, 400, 404, 422), response.text
    body = response.json()
    assert response.status_code == 200 or body["error"]["message"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("PATCH", "/v1/artworks/%00"),
        ("DELETE", "/v1/artworks/%ED%A0%80"),
        ("DELETE", "/v1/artworks/" + "i" * 300),
    ],
)
async def test_odd_artwork_ids_are_a_4xx_json_error(client, method, url):
    response = await client.request(
        method, url, headers=AUTH, json={"title": "t"} if method == "PATCH" else None
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


class SlowWritingInfluence(InfluenceServicer):
    """The real influence service with a fault injected on purpose: every write takes WRITE_DELAY_S."""

    WRITE_DELAY_S = 1.5

    async def AddArtists(self, request, context):
        await asyncio.sleep(self.WRITE_DELAY_S)
        return await super().AddArtists(request, context)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def slow_influence(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    graph = await open_influence_graph(
        InfluenceConfig(state_dir=tmp_path_factory.mktemp("slow-influence"), default_max_hops=10)
    )
    server = GrpcServiceServer([registration(SlowWritingInfluence(graph, 10))])
    try:
        yield f"127.0.0.1:{await server.start()}"
    finally:
        await server.stop(0)
        await graph.close()


@pytest.mark.parametrize(("write_timeout", "expected"), [("5", 200), ("0.5", 503)])
async def test_admin_writes_have_their_own_deadline_not_the_query_deadline(
    addresses, slow_influence, write_timeout, expected
):
    """INFLUENCE_TIMEOUT_S (0.3 s here) bounds the query path; a write that takes 1.5 s still lands under
    ADMIN_WRITE_TIMEOUT_S=5, and answers 503 within ADMIN_WRITE_TIMEOUT_S=0.5."""
    settings = {
        "INFLUENCE_ADDR": slow_influence,
        "INFLUENCE_TIMEOUT_S": "0.3",
        "ADMIN_WRITE_TIMEOUT_S": write_timeout,
        "ADMIN_API_KEYS": key_entry("curator", KEY),
    }
    name = f"Slow Writer {write_timeout}"
    async with gateway(addresses, **settings) as http:
        started = asyncio.get_running_loop().time()
        reply = await http.post("/v1/artists", headers=AUTH, json={"artists": [{"name": name}]})
        took = asyncio.get_running_loop().time() - started
        assert reply.status_code == expected, reply.text
        if expected == 503:
            assert took < 1.2 and reply.headers["retry-after"]
        else:
            assert took >= SlowWritingInfluence.WRITE_DELAY_S
            # A read on the query path keeps the query deadline and is not slowed by the write deadline.
            read = await http.get(f"/v1/artists/{name}/neighbours")
            assert read.status_code == 200, read.text
