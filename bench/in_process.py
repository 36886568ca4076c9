"""The load test's in-process yardstick: the same components as the stack, composed in one process with no
gRPC or HTTP hop between them.

    python -m bench.in_process --model M --state-dir D --grpc-port G --http-port H

One process runs the encoder (decode, micro-batched onnxruntime, descriptor, painting locator), the search
service's engine (qdrant-edge, HNSW built in the background as in the service), the influence graph and the
gateway's query path (fusion, explanations, JSON) behind uvicorn on H. The gateway reaches the three servicers
through `DirectStub`s: the same request messages handed to the same servicer methods, nothing serialised, no
channel, no interceptor. The servicers are also served on G over gRPC, only so that bench.loadtest can fill
this collection with exactly the same ingest and upserts as the stack's; queries never use that port.

The difference between the stack and this process at the same load is what the hops cost (issue 16).
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import uvicorn

from artsearch.config import Env
from artsearch.grpc_server import GrpcServiceServer
from services.encoder.backend_factory import open_encoder_service
from services.encoder.config import EncoderConfig
from services.encoder.server import encoder_registration
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig
from services.gateway.downstream import ServiceStubs
from services.influence.backend_factory import open_influence_graph
from services.influence.config import InfluenceConfig
from services.influence.server import InfluenceServicer, registration
from services.search.backend_factory import open_artwork_store
from services.search.config import SearchConfig
from services.search.server import SearchService, search_registration

UNUSED_ADDRESS = "127.0.0.1:9"  # the gateway's configuration names addresses; the direct stubs ignore them


class _Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code, self.details = code, details


class DirectContext:
    """What the servicers use of grpc.aio's ServicerContext: abort, code, time_remaining."""

    def __init__(self, timeout: float | None) -> None:
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._code: grpc.StatusCode | None = None

    async def abort(self, code: grpc.StatusCode, details: str = "") -> None:
        self._code = code
        raise _Aborted(code, details)

    def code(self) -> grpc.StatusCode | None:
        return self._code

    def time_remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    def invocation_metadata(self) -> tuple[()]:
        return ()


class DirectStub:
    """A stub whose methods call the servicer's: `stub.Search(request, timeout=..., metadata=...)`. A call the
    servicer aborts raises grpc.aio.AioRpcError, as through a channel."""

    def __init__(self, servicer: object) -> None:
        self._servicer = servicer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._servicer, name)
        if inspect.isasyncgenfunction(method):
            return _streaming(method)

        async def call(request: object, timeout: float | None = None, metadata: object = None) -> object:
            try:
                return await method(request, DirectContext(timeout))
            except _Aborted as aborted:
                raise _rpc_error(aborted) from None

        return call


def _streaming(method: Callable[..., AsyncIterator[object]]) -> Callable[..., AsyncIterator[object]]:
    """A server-streaming method (the encoder's EncodeInStages): the call is iterated, as grpc.aio's is."""

    async def call(
        request: object, timeout: float | None = None, metadata: object = None
    ) -> AsyncIterator[object]:
        try:
            async for message in method(request, DirectContext(timeout)):
                yield message
        except _Aborted as aborted:
            raise _rpc_error(aborted) from None

    return call


def _rpc_error(aborted: _Aborted) -> grpc.aio.AioRpcError:
    empty = grpc.aio.Metadata()
    return grpc.aio.AioRpcError(aborted.code, empty, empty, aborted.details)


def _gateway_config(http_port: int, image_root: Path) -> GatewayConfig:
    return GatewayConfig.from_env(
        Env(
            {
                "ARTSEARCH_HOST": "127.0.0.1",
                "ARTSEARCH_PORT": str(http_port),
                "ENCODER_ADDR": UNUSED_ADDRESS,
                "SEARCH_ADDR": UNUSED_ADDRESS,
                "INFLUENCE_ADDR": UNUSED_ADDRESS,
                "IMAGE_ROOT": str(image_root),
                "LOG_LEVEL": "WARNING",
                # As in the load test's stack: every query is encoded.
                "QUERY_CACHE_ENTRIES": "0",
            }
        )
    )


async def serve(model: Path, state_dir: Path, grpc_port: int, http_port: int, image_root: Path) -> None:
    encoder = open_encoder_service(EncoderConfig.from_env(Env({"MODEL_PATH": str(model)})))
    search_config = SearchConfig.from_env(Env({"SEARCH_DATA_DIR": str(state_dir / "search")}))
    store = await open_artwork_store(search_config)
    search = SearchService(store, search_config.region_margin)
    influence_config = InfluenceConfig.from_env(Env({"INFLUENCE_STATE_DIR": str(state_dir / "influence")}))
    graph = await open_influence_graph(influence_config)
    influence = InfluenceServicer(graph, influence_config.default_max_hops)

    filler = GrpcServiceServer(
        [encoder_registration(encoder), search_registration(search), registration(influence)],
        f"127.0.0.1:{grpc_port}",
    )
    await filler.start()
    stubs = ServiceStubs(DirectStub(encoder), DirectStub(search), DirectStub(influence))
    app = create_app(_gateway_config(http_port, image_root), stubs)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=http_port, log_config=None, access_log=False)
    )
    try:
        await server.serve()
    finally:
        await filler.stop(0)
        await encoder.close()
        await store.close()
        await graph.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.in_process", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--image-root", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    asyncio.run(serve(args.model, args.state_dir, args.grpc_port, args.http_port, args.image_root))
    return 0


if __name__ == "__main__":
    sys.exit(main())
