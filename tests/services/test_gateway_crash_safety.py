"""A real gateway process SIGKILLed at each step of adding an artwork: every acknowledged artwork is there
afterwards with its image readable, no stored record is without its image (also one whose upsert landed
after the kill), and the temporary files a killed gateway leaves are swept at the next start. The gateway
runs as `python -m services.gateway`; the encoder, search and influence services are real and in-process,
the search and influence servicers holding chosen calls until the test has killed the gateway."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import pytest_asyncio
from gateway_support import gateway_client, gateway_config
from PIL import Image, ImageDraw

from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import influence_pb2, search_pb2
from artsearch_tools.launcher import free_ports
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.server import EncoderService, encoder_registration
from services.gateway.app import create_app
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration
from services.search.edge_store import EdgeArtworkStore
from services.search.server import SearchService, search_registration

pytestmark = pytest.mark.slow  # real processes and the real encoder model

KEY = "Cr4shS4fe7Kv2Wq9Lm3Xn8Bt1Zy6Hd0Gp"
HEADERS = {"X-API-Key": KEY}
COLLECTION = "crashtest"
CATALOGUE = "crashes"


class Gate:
    """Holds the next call that reaches it, once armed, until released; then the call goes on, or is
    dropped (the service never received it, as far as the stored data goes)."""

    def __init__(self) -> None:
        self.armed = False
        self.drop = False
        self.reached = asyncio.Event()
        self.released = asyncio.Event()

    def arm(self, drop: bool = False) -> None:
        self.armed, self.drop = True, drop
        self.reached.clear()
        self.released.clear()

    async def hold(self, context: grpc.aio.ServicerContext) -> None:
        if not self.armed:
            return
        self.armed = False
        self.reached.set()
        await self.released.wait()
        if self.drop:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "dropped by the test")


class HoldingSearch(SearchService):
    """The real search service; an upsert can be held before it is applied (then applied even though its
    caller is gone: a write already under way in a database completes), or after it is applied, unanswered.
    """

    def __init__(self, store: EdgeArtworkStore) -> None:
        super().__init__(store)
        self.before_upsert, self.after_upsert = Gate(), Gate()
        self._landing: set[asyncio.Task] = set()

    async def Upsert(
        self, request: search_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        landing = asyncio.create_task(self._held_upsert(request, context))
        self._landing.add(landing)  # not cancelled with the call when its caller dies
        landing.add_done_callback(self._landing.discard)
        reply = await asyncio.shield(landing)
        await self.after_upsert.hold(context)
        return reply

    async def _held_upsert(
        self, request: search_pb2.UpsertRequest, context: grpc.aio.ServicerContext
    ) -> search_pb2.UpsertResponse:
        await self.before_upsert.hold(context)
        return await super().Upsert(request, context)

    async def landed(self) -> None:
        """Waits for the upserts under way (also those whose caller died)."""
        await asyncio.gather(*self._landing, return_exceptions=True)


class HoldingInfluence(InfluenceServicer):
    """The real influence service; adding artists (the last step of an addition) can be held."""

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        self.add_artists = Gate()

    async def AddArtists(
        self, request: influence_pb2.AddArtistsRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.AddArtistsResponse:
        await self.add_artists.hold(context)
        return await super().AddArtists(request, context)


@dataclass
class Services:
    addresses: dict[str, str]
    search: HoldingSearch
    influence: HoldingInfluence


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Services]:
    folder = tmp_path_factory.mktemp("crash-services")
    encoder = EncoderService(OnnxRuntimeBackend(model_path), max_batch_images=4, max_image_pixels=50_000_000)
    store = await EdgeArtworkStore.open(folder / "search")
    graph = await open_influence_graph(InfluenceConfig(state_dir=folder / "influence", default_max_hops=10))
    search, influence = HoldingSearch(store), HoldingInfluence(graph, 10)
    servers = {
        "ENCODER_ADDR": GrpcServiceServer([encoder_registration(encoder)]),
        "SEARCH_ADDR": GrpcServiceServer([search_registration(search)]),
        "INFLUENCE_ADDR": GrpcServiceServer([registration(influence)]),
    }
    try:
        addresses = {name: f"127.0.0.1:{await server.start()}" for name, server in servers.items()}
        yield Services(addresses, search, influence)
    finally:
        for server in servers.values():
            await server.stop(0)
        await encoder.close()
        await store.close()
        await graph.close()


@pytest.fixture
def image_root(tmp_path: Path) -> Path:
    """IMAGE_ROOT; the gateway's log goes beside it."""
    root = tmp_path / "images"
    root.mkdir()
    return root


