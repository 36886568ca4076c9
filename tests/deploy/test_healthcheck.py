"""scripts/healthcheck.py, the images' HEALTHCHECK, against a real gRPC health server and HTTP server."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from artsearch.grpc_server import GrpcServiceServer

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "healthcheck.py"


def run_check(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=30,
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_grpc_check_passes_while_serving_and_fails_after_shutdown():
    # The checks run in a thread: the server answers on this test's event loop.
    server = GrpcServiceServer([], "127.0.0.1:0")
    port = await server.start()
    try:
        assert (await asyncio.to_thread(run_check, "grpc", ARTSEARCH_PORT=str(port))).returncode == 0
        unknown = await asyncio.to_thread(
            run_check, "grpc", "artsearch.v1.NoSuchService", ARTSEARCH_PORT=str(port)
        )
        assert unknown.returncode == 1 and "NOT_FOUND" in unknown.stderr
    finally:
        await server.stop(grace=0)
    stopped = await asyncio.to_thread(run_check, "grpc", ARTSEARCH_PORT=str(port))
    assert stopped.returncode == 1 and "UNAVAILABLE" in stopped.stderr


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_port() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()


def test_http_check_follows_the_status_code(http_port: int):
    assert run_check("http", "/healthz", ARTSEARCH_PORT=str(http_port)).returncode == 0
    failing = run_check("http", "/readyz", ARTSEARCH_PORT=str(http_port))
    assert failing.returncode == 1 and "503" in failing.stderr
    assert run_check("http", "/healthz", ARTSEARCH_PORT=str(free_port())).returncode == 1


def test_unknown_kind_is_a_usage_error():
    assert run_check("tcp").returncode == 2
