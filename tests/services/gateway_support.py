"""What the gateway's per-service tests share: the three gRPC services running in-process on their own
servers (the real model, the embedded search engine, the curated influence graph), and the gateway app
over them driven through httpx.ASGITransport. `from gateway_support import ...`."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
from fastapi import FastAPI
from starlette.types import ASGIApp, Message

from artsearch.config import Env
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from artsearch_tools.catalogue.folder import Catalogue, load_catalogue
from artsearch_tools.ingest import IngestTargets, ingest_catalogue
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.server import EncoderService, encoder_registration
from services.gateway.config import GatewayConfig
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration
from services.search.edge_store import EdgeArtworkStore
from services.search.server import SearchService, search_registration

MAX_HOPS = 10


@asynccontextmanager
async def in_process_services(
    model_path: Path, folder: Path, max_batch_images: int = 16
) -> AsyncIterator[dict[str, str]]:
    """Encoder, search and influence, each on its own in-process gRPC server with its data under `folder`;
    yields the gateway's address settings (ENCODER_ADDR, SEARCH_ADDR, INFLUENCE_ADDR)."""
    encoder = EncoderService(
        OnnxRuntimeBackend(model_path), max_batch_images=max_batch_images, max_image_pixels=50_000_000
    )
    store = await EdgeArtworkStore.open(folder / "search")
    graph = await open_influence_graph(
        InfluenceConfig(state_dir=folder / "influence", default_max_hops=MAX_HOPS)
    )
    servers = {
        "ENCODER_ADDR": GrpcServiceServer([encoder_registration(encoder)]),
        "SEARCH_ADDR": GrpcServiceServer([search_registration(SearchService(store))]),
        "INFLUENCE_ADDR": GrpcServiceServer([registration(InfluenceServicer(graph, MAX_HOPS))]),
    }
    try:
        yield {name: f"127.0.0.1:{await server.start()}" for name, server in servers.items()}
    finally:
        for server in servers.values():
            await server.stop(0)
        await encoder.close()
        await store.close()
        await graph.close()


def catalogue_subset(folder: Path, ids: Collection[str]) -> Catalogue:
    """The catalogue in `folder` reduced to the artworks `ids` (small, quick to ingest); all must be there."""
    full = load_catalogue(folder)
    entries = [e for e in full.entries if e.id in ids]
    assert len(entries) == len(set(ids)), f"not in {folder}: {set(ids) - {e.id for e in entries}}"
    return dataclasses.replace(full, entries=entries, problems=[])


@asynccontextmanager
async def ingested_services(
    model_path: Path, catalogue: Catalogue, folder: Path
) -> AsyncIterator[dict[str, str]]:
    """`in_process_services` with `catalogue` ingested, every artwork of it stored."""
    async with in_process_services(model_path, folder) as addresses:
        report = await ingest_catalogue(catalogue, ingest_targets(addresses))
        assert report.added == len(catalogue.entries), report.summary()
        yield addresses


class FakeClock:
    """A clock the test moves (`now`), for caches that expire entries."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def image_of(catalogue: Catalogue, artwork_id: str) -> bytes:
    return catalogue.path_of(next(e for e in catalogue.entries if e.id == artwork_id)).read_bytes()


def ingest_targets(addresses: Mapping[str, str]) -> IngestTargets:
    return IngestTargets(addresses["ENCODER_ADDR"], addresses["SEARCH_ADDR"], addresses["INFLUENCE_ADDR"])


def gateway_config(addresses: Mapping[str, str], **env: str) -> GatewayConfig:
    """The gateway's configuration over these services; `env` adds or overrides settings."""
    return GatewayConfig.from_env(Env({**addresses, **env}))


@asynccontextmanager
async def gateway_client(app: FastAPI, timeout: float = 60.0) -> AsyncIterator[httpx.AsyncClient]:
    """The app running (its lifespan entered) with an HTTP client on it."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=timeout
        ) as client:
            yield client


async def encoder_model_version(addresses: Mapping[str, str]) -> str:
    """The version of the model the in-process encoder runs."""
    async with open_channel(addresses["ENCODER_ADDR"]) as channel:
        info = await encoder_pb2_grpc.EncoderServiceStub(channel).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=30
        )
    assert info.version
    return info.version


class EndlessUpload:
    """An ASGI receive callable with an endless chunked body, from a client that hangs up once it has an
    answer; counts the bytes the app took before answering."""

    def __init__(self) -> None:
        self.taken = 0
        self.answered = False

    async def __call__(self) -> Message:
        if self.answered:
            return {"type": "http.disconnect"}
        self.taken += 1 << 20
        return {"type": "http.request", "body": b"\0" * (1 << 20), "more_body": True}


async def call_asgi(
    app: ASGIApp,
    method: str,
    path: str,
    headers: dict[str, str],
    receive: EndlessUpload,
    client: tuple[str, int] = ("127.0.0.1", 1),
) -> Message:
    """Sends one request straight to the app from `client`; the answer's start message, with its body."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": client,
        "server": ("gateway", 80),
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        receive.answered = True
        sent.append(message)

    await asyncio.wait_for(app(scope, receive, send), 10)
    return {**sent[0], "body": b"".join(m.get("body", b"") for m in sent[1:])}
