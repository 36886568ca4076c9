"""JSON log lines on stderr, one object per line, with the service name on every line, the request id
of the request being served and, when tracing is on, the trace and span ids."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from contextvars import ContextVar

from opentelemetry import trace

# Set by request handlers so that every line logged while serving a request carries its id.
request_id_var: ContextVar[str] = ContextVar("request_id", default="")

# What a caller may send as its request id (X-Request-ID, gRPC `x-request-id` metadata): short, printable,
# safe in a header, in gRPC metadata and in a log line. Anything else is replaced by a fresh id.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")


def accept_request_id(proposed: str | None) -> str:
    """The caller's request id when it is well formed, otherwise a new one."""
    if proposed and _REQUEST_ID.fullmatch(proposed):
        return proposed
    return uuid.uuid4().hex


_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        request_id = request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            entry["trace_id"] = f"{span.trace_id:032x}"
            entry["span_id"] = f"{span.span_id:016x}"
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD_ATTRS})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(service: str, level: str = "INFO") -> None:
    """Routes the root logger to JSON lines on stderr (idempotent)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
