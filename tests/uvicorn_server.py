"""An ASGI app behind a real uvicorn server on a free loopback port, inside the test's event loop: for
tests that must see what a real HTTP server does (early answers, chunked bodies, closed connections).

    async with served(app) as (host, port): ...
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.types import ASGIApp


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[tuple[str, int]]:
    """The app behind uvicorn on a free port of 127.0.0.1; yields (host, port)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started, "uvicorn did not start"
        yield sock.getsockname()
    finally:
        server.should_exit = True
        await task
        sock.close()
