"""Admin keys under attack: a client that presents too many wrong keys waits (429 with Retry-After, before
its key is even looked at, before any body byte is read), others are not affected, and the moment is
logged once; behind trusted proxies the client is the forwarded address. The gateway app over real
in-process services (httpx.ASGITransport, with the peer address each test chooses)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from gateway_support import EndlessUpload, call_asgi, gateway_config, in_process_services

from artsearch.config import ConfigError
from services.gateway.app import create_app

pytestmark = pytest.mark.slow  # runs the real encoder model

KEY = "Qm4TnW8xZc1Vb7Ld3Fk9Hs2Pj6Ry0GaE"
ENTRY = f"curator:{hashlib.sha256(KEY.encode()).hexdigest()}"
GUESSER, BYSTANDER = "203.0.113.66", "198.51.100.20"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with in_process_services(model_path, tmp_path_factory.mktemp("admin-hardening")) as addresses:
        yield addresses


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[None]:
    async with app.router.lifespan_context(app):
        yield


def client_from(app: FastAPI, address: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30)


def throttled_app(services: dict[str, str], **env: str) -> FastAPI:
    settings = {"ADMIN_API_KEYS": ENTRY, "ADMIN_AUTH_MAX_FAILURES": "3", "ADMIN_AUTH_FAILURE_WINDOW_S": "60"}
    return create_app(gateway_config(services, **{**settings, **env}))


async def test_wrong_keys_throttle_their_client_even_for_the_right_key(services, json_log_lines):
    app = throttled_app(services)
    async with running(app), client_from(app, GUESSER) as guesser, client_from(app, BYSTANDER) as other:
        for attempt in range(3):
            wrong = await guesser.get("/v1/artworks", headers={"X-API-Key": f"guess-{attempt}"})
            assert wrong.status_code == 401, wrong.text
        refused = await guesser.get("/v1/artworks", headers={"X-API-Key": KEY})
        assert refused.status_code == 429, refused.text
        assert refused.json()["error"]["code"] == "rate_limited"
        assert "wrong admin keys" in refused.json()["error"]["message"]
        assert 1 <= int(refused.headers["Retry-After"]) <= 20  # one attempt per 60 / 3 s
        # Another client, and the public routes, are not affected.
        assert (await other.get("/v1/artworks", headers={"X-API-Key": KEY})).status_code == 200
        assert (await guesser.get("/v1/artists", params={"prefix": "gogh"})).status_code == 200
        assert (await guesser.get("/v1/artworks", headers={"X-API-Key": "again"})).status_code == 429
    throttled = [line for line in json_log_lines() if line["msg"] == "admin key guessing: client throttled"]
    assert len(throttled) == 1 and throttled[0]["client"] == GUESSER


async def test_only_wrong_keys_count_as_guesses(services):
    app = throttled_app(services)
    async with running(app), client_from(app, GUESSER) as client:
        for _ in range(10):
            assert (await client.get("/v1/artworks", headers={"X-API-Key": KEY})).status_code == 200
            assert (await client.get("/v1/artworks")).status_code == 401  # no key: not a guess
        for attempt in range(3):
            assert (await client.get("/v1/artworks", headers={"X-API-Key": f"g{attempt}"})).status_code == 401
        assert (await client.get("/v1/artworks", headers={"X-API-Key": KEY})).status_code == 429


async def test_a_throttled_client_is_answered_before_its_upload_is_read(services):
    app = throttled_app(services)
    async with running(app), client_from(app, GUESSER) as client:
        for attempt in range(3):
            await client.get("/v1/artworks", headers={"X-API-Key": f"guess-{attempt}"})
        upload = EndlessUpload()
        headers = {"Transfer-Encoding": "chunked", "Content-Type": "multipart/form-data; boundary=b"}
        answer = await call_asgi(
            app, "POST", "/v1/artworks", {**headers, "X-API-Key": KEY}, upload, (GUESSER, 1)
        )
    assert answer["status"] == 429 and upload.taken == 0
    assert json.loads(answer["body"])["error"]["code"] == "rate_limited"
    assert int(dict(answer["headers"])[b"retry-after"]) >= 1


async def test_behind_trusted_proxies_each_forwarded_client_is_throttled_on_its_own(services):
    app = throttled_app(services, TRUSTED_PROXIES="127.0.0.1")
    async with running(app), client_from(app, "127.0.0.1") as proxy:
        for attempt in range(3):
            wrong = await proxy.get(
                "/v1/artworks", headers={"X-API-Key": f"guess-{attempt}", "X-Forwarded-For": GUESSER}
            )
            assert wrong.status_code == 401
        guesser = {"X-API-Key": KEY, "X-Forwarded-For": f"{BYSTANDER}, {GUESSER}"}  # it wrote the left part
        assert (await proxy.get("/v1/artworks", headers=guesser)).status_code == 429
        bystander = {"X-API-Key": KEY, "X-Forwarded-For": BYSTANDER}
        assert (await proxy.get("/v1/artworks", headers=bystander)).status_code == 200


async def test_without_trusted_proxies_forwarded_addresses_are_ignored(services):
    app = throttled_app(services)
    async with running(app), client_from(app, "127.0.0.1") as proxy:
        for attempt in range(3):
            headers = {"X-API-Key": f"guess-{attempt}", "X-Forwarded-For": f"192.0.2.{attempt}"}
            assert (await proxy.get("/v1/artworks", headers=headers)).status_code == 401
        fresh_address = {"X-API-Key": KEY, "X-Forwarded-For": "192.0.2.200"}
        assert (await proxy.get("/v1/artworks", headers=fresh_address)).status_code == 429


async def test_no_throttle_when_switched_off_and_bad_settings_stop_the_start(services):
    app = throttled_app(services, ADMIN_AUTH_MAX_FAILURES="0")
    async with running(app), client_from(app, GUESSER) as client:
        for attempt in range(20):
            assert (await client.get("/v1/artworks", headers={"X-API-Key": f"g{attempt}"})).status_code == 401
        assert (await client.get("/v1/artworks", headers={"X-API-Key": KEY})).status_code == 200
    for bad in (
        {"ADMIN_AUTH_MAX_FAILURES": "-1"},
        {"ADMIN_AUTH_FAILURE_WINDOW_S": "0"},
        {"TRUSTED_PROXIES": "x"},
    ):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            gateway_config(services, **bad)
