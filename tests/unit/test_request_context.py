"""RequestContextMiddleware on a bare Starlette app: the request id, the JSON 500 for an uncaught error,
and an error after the answer began (nothing else can be sent: it propagates)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from services.gateway.request_context import RequestContextMiddleware


async def fine(_: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


async def broken(_: Request) -> JSONResponse:
    raise RuntimeError("a bug")


async def broken_mid_answer(_: Request) -> StreamingResponse:
    async def chunks():
        yield b"first part"
        raise RuntimeError("a bug after the answer began")

    return StreamingResponse(chunks())


def app() -> Starlette:
    routes = [Route("/fine", fine), Route("/broken", broken), Route("/mid", broken_mid_answer)]
    application = Starlette(routes=routes)
    application.add_middleware(RequestContextMiddleware)
    return application


def client(raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app(), raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def test_the_answer_carries_the_request_id_and_is_logged(json_log_lines) -> None:
    async with client() as http:
        answer = await http.get("/fine", headers={"X-Request-ID": "req-42"})
    assert answer.status_code == 200 and answer.json() == {"ok": True}
    assert answer.headers["x-request-id"] == "req-42"
    logged = [line for line in json_log_lines() if line["msg"] == "request"]
    assert [(line["request_id"], line["status"], line["method"]) for line in logged] == [
        ("req-42", 200, "GET")
    ]


async def test_an_uncaught_error_is_a_json_500_with_the_request_id(json_log_lines) -> None:
    async with client() as http:
        answer = await http.get("/broken")
    assert answer.status_code == 500
    assert answer.json() == {"error": {"code": "internal", "message": "internal error"}}
    assert len(answer.headers["x-request-id"]) == 32
    lines = json_log_lines()
    assert any(line["msg"] == "unhandled error" and "a bug" in line.get("exc", "") for line in lines), lines
    assert any(line["msg"] == "request" and line["status"] == 500 for line in lines)


async def test_an_error_after_the_answer_began_propagates() -> None:
    async with client() as http:
        with pytest.raises(RuntimeError, match="after the answer began"):
            await http.get("/mid")
