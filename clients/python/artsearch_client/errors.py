"""What a failed call raises: one exception per kind of failure, all `ArtsearchError`.

The gateway answers every error as `{"error": {"code": "...", "message": "..."}}`; the exception carries the
HTTP status, that code and message, the answer's Retry-After (seconds) and the request id the gateway logged
the call under, so a failure can be found in the gateway's logs."""

from __future__ import annotations

import json
from typing import Any

import httpx


class ArtsearchError(Exception):
    """Any failure of a call. `status` is None when no HTTP answer came (connection refused, timeout)."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        request_id: str | None = None,
        body: str = "",
    ) -> None:
        super().__init__(f"{status} {code}: {message}" if status is not None else message)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after
        self.request_id = request_id
        # The answer's text as it came (also when it was not the gateway's JSON error shape).
        self.body = body
        # How many attempts the call made (the client retries some failures; artsearch_client.retry).
        self.attempts = 1


class BadRequest(ArtsearchError):
    """400 and the other refusals of bad input (413, 415, 422 are subclasses): retrying will not help."""


class InvalidRequest(BadRequest):
    """422: a parameter or body field is missing, malformed or out of bounds (`message` names it)."""


class PayloadTooLarge(BadRequest):
    """413: the request body or the image is too large (bytes or pixels)."""


class UnsupportedMediaType(BadRequest):
    """415: not an image in an accepted format (judged by its bytes)."""


class Unauthorized(ArtsearchError):
    """401: an admin call without an API key, or with an unknown one."""


class Forbidden(ArtsearchError):
    """403: the gateway's admin API is switched off (no keys configured)."""


class NotFound(ArtsearchError):
    """404: no such artwork, artist, cluster or route."""


class Conflict(ArtsearchError):
    """409: an artwork with this id exists (add it with `replace=True`)."""


class Gone(ArtsearchError):
    """410: a search cursor the gateway no longer keeps (expired, or the catalogue changed): search again."""


class PictureExpired(Gone):
    """410 `picture_expired`: the gateway no longer keeps the descriptors a `picture_id` named (expired,
    evicted, or the model changed): send the picture again."""


class RateLimited(ArtsearchError):
    """429: this client is over its rate or concurrency limit, or the encoder is busy; `retry_after` says
    when to come back. Raised after the client's own retries are spent."""


class Unavailable(ArtsearchError):
    """503 (and 502, 504): a service behind the gateway is down; raised after the client's retries."""


class ServerError(ArtsearchError):
    """Another 5xx answer: a gateway fault."""


class TransportError(ArtsearchError):
    """No answer: the connection failed or was lost, or the call ran out of time (`Timeout` below)."""


class Timeout(TransportError):
    """The call did not get its answer within the client's timeout (or its retries' total time)."""


_BY_STATUS: dict[int, type[ArtsearchError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    502: Unavailable,
    503: Unavailable,
    504: Unavailable,
}


# Error codes with an exception of their own (a subclass of their status's).
_BY_CODE: dict[tuple[int, str], type[ArtsearchError]] = {(410, "picture_expired"): PictureExpired}


def error_for_response(response: httpx.Response, retry_after: float | None) -> ArtsearchError:
    """The exception for an error answer: its class by status (and code), code and message from the JSON
    error body, or (a body of another shape: a proxy's HTML page, a truncated answer) the body's start as
    message."""
    status = response.status_code
    text = response.text
    code, message = _error_fields(text)
    kind = _BY_CODE.get((status, code or "")) or _BY_STATUS.get(status)
    kind = kind or (ServerError if status >= 500 else BadRequest)
    return kind(
        message or f"HTTP {status}: {_excerpt(text) or response.reason_phrase or 'no body'}",
        status=status,
        code=code,
        retry_after=retry_after,
        request_id=response.headers.get("x-request-id"),
        body=text,
    )


def _error_fields(text: str) -> tuple[str | None, str | None]:
    try:
        body: Any = json.loads(text)
    except ValueError:
        return None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (code if isinstance(code, str) else None), (message if isinstance(message, str) else None)


def _excerpt(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
