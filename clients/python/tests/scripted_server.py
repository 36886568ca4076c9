"""A real HTTP server on 127.0.0.1 that answers each request with the next answer of a script: the faults
the client must survive (503 with Retry-After, 429, a slow answer, a body that is not the gateway's JSON)
are injected on purpose, and every request is recorded with the time it arrived."""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b'{"status": "ok"}'
    headers: dict[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})
    delay_s: float = 0.0  # wait this long before answering (a slow server)

    @classmethod
    def json(cls, status: int, payload: object, **headers: str) -> Answer:
        body = json.dumps(payload).encode()
        return cls(status, body, {"Content-Type": "application/json", **headers})

    @classmethod
    def error(cls, status: int, code: str, message: str, **headers: str) -> Answer:
        return cls.json(status, {"error": {"code": code, "message": message}}, **headers)


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.monotonic() when it arrived


class ScriptedServer:
    def __init__(self, port: int = 0) -> None:
        self.script: deque[Answer] = deque()
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = {name.lower(): value for name, value in self.headers.items()}
                server.received.append(Received(self.command, self.path, headers, body, time.monotonic()))
                answer = server.script.popleft() if server.script else Answer.error(500, "unscripted", "?")
                time.sleep(answer.delay_s)
                try:
                    self.send_response(answer.status)
                    for name, value in answer.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up waiting: expected
                    pass

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *_: object) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_port
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self) -> ScriptedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def then(self, *answers: Answer) -> ScriptedServer:
        self.script.extend(answers)
        return self

    def gaps_s(self) -> list[float]:
        """Seconds between consecutive requests."""
        times = [r.at for r in self.received]
        return [later - earlier for earlier, later in itertools.pairwise(times)]


def unused_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
