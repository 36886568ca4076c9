"""Body limits while the body arrives (services/gateway/body_limit.py): the middleware alone against a small
ASGI app with a receive callable that counts what was taken, and the whole gateway behind a real uvicorn
server on a free port, sent raw chunked and over-declared requests."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from PIL import Image
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message
from uvicorn_server import served

from artsearch.config import Env
from services.gateway import body_limit
from services.gateway.app import create_app
from services.gateway.body_limit import MAX_DISCARD_BYTES, MULTIPART_OVERHEAD_BYTES, BodyLimitMiddleware
from services.gateway.config import GatewayConfig

LIMIT = 1000
BATCH_LIMIT = 5000
CHUNK = 100


async def echo_size(request: Request) -> JSONResponse:
    return JSONResponse({"received": len(await request.body())})


def limited_app() -> ASGIApp:
    routes = [Route("/upload", echo_size, methods=["POST"]), Route("/batch", echo_size, methods=["POST"])]
    inner = Starlette(routes=routes)
    return BodyLimitMiddleware(
        inner, routes=inner.routes, default_limit=LIMIT, route_limits={("POST", "/batch"): BATCH_LIMIT}
    )


class Upload:
    """An ASGI receive callable sending `size` bytes (None: endless) in chunks; counts the bytes the app
    took, in all and before its answer started."""

    def __init__(self, size: int | None) -> None:
        self.size = size
        self.taken = 0
        self.taken_before_answer: int | None = None

    async def __call__(self) -> Message:
        if self.size is not None and self.taken >= self.size:
            await asyncio.sleep(3600)  # the client has nothing more to send
        chunk = CHUNK if self.size is None else min(CHUNK, self.size - self.taken)
        self.taken += chunk
        more = self.size is None or self.taken < self.size
        return {"type": "http.request", "body": b"x" * chunk, "more_body": more}


async def call(
    app: ASGIApp, path: str, upload: Upload, declared: int | None = None
) -> tuple[int, dict, bytes]:
    headers = [(b"host", b"test")]
    if declared is None:
        headers.append((b"transfer-encoding", b"chunked"))
    else:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": headers,
    }
    sent: list[Message] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            upload.taken_before_answer = upload.taken
        sent.append(message)

    await asyncio.wait_for(app(scope, upload, send), 5)
    start, *bodies = sent
    assert not bodies[-1].get("more_body", False)
    return (
        start["status"],
        {k.decode(): v.decode() for k, v in start["headers"]},
        b"".join(b["body"] for b in bodies),
    )


@pytest.mark.parametrize(("path", "limit"), [("/upload", LIMIT), ("/batch", BATCH_LIMIT)])
async def test_a_body_up_to_the_limit_passes_whole(path, limit):
    status, _, body = await call(limited_app(), path, Upload(limit))
    assert status == 200 and body == b'{"received":%d}' % limit


@pytest.mark.parametrize(("path", "limit"), [("/upload", LIMIT), ("/batch", BATCH_LIMIT)])
async def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(path, limit):
    upload = Upload(100 * limit)
    status, headers, body = await call(limited_app(), path, upload)
    assert status == 413 and headers["connection"] == "close"
    assert (
        body == b'{"error":{"code":"too_large","message":"the request body is larger than %d bytes"}}' % limit
    )
    assert upload.taken_before_answer == limit + CHUNK  # the chunk that passed the limit, not one more
    assert upload.taken == upload.size  # then the rest was read and thrown away, before closing


async def test_a_declared_length_over_the_limit_is_refused_before_reading():
    upload = Upload(LIMIT + 1)
    status, headers, body = await call(limited_app(), "/upload", upload, declared=LIMIT + 1)
    assert status == 413 and b"too_large" in body
    assert upload.taken_before_answer == 0
    assert "connection" not in headers  # a small declared rest is thrown away: the connection stays usable


async def test_a_declared_length_too_large_to_throw_away_closes_without_reading(monkeypatch):
    monkeypatch.setattr(body_limit, "MAX_DISCARD_BYTES", 10 * LIMIT)
    upload = Upload(10 * LIMIT + 1)
    status, headers, _ = await call(limited_app(), "/upload", upload, declared=10 * LIMIT + 1)
    assert status == 413 and headers["connection"] == "close"
    assert upload.taken == 0


async def test_what_is_thrown_away_is_bounded_in_bytes_and_time(monkeypatch):
    monkeypatch.setattr(body_limit, "MAX_DISCARD_BYTES", 10 * LIMIT)
    endless = Upload(None)
    assert (await call(limited_app(), "/upload", endless))[0] == 413
    assert endless.taken <= LIMIT + CHUNK + 10 * LIMIT + CHUNK
    monkeypatch.setattr(body_limit, "MAX_DISCARD_SECONDS", 0.2)
    stalled = Upload(50 * LIMIT)  # sends this much, then nothing more, never ending the body
    started = time.monotonic()
    assert (await call(limited_app(), "/upload", stalled))[0] == 413
    assert time.monotonic() - started < 2


# ---- the gateway behind a real server ------------------------------------------------------------------

MAX_UPLOAD = 200_000
GATEWAY_LIMIT = MAX_UPLOAD + MULTIPART_OVERHEAD_BYTES


@pytest.fixture
async def gateway() -> AsyncIterator[tuple[str, int]]:
    env = {name: "127.0.0.1:1" for name in ("ENCODER_ADDR", "SEARCH_ADDR", "INFLUENCE_ADDR")}
    env |= {"MAX_UPLOAD_BYTES": str(MAX_UPLOAD), "ENCODE_TIMEOUT_S": "2"}
    async with served(create_app(GatewayConfig.from_env(Env(env)))) as address:
        yield address


def multipart(image: bytes, boundary: str = "limit-test") -> tuple[dict[str, str], bytes, bytes]:
    """Headers, the part before the image bytes and the closing part of a multipart `image` upload."""
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    return (
        {"Content-Type": f"multipart/form-data; boundary={boundary}"},
        head + image,
        f"\r\n--{boundary}--\r\n".encode(),
    )


class Chunks:
    """A chunked request body: the given bytes, then filler up to `total`; records how much was sent."""

    def __init__(self, first: bytes, total: int, last: bytes = b"", chunk: int = 64 * 1024) -> None:
        self.first, self.total, self.last, self.chunk = first, total, last, chunk
        self.sent = 0
        self.sent_when_answered: int | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        self.sent = len(self.first)
        while self.sent < self.total:
            piece = min(self.chunk, self.total - self.sent)
            self.sent += piece
            yield b"\0" * piece
        yield self.last


def png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.effect_noise((side, side), 64).convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


async def send_chunked(address: tuple[str, int], path: str, headers: dict[str, str], body: Chunks) -> bytes:
    """Sends a chunked request over a raw connection while reading the answer at the same time, as
    browsers and curl do (httpx reads only once the whole body is sent), noting in `body` how much had
    been sent when the answer came. The answer's bytes, up to the server closing the connection."""
    reader, writer = await asyncio.open_connection(*address)
    head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: gateway\r\nTransfer-Encoding: chunked\r\n{head}\r\n".encode()
    )

    async def write_body() -> None:
        async for piece in body:
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    sending = asyncio.create_task(write_body())
    answer = b""
    try:
        while chunk := await asyncio.wait_for(reader.read(65536), 10):
            if not answer:
                body.sent_when_answered = body.sent
            answer += chunk
    except ConnectionResetError:
        pass  # the answer came before the reset
    finally:
        sending.cancel()
        await asyncio.gather(sending, return_exceptions=True)
        writer.close()
    return answer


