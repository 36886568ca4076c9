"""Starts the four services as separate processes on one machine (the demo and the end-to-end tests)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from artsearch.config import DEFAULT_PORTS

SERVICES = ("encoder", "search", "influence", "gateway")


def free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 right now (for tests and side-by-side stacks)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


class StackFailed(RuntimeError):
    """A service exited or never became ready; the message carries the end of its log."""


@dataclass(frozen=True)
class StackSettings:
    model_path: Path
    # Search data, influence additions and service logs live under here.
    state_dir: Path
    host: str = "127.0.0.1"
    ports: Mapping[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))
    # Extra environment for every service (e.g. LOG_LEVEL).
    extra_env: Mapping[str, str] = field(default_factory=dict)
    # Folder holding one sub-folder per catalogue: where the gateway finds artwork images (IMAGE_ROOT).
    image_root: Path | None = None
    # Folder of the evaluation's PNG pictures, served to the web UI (EVALUATION_DIR).
    evaluation_dir: Path | None = None

    def address(self, service: str) -> str:
        return f"{self.host}:{self.ports[service]}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.ports['gateway']}"

    def service_env(self, service: str) -> dict[str, str]:
        common = {"HOST": self.host, "PORT": str(self.ports[service]), **self.extra_env}
        specific = {
            "encoder": {"MODEL_PATH": str(self.model_path)},
            "search": {"SEARCH_DATA_DIR": str(self.state_dir / "search")},
            "influence": {"INFLUENCE_STATE_DIR": str(self.state_dir / "influence")},
            "gateway": {
                "ARTSEARCH_HOST": self.host,
                "ARTSEARCH_PORT": str(self.ports["gateway"]),
                "ENCODER_ADDR": self.address("encoder"),
                "SEARCH_ADDR": self.address("search"),
                "INFLUENCE_ADDR": self.address("influence"),
                **({"IMAGE_ROOT": str(self.image_root)} if self.image_root else {}),
                **({"EVALUATION_DIR": str(self.evaluation_dir)} if self.evaluation_dir else {}),
            },
        }[service]
        return {**common, **specific}


class ServiceStack:
    """The four services as child processes; `stop()` (or leaving the `with` block) ends them all."""

    def __init__(self, settings: StackSettings) -> None:
        self.settings = settings
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.log_dir = settings.state_dir / "logs"

    def __enter__(self) -> ServiceStack:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, services: tuple[str, ...] = SERVICES) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for service in services:
            self.start_service(service)

    def start_service(self, service: str) -> None:
        env = {**os.environ, **self.settings.service_env(service), "PYTHONUNBUFFERED": "1"}
        log_file = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            [sys.executable, "-m", f"services.{service}"],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C in the terminal reaches the launcher, which stops children in order.
            start_new_session=True,
        )
        log_file.close()

    def stop_service(self, service: str, timeout: float = 10.0) -> None:
        process = self.processes.pop(service, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        for service in reversed(list(self.processes)):
            self.stop_service(service)

    def wait_ready(self, timeout: float = 180.0) -> None:
        """Waits until the gateway's /readyz says every service answers its health check."""
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                self._raise_if_exited()
                try:
                    if client.get(f"{self.settings.gateway_url}/readyz").status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        raise StackFailed(f"services not ready after {timeout:.0f} s\n{self._log_tails()}")

    def _raise_if_exited(self) -> None:
        for service, process in self.processes.items():
            if process.poll() is not None:
                raise StackFailed(
                    f"{service} exited with code {process.returncode}\n{self.log_tail(service)}"
                )

    def log_tail(self, service: str, lines: int = 20) -> str:
        path = self.log_dir / f"{service}.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(f"  {service}| {line}" for line in text.splitlines()[-lines:])

    def _log_tails(self) -> str:
        return "\n".join(self.log_tail(service, 8) for service in self.processes)
