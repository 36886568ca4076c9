"""A client-facing failure: raised anywhere on a request path, answered as {"error": {"code", "message"}}."""

from __future__ import annotations


class ApiError(Exception):
    """An HTTP error with a stable machine-readable `code` and a `message` naming the problem."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
