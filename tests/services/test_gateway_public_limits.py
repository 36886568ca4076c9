"""Load shedding at the door: per-client concurrency and rate limits on the public image routes (search by
upload or URL, style prediction), answered 429 with Retry-After before the body is read, per client address
(or forwarded address behind trusted proxies), in bounded memory; and the encoder shedding load
(RESOURCE_EXHAUSTED, from a fault-injecting encoder) answered 429 with Retry-After through the gateway.
The gateway app over real in-process services (httpx.ASGITransport or ASGI calls from chosen addresses)."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gateway_support import EndlessUpload, call_asgi, gateway_config, in_process_services
from PIL import Image
from starlette.types import Message

from artsearch.config import ConfigError
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from services.gateway.app import create_app
from services.gateway.public_limits import PublicLimitMiddleware

pytestmark = pytest.mark.slow  # runs the real encoder model

ALICE, BOB = "203.0.113.10", "198.51.100.20"
FORM = {"Content-Type": "multipart/form-data; boundary=b"}
ENDLESS = {**FORM, "Transfer-Encoding": "chunked"}


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 48), "crimson").save(buffer, "PNG")
    return buffer.getvalue()


PNG = _png()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with in_process_services(model_path, tmp_path_factory.mktemp("public-limits")) as addresses:
        yield addresses


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)


async def search(client: httpx.AsyncClient, route: str = "/v1/search", **headers: str) -> httpx.Response:
    return await client.post(route, files={"image": ("q.png", PNG, "image/png")}, headers=headers)


def assert_shed(reply: httpx.Response, retry_after: int, *words: str) -> None:
    assert reply.status_code == 429, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert reply.headers["retry-after"] == str(retry_after)
    error = reply.json()["error"]
    assert error["code"] == "rate_limited"
    for word in words:
        assert word in error["message"], error


def shed_count(metrics: str, route: str, reason: str) -> float:
    pattern = rf'^artsearch_http_shed_total\{{reason="{reason}",route="{route}"\}} (\S+)$'
    found = re.search(pattern, metrics, re.M)
    return float(found.group(1)) if found else 0.0


class HeldUpload:
    """An ASGI receive callable: the start of a multipart body, then the rest only once `release` is set
    (a client still uploading: its request is in flight)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = False
        self.answered = False

    async def __call__(self) -> Message:
        if not self.started:
            self.started = True
            return {"type": "http.request", "body": b"--b\r\n", "more_body": True}
        await self.release.wait()
        return {"type": "http.request", "body": b"--b--\r\n", "more_body": False}


async def test_a_client_with_too_many_requests_in_flight_is_shed_before_its_body(services):
    app = create_app(gateway_config(services, PUBLIC_MAX_CONCURRENT_PER_CLIENT="2"))
    async with running(app), client_from(app, BOB) as bob:
        held = [HeldUpload() for _ in range(2)]
        in_flight = [
            asyncio.create_task(call_asgi(app, "POST", "/v1/search", FORM, upload, (ALICE, 1)))
            for upload in held
        ]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in in_flight)
        upload = EndlessUpload()
        answer = await call_asgi(app, "POST", "/v1/predict-style", ENDLESS, upload, (ALICE, 2))
        assert answer["status"] == 429 and upload.taken == 0
        error = json.loads(answer["body"])["error"]
        assert error["code"] == "rate_limited" and "more than 2 requests at once" in error["message"]
        assert dict(answer["headers"])[b"retry-after"] == b"1"
        assert (await search(bob)).status_code == 200  # another client is not affected
        held[0].release.set()
        assert (await in_flight[0])["status"] == 400  # an empty multipart body: answered, its slot freed
        async with client_from(app, ALICE) as alice:
            assert (await search(alice)).status_code == 200
        held[1].release.set()
        await in_flight[1]


async def test_each_client_has_its_own_rate_with_retry_after(services):
    app = create_app(gateway_config(services, PUBLIC_RATE_PER_MIN="6", PUBLIC_RATE_BURST="2"))
    async with running(app), client_from(app, ALICE) as alice, client_from(app, BOB) as bob:
        before = shed_count((await alice.get("/metrics/")).text, "/v1/search", "rate")
        assert (await search(alice)).status_code == 200
        assert (await search(alice, "/v1/predict-style")).status_code == 200  # both routes share the bucket
        assert_shed(await search(alice), 10, "too many requests")  # one request every 10 s
        by_url = await alice.post("/v1/search", json={"url": "https://example.org/a.jpg"})
        assert_shed(by_url, 10)  # a search by URL is limited as well, before anything is fetched
        assert (await search(bob)).status_code == 200
        # The other public routes are not limited.
        assert (await alice.get("/v1/artworks/none/similar")).status_code == 404
        assert (await alice.get("/healthz")).status_code == 200
        after = shed_count((await alice.get("/metrics/")).text, "/v1/search", "rate")
        assert after == before + 2