@dataclass
class Gateway:
    """`python -m services.gateway` on a free port, over the services; SIGKILLed and started again."""

    addresses: dict[str, str]
    image_root: Path
    repo_root: Path
    port: int = field(default_factory=lambda: free_ports(1)[0])
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
            **self.addresses,
            "ARTSEARCH_PORT": str(self.port),
            "SEARCH_COLLECTION": COLLECTION,
            "IMAGE_ROOT": str(self.image_root),
            "ADMIN_API_KEYS": f"ops:{hashlib.sha256(KEY.encode()).hexdigest()}",
            "ADMIN_WRITE_TIMEOUT_S": "120",  # a held write is not given up on before the kill
            "ENCODE_TIMEOUT_S": "60",
            "LOG_LEVEL": "WARNING",
        }
        self.process = self._spawn(env)
        async with httpx.AsyncClient(timeout=2) as client:
            for _ in range(600):
                assert self.process.poll() is None, self.log.read_text()[-2000:]
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{self.url}/healthz")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        pytest.fail("the gateway did not answer /healthz within a minute")

    @property
    def log(self) -> Path:
        return self.image_root.parent / "gateway.log"

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen:
        with self.log.open("ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "services.gateway"], cwd=self.repo_root, env=env, stderr=log
            )

    async def kill(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGKILL)
        await asyncio.to_thread(self.process.wait)
        self.process = None

    async def stop(self) -> None:
        if self.process is not None:
            await self.kill()


