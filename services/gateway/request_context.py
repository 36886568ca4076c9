"""Per-request context for every HTTP request: its request id (accepted from X-Request-ID or made up,
set for every log line and downstream call, and echoed in the answer), its metrics and its log line, and a
JSON 500 for an error nothing else caught.

A plain ASGI middleware rather than Starlette's BaseHTTPMiddleware: that one relays the request body and
the answer through extra tasks and memory streams, which costs every upload tenths of a millisecond."""

from __future__ import annotations

import logging
import time

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from artsearch.jsonlog import accept_request_id, request_id_var
from services.gateway.errors import error_response
from services.gateway.telemetry import QUIET_ROUTES, observe_request, route_label

log = logging.getLogger(__name__)


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accept_request_id(Headers(scope=scope).get("x-request-id"))
        token = request_id_var.set(request_id)  # every line logged for this request carries it
        started = time.perf_counter()
        answer = _Answer(send, request_id)
        try:
            try:
                await self.app(scope, receive, answer.send)
            except Exception:
                log.exception("unhandled error")
                if answer.started:  # too late for another answer: the server closes the connection
                    raise
                await error_response(500, "internal", "internal error")(scope, receive, answer.send)
            _observe(scope, answer.status, time.perf_counter() - started)
        finally:
            request_id_var.reset(token)


class _Answer:
    """Passes the answer on, adding X-Request-ID to its headers and noting its status."""

    def __init__(self, send: Send, request_id: str) -> None:
        self._send = send
        self._request_id = request_id
        self.started = False
        self.status = 500

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            MutableHeaders(scope=message)["X-Request-ID"] = self._request_id
        await self._send(message)


def _observe(scope: Scope, status: int, elapsed: float) -> None:
    method = scope["method"]
    route = route_label(scope)
    observe_request(method, route, status, elapsed)
    if route not in QUIET_ROUTES:
        log.info(
            "request",
            extra={"method": method, "route": route, "status": status, "ms": round(elapsed * 1000, 2)},
        )