async def test_a_batch_of_searches_costs_a_token_per_query(services):
    app = create_app(gateway_config(services, PUBLIC_RATE_PER_MIN="6", PUBLIC_RATE_BURST="3"))
    pictures = [("image", (f"q{n}.png", PNG, "image/png")) for n in range(2)]
    async with running(app), client_from(app, ALICE) as alice:
        before = shed_count((await alice.get("/metrics/")).text, "/v1/search/batch", "rate")
        first = await alice.post("/v1/search/batch", files=pictures)
        assert first.status_code == 200 and len(first.json()["results"]) == 2, first.text
        # One token left: the next batch of two gets in at the door, then lacks its second token.
        assert_shed(await alice.post("/v1/search/batch", files=pictures), 10, "2 in this batch")
        after = shed_count((await alice.get("/metrics/")).text, "/v1/search/batch", "rate")
        assert after == before + 1
        assert_shed(await search(alice), 10)  # the refused batch's door token is spent as well


async def test_behind_trusted_proxies_each_forwarded_client_has_its_own_limit(services):
    env = {"PUBLIC_RATE_PER_MIN": "1", "PUBLIC_RATE_BURST": "1", "TRUSTED_PROXIES": "10.0.0.0/8"}
    app = create_app(gateway_config(services, **env))
    async with running(app), client_from(app, "10.1.1.1") as proxy:
        assert (await search(proxy, **{"X-Forwarded-For": ALICE})).status_code == 200
        assert_shed(await search(proxy, **{"X-Forwarded-For": f"{BOB}, {ALICE}"}), 60)  # Alice again
        assert (await search(proxy, **{"X-Forwarded-For": BOB})).status_code == 200
    async with running(app), client_from(app, ALICE) as direct:
        # Not a trusted proxy: what it forwards is ignored, it is Alice.
        assert_shed(await search(direct, **{"X-Forwarded-For": "192.0.2.77"}), 60)


async def test_the_client_table_stays_bounded_under_many_addresses(services):
    app = create_app(gateway_config(services, PUBLIC_RATE_PER_MIN="60", RATE_LIMIT_MAX_CLIENTS="100"))
    async with running(app):
        for n in range(3000):
            upload = EndlessUpload()
            await call_asgi(
                app, "POST", "/v1/search", {}, upload, (f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", 1)
            )
        limiter = _middleware(app).limiter
        assert len(limiter) <= 100


def _middleware(app: FastAPI) -> PublicLimitMiddleware:
    layer = app.middleware_stack
    while not isinstance(layer, PublicLimitMiddleware):
        layer = layer.app
    return layer


async def test_off_by_default_and_bad_settings_stop_the_start(services):
    app = create_app(gateway_config(services))
    async with running(app), client_from(app, ALICE) as alice:
        replies = await asyncio.gather(*(search(alice) for _ in range(30)))
        assert [r.status_code for r in replies] == [200] * 30
    for bad in (
        {"PUBLIC_RATE_PER_MIN": "-1"},
        {"PUBLIC_RATE_BURST": "0"},
        {"PUBLIC_MAX_CONCURRENT_PER_CLIENT": "many"},
        {"RATE_LIMIT_MAX_CLIENTS": "0"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            gateway_config(services, **bad)


# ---- the encoder shedding load -------------------------------------------------------------------------


class BusyEncoder(encoder_pb2_grpc.EncoderServiceServicer):
    """Fault: an encoder whose queues are full: every Encode is refused with RESOURCE_EXHAUSTED."""

    async def Encode(self, request: encoder_pb2.EncodeRequest, context: grpc.aio.ServicerContext) -> None:
        await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "128 images queued, over MAX_QUEUED_IMAGES")


@pytest_asyncio.fixture(loop_scope="session")
async def busy_encoder() -> AsyncIterator[str]:
    server = grpc.aio.server()
    encoder_pb2_grpc.add_EncoderServiceServicer_to_server(BusyEncoder(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)


async def test_a_busy_encoder_is_a_429_with_retry_after(services, busy_encoder):
    key = "Xh7Rw2Lq9Tz4Nc8Vb1Mf6Kd3Gs5Pj0Ya"
    entry = f"ops:{hashlib.sha256(key.encode()).hexdigest()}"
    app = create_app(gateway_config(services, ENCODER_ADDR=busy_encoder, ADMIN_API_KEYS=entry))
    async with running(app), client_from(app, ALICE) as client:
        for route in ("/v1/search", "/v1/predict-style"):
            reply = await search(client, route)
            assert reply.status_code == 429, reply.text
            assert int(reply.headers["retry-after"]) >= 1
            assert reply.json()["error"]["code"] == "encoder_busy"
            assert "busy" in reply.json()["error"]["message"]
        added = await client.post(
            "/v1/artworks",
            headers={"X-API-Key": key},
            data={"title": "Busy"},
            files={"image": ("a.png", PNG, "image/png")},
        )
        assert added.status_code == 429 and int(added.headers["retry-after"]) >= 1
        assert added.json()["error"]["code"] == "encoder_busy"