def painting(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (96, 72), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = int(rng.integers(0, 96)), int(rng.integers(0, 72)), int(rng.integers(5, 30))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


async def add(
    client: httpx.AsyncClient, artwork_id: str, image: bytes, replace: bool = False
) -> httpx.Response:
    return await client.post(
        "/v1/artworks",
        headers=HEADERS,
        params={"replace": "true"} if replace else None,
        data={
            "id": artwork_id,
            "title": f"Crash {artwork_id}",
            "artist": "Hilma af Klint",
            "catalogue": CATALOGUE,
        },
        files={"image": ("a.png", image, "image/png")},
    )


async def add_killed_at(
    gateway: Gateway, gate: Gate, artwork_id: str, image: bytes, replace: bool = False
) -> None:
    """Sends an addition, SIGKILLs the gateway once the call reaches `gate`, then lets the call go on."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
        request = asyncio.create_task(add(client, artwork_id, image, replace))
        await asyncio.wait_for(gate.reached.wait(), 30)
        await gateway.kill()
        gate.released.set()
        with pytest.raises(httpx.HTTPError):
            await request  # never acknowledged


async def stored_images(client: httpx.AsyncClient) -> dict[str, str]:
    """id -> image_uri of every stored record, through the admin listing."""
    listed = await client.get("/v1/artworks", headers=HEADERS, params={"limit": 1000})
    assert listed.status_code == 200, listed.text
    assert listed.json()["next_cursor"] is None
    return {artwork["id"]: artwork["image_uri"] for artwork in listed.json()["artworks"]}


async def assert_every_record_shows_its_image(client: httpx.AsyncClient, sent: dict[str, set[bytes]]) -> None:
    """Every stored record's image is readable and is one the test sent for that id (the last
    acknowledged one, or a later one whose upsert landed after the kill)."""
    for artwork_id in await stored_images(client):
        reply = await client.get(f"/v1/artworks/{artwork_id}/image")
        assert reply.status_code == 200, f"{artwork_id}: {reply.text}"
        assert reply.content in sent[artwork_id], f"{artwork_id}: another image than any sent"


async def test_a_gateway_killed_at_any_step_of_an_addition_leaves_every_record_with_its_image(
    services: Services, image_root: Path, repo_root: Path
):
    gateway = Gateway(services.addresses, image_root, repo_root)
    acknowledged: dict[str, bytes] = {}
    sent: dict[str, set[bytes]] = {}

    def sending(artwork_id: str, seed: int) -> bytes:
        image = painting(seed)
        sent.setdefault(artwork_id, set()).add(image)
        return image

    try:
        await gateway.start()
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            for n in range(2):
                image = sending(f"kept-{n}", n)
                assert (await add(client, f"kept-{n}", image)).status_code == 201
                acknowledged[f"kept-{n}"] = image

        steps = [
            # (gate, drop the held call, artwork id, replace): where the gateway dies
            (services.search.before_upsert, True, "lost-before-upsert", False),  # upsert never arrives
            (services.search.before_upsert, False, "landed-after-kill", False),  # sent, lands after the kill
            (services.search.after_upsert, False, "stored-unanswered", False),  # stored, answer not heard
            (services.search.after_upsert, False, "kept-0", True),  # a replacement, stored, not heard
            (services.influence.add_artists, False, "stored-no-reply", False),  # stored, artist being added
        ]
        for seed, (gate, drop, artwork_id, replace) in enumerate(steps, start=10):
            gate.arm(drop)
            await add_killed_at(gateway, gate, artwork_id, sending(artwork_id, seed), replace)
            await services.search.landed()
            await gateway.start()
            async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
                await assert_every_record_shows_its_image(client, sent)
                for kept_id in acknowledged:
                    reply = await client.get(f"/v1/artworks/{kept_id}/image")
                    assert reply.status_code == 200 and reply.content in sent[kept_id], kept_id

        async with httpx.AsyncClient(base_url=gateway.url, timeout=60) as client:
            stored = await stored_images(client)
            assert "lost-before-upsert" not in stored
            assert {"landed-after-kill", "stored-unanswered", "stored-no-reply", "kept-0", "kept-1"} <= set(
                stored
            )
            # The replacement landed: the record shows the new image, under a name of its own.
            replaced = await client.get("/v1/artworks/kept-0/image")
            assert replaced.content == painting(13) and stored["kept-0"] != "kept-0.png"
            # The gateway still adds, replaces and deletes normally after all this.
            assert (await add(client, "after", painting(99))).status_code == 201
            assert (await add(client, "kept-1", painting(98), replace=True)).status_code == 201
            assert (await client.get("/v1/artworks/kept-1/image")).content == painting(98)
            assert (await client.delete("/v1/artworks/after", headers=HEADERS)).status_code == 204
            await assert_a_lost_image_breaks_nothing(client, image_root)
        assert not list((image_root / CATALOGUE).glob(".upload-*.part")), "a temporary file stayed"
    finally:
        await gateway.stop()


async def assert_a_lost_image_breaks_nothing(client: httpx.AsyncClient, image_root: Path) -> None:
    """A record whose file is gone (a disk lost it): 404s naming it, and it can be listed, replaced and
    deleted."""
    added = await add(client, "lost-file", painting(50))
    assert added.status_code == 201
    (image_root / CATALOGUE / added.json()["artwork"]["image_uri"]).unlink()
    for route in ("image", "thumbnail"):
        reply = await client.get(f"/v1/artworks/lost-file/{route}")
        assert reply.status_code == 404 and reply.json()["error"]["code"] == "image_not_found"
    assert (await client.get("/v1/artworks/lost-file")).status_code == 200
    assert "lost-file" in await stored_images(client)
    assert (await add(client, "lost-file", painting(51), replace=True)).status_code == 201
    assert (await client.get("/v1/artworks/lost-file/image")).content == painting(51)
    for image in (image_root / CATALOGUE).glob("lost-file.*"):
        image.unlink()
    assert (await client.delete("/v1/artworks/lost-file", headers=HEADERS)).status_code == 204


async def test_stale_temporary_uploads_are_swept_at_start_and_fresh_ones_kept(
    services: Services, image_root: Path, repo_root: Path
):
    """A gateway killed while writing leaves `.upload-*.part`; one of minutes ago may still be being
    written by another replica sharing IMAGE_ROOT."""
    folder = image_root / CATALOGUE
    folder.mkdir()
    stale, fresh = folder / ".upload-killed.part", folder / ".upload-writing.part"
    stale.write_bytes(b"half an image")
    fresh.write_bytes(b"an image being written")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    image = folder / "kept.png"
    image.write_bytes(painting(60))
    os.utime(image, (an_hour_ago, an_hour_ago))
    gateway = Gateway(services.addresses, image_root, repo_root)
    try:
        await gateway.start()
        for _ in range(100):  # the sweep runs in the background of the start
            if not stale.exists():
                break
            await asyncio.sleep(0.1)
        assert not stale.exists()
        assert fresh.exists() and image.exists()
    finally:
        await gateway.stop()


async def test_an_upsert_past_its_deadline_keeps_the_image_for_when_it_lands(
    services: Services, image_root: Path
):
    """The write may still land after the gateway gave up on it (503): its record must then show its
    image, so the image is kept. (A refused write removes it: test_gateway_admin.py.)"""
    env = {
        "SEARCH_COLLECTION": COLLECTION,
        "IMAGE_ROOT": str(image_root),
        "ADMIN_API_KEYS": f"ops:{hashlib.sha256(KEY.encode()).hexdigest()}",
        "ADMIN_WRITE_TIMEOUT_S": "0.5",
    }
    app = create_app(gateway_config(services.addresses, **env))
    async with gateway_client(app) as client:
        services.search.before_upsert.arm()
        answer = asyncio.create_task(add(client, "slow-write", painting(70)))
        await asyncio.wait_for(services.search.before_upsert.reached.wait(), 30)
        reply = await answer
        assert reply.status_code == 503 and reply.json()["error"]["code"] == "search_unavailable"
        services.search.before_upsert.released.set()
        await services.search.landed()
        image = await client.get("/v1/artworks/slow-write/image")
        assert image.status_code == 200 and image.content == painting(70)