async def test_a_chunked_upload_is_answered_413_as_soon_as_it_passes_the_limit(gateway):
    headers, head, _ = multipart(png(64))
    body = Chunks(head, total=200 * GATEWAY_LIMIT)  # a 50 MB "image"
    answer = await send_chunked(gateway, "/v1/search", headers, body)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"connection: close" in answer.lower()
    assert answer.endswith(
        b'"code":"too_large","message":"the request body is larger than %d bytes"}}' % GATEWAY_LIMIT
    )
    assert body.sent_when_answered is not None and body.sent_when_answered < body.total // 4


async def test_normal_chunked_and_sized_uploads_still_reach_the_route(gateway):
    """A picture under the limit passes the middleware whole: the route checks it and asks the encoder
    (down here, so 503); a non-image gets the route's own 415; an oversize image inside the margin the
    route's own 413."""
    host, port = gateway
    url = f"http://{host}:{port}/v1/search"
    picture = png(64)
    async with httpx.AsyncClient(timeout=10) as client:
        for content, expected, code in [
            (picture, 503, "encoder_unavailable"),
            (b"plain text, no picture", 415, "unsupported_media_type"),
            (picture + b"\0" * MAX_UPLOAD, 413, "too_large"),
        ]:
            headers, head, tail = multipart(content)
            chunked = await client.post(url, headers=headers, content=Chunks(head, len(head), tail))
            sized = await client.post(url, headers=headers, content=head + tail)
            for response in (chunked, sized):
                assert response.status_code == expected, response.text
                assert response.json()["error"]["code"] == code


async def test_an_over_declared_length_is_answered_from_the_headers_alone(gateway):
    host, port = gateway
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(
        b"POST /v1/search HTTP/1.1\r\nHost: gateway\r\nContent-Type: multipart/form-data; boundary=x\r\n"
        b"Content-Length: %d\r\n\r\n" % (1000 * GATEWAY_LIMIT)
    )
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 5)  # the server answers and closes; no byte of body sent
    writer.close()
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert b"connection: close" in answer.lower()  # more than the server would read and throw away
    assert b'"code":"too_large"' in answer


async def test_a_client_that_sends_a_whole_too_large_body_first_still_gets_413(gateway):
    """httpx reads the answer only once the body is sent: the rest of the body (up to MAX_DISCARD_BYTES)
    is read and thrown away by the server, so the connection is not reset under the client."""
    host, port = gateway
    too_large = b"\0" * (30 * 1024 * 1024)
    assert len(too_large) <= MAX_DISCARD_BYTES
    async with httpx.AsyncClient(timeout=20) as client:
        response = await client.post(
            f"http://{host}:{port}/v1/search",
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            content=too_large,
        )
        assert response.status_code == 413 and response.json()["error"]["code"] == "too_large"
        assert "close" not in response.headers.get("connection", "")
        headers, head, _ = multipart(png(64))
        chunked = Chunks(head, total=10 * GATEWAY_LIMIT)
        response = await client.post(f"http://{host}:{port}/v1/search", headers=headers, content=chunked)
        assert response.status_code == 413 and response.headers["connection"] == "close"
