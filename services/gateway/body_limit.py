"""Request body limits enforced while the body arrives: a pure ASGI middleware.

Starlette reads a whole multipart body (spooling it to disk) before a route sees it, so a size check in the
route comes after the server has taken every byte. This middleware counts the bytes as they are received
and answers 413 `too_large` as soon as a request passes its limit: at once, without reading anything, when
the declared Content-Length is already over it; otherwise when the counted chunks of a streamed
(Transfer-Encoding: chunked) body pass it.

An early answer (this one, and the admin key check's in admin.py) goes out whole before any more of the
body is read; then the rest of the body is read and thrown away, never kept, up to MAX_DISCARD_BYTES and
MAX_DISCARD_SECONDS, before the answer is ended (`send_early_answer`). Closing the connection at once
instead would make the kernel reset it while the client still sends, and a client that reads the answer
only once it has sent everything (httpx, requests) would get a reset instead of the answer. A body whose
rest is unbounded (chunked) or larger than MAX_DISCARD_BYTES gets `Connection: close`: the server stops
reading it once the discarding ends. (A client sending `Expect: 100-continue`, as curl does for large
bodies, gets the answer before it sends any of the body.)

Limits: a default for every route (the image limit MAX_UPLOAD_BYTES plus room for the multipart framing
and form fields) and larger ones for named routes (the admin batch upload)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import anyio
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Room for the multipart framing and the small form fields around one image.
MULTIPART_OVERHEAD_BYTES = 64 * 1024

# The most of a body the server reads and throws away after an early answer, in bytes and seconds.
MAX_DISCARD_BYTES = 64 * 1024 * 1024
MAX_DISCARD_SECONDS = 10.0

RouteKey = tuple[str, str]  # (method, route path template)


def upload_body_limit(max_upload_bytes: int, images: int = 1) -> int:
    """The largest body of a multipart request carrying `images` images of at most `max_upload_bytes`."""
    return images * (max_upload_bytes + MULTIPART_OVERHEAD_BYTES)


def matched_route(routes: Sequence[BaseRoute], scope: Scope) -> BaseRoute | None:
    """The route the router will dispatch this request to (its first full match), or None."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return route
    return None


def declared_length(headers: Headers) -> int | None:
    """The Content-Length of a request, or None when it declares none (or an unusable one: the server
    refuses those itself)."""
    value = headers.get("content-length", "").strip()
    return int(value) if value.isdigit() else None


def remaining_body(headers: Headers, received: int = 0) -> int | None:
    """Bytes of the request body still to come after `received`: None when unknown (chunked)."""
    length = declared_length(headers)
    if length is None:
        return None if "transfer-encoding" in headers else 0
    return max(0, length - received)


def error_answer(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


async def send_early_answer(
    response: JSONResponse, remaining: int | None, receive: Receive, send: Send
) -> None:
    """Sends an answer to a request whose body was not (wholly) read, at once; then reads and throws away
    the `remaining` body (None: unknown), within MAX_DISCARD_BYTES and MAX_DISCARD_SECONDS, before ending
    the answer (see the module doc)."""
    if remaining is None or remaining > MAX_DISCARD_BYTES:
        response.headers["Connection"] = "close"  # stop reading once the discarding below ends
    discarding = remaining is None or 0 < remaining <= MAX_DISCARD_BYTES
    start = {"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers}
    await send(start)
    await send({"type": "http.response.body", "body": response.body, "more_body": discarding})
    if discarding:
        with anyio.move_on_after(MAX_DISCARD_SECONDS):
            await _discard(receive)
        await send({"type": "http.response.body", "body": b""})


async def _discard(receive: Receive) -> None:
    discarded = 0
    while discarded <= MAX_DISCARD_BYTES:
        message = await receive()
        if message["type"] != "http.request":
            return
        discarded += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class BodyTooLarge(HTTPException):
    """Raised from `receive` once the body passes its limit; the middleware answers 413 in its place."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")
        self.limit = limit


def too_large_response(limit: int) -> JSONResponse:
    return error_answer(413, "too_large", f"the request body is larger than {limit} bytes")


@dataclass
class _Exchange:
    """What one request has received and answered so far."""

    limit: int
    received: int = 0
    exceeded: bool = False
    started: bool = False  # the app's answer went out (before the limit was passed)
    suppressed: bool = False  # the app answered after the limit was passed: its answer is dropped


class BodyLimitMiddleware:
    """Answers 413 `too_large` for a request whose body is (or is declared) larger than its route's limit."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Sequence[BaseRoute],
        default_limit: int,
        route_limits: Mapping[RouteKey, int] | None = None,
    ) -> None:
        self.app = app
        self._routes = routes  # the app's live route list
        self._default_limit = default_limit
        self._route_limits = dict(route_limits or {})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope)
        headers = Headers(scope=scope)
        declared = declared_length(headers)
        if declared is not None and declared > limit:
            await self._refuse(scope, receive, send, limit, declared)
            return
        exchange = _Exchange(limit)
        try:
            await self.app(scope, _counting(receive, exchange), _guarded(send, exchange))
        except Exception:
            if not exchange.exceeded or exchange.started:
                raise
        if exchange.exceeded and not exchange.started:
            await self._refuse(scope, receive, send, limit, remaining_body(headers, exchange.received))

    def _limit_for(self, scope: Scope) -> int:
        if not self._route_limits:
            return self._default_limit
        route = matched_route(self._routes, scope)
        path = getattr(route, "path", None)
        return self._route_limits.get((scope["method"], str(path)), self._default_limit)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, limit: int, remaining: int | None
    ) -> None:
        scope.setdefault("route", matched_route(self._routes, scope))  # the route label of the metrics
        await send_early_answer(too_large_response(limit), remaining, receive, send)


def _counting(receive: Receive, exchange: _Exchange) -> Receive:
    async def counted() -> Message:
        if exchange.exceeded:
            raise BodyTooLarge(exchange.limit)
        message = await receive()
        if message["type"] == "http.request":
            exchange.received += len(message.get("body", b""))
            if exchange.received > exchange.limit:
                exchange.exceeded = True
                raise BodyTooLarge(exchange.limit)
        return message

    return counted


def _guarded(send: Send, exchange: _Exchange) -> Send:
    async def guarded(message: Message) -> None:
        if message["type"] == "http.response.start":
            if exchange.exceeded:
                exchange.suppressed = True
                return
            exchange.started = True
        elif exchange.suppressed and message["type"].startswith("http.response."):
            return
        await send(message)

    return guarded
