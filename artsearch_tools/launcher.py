"""Starts the four services as separate processes on one machine (the demo and the end-to-end tests).

`ServiceStack` starts and stops them; `Supervisor` restarts one that crashed (the demo, not the tests that
kill services on purpose); `port_holder` says which process listens on a port, so that a second demo can
say what is in its way.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from artsearch.config import DEFAULT_PORTS
from artsearch.settings import LISTEN_HOST, LISTEN_PORT
from artsearch_tools.settings_doc import deprecated_names

SERVICES = ("encoder", "search", "influence", "gateway")

log = logging.getLogger(__name__)


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


def inherited_environment(own: Mapping[str, str]) -> dict[str, str]:
    """This process's environment less the old names of the settings a service is given here: a HOST or PORT
    left in the shell would otherwise contradict ARTSEARCH_HOST / ARTSEARCH_PORT (a refused start)."""
    replaced = {old for old, new in deprecated_names().items() if new in own}
    return {name: value for name, value in os.environ.items() if name not in replaced}


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
    # Services of an older checkout (a benchmark's "before"): the gRPC services also get their listen address
    # under the names they read before ARTSEARCH_HOST / ARTSEARCH_PORT (the same values, so no conflict).
    older_listen_names: bool = False

    def address(self, service: str) -> str:
        return f"{self.host}:{self.ports[service]}"

    @property
    def gateway_url(self) -> str:
        return f"http://{self.host}:{self.ports['gateway']}"

    def service_env(self, service: str) -> dict[str, str]:
        common = {"ARTSEARCH_HOST": self.host, "ARTSEARCH_PORT": str(self.ports[service]), **self.extra_env}
        if self.older_listen_names and service != "gateway":
            common |= {old: common[LISTEN_HOST.name] for old in LISTEN_HOST.deprecated_names}
            common |= {old: common[LISTEN_PORT.name] for old in LISTEN_PORT.deprecated_names}
        specific = {
            "encoder": {"MODEL_PATH": str(self.model_path)},
            "search": {"SEARCH_DATA_DIR": str(self.state_dir / "search")},
            "influence": {"INFLUENCE_STATE_DIR": str(self.state_dir / "influence")},
            "gateway": {
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
        own = self.settings.service_env(service)
        env = {**inherited_environment(own), **own, "PYTHONUNBUFFERED": "1"}
        log_file = (self.log_dir / f"{service}.log").open("ab")
        self.processes[service] = subprocess.Popen(
            self.command(service),
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Own process group: Ctrl-C in the terminal reaches the launcher, which stops children in order.
            start_new_session=True,
        )
        log_file.close()

    def command(self, service: str) -> list[str]:
        return [sys.executable, "-m", f"services.{service}"]

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
                if self.all_serving(client):
                    return
                time.sleep(0.25)
        raise StackFailed(f"services not ready after {timeout:.0f} s\n{self._log_tails()}")

    def all_serving(self, client: httpx.Client) -> bool:
        """Every back end up, by the gateway's /readyz body: its status alone says 200 while the optional
        influence service is still down (the gateway serves degraded answers then)."""
        try:
            reply = client.get(f"{self.settings.gateway_url}/readyz")
            services = reply.json().get("services", {})
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        return reply.status_code == 200 and bool(services) and all(services.values())

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


@dataclass(frozen=True)
class RestartPolicy:
    """How a crashed service is restarted: after `first_delay_s`, doubling for each crash in a row up to
    `max_delay_s`; a service that stayed up `stable_after_s` starts again from `first_delay_s`."""

    first_delay_s: float = 0.5
    max_delay_s: float = 10.0
    stable_after_s: float = 30.0


@dataclass
class _Watch:
    delay_s: float
    started_at: float
    restart_at: float | None = None  # set while a crashed service waits for its restart
    restarts: int = 0


class Supervisor:
    """Restarts the services of a stack that exited, with backoff. Driven by `poll()` from the caller's
    loop rather than a thread of its own: nothing can restart a service while Ctrl-C stops the stack."""

    def __init__(
        self,
        stack: ServiceStack,
        policy: RestartPolicy = RestartPolicy(),
        notify: Callable[[str], None] = log.warning,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.stack = stack
        self.policy = policy
        self.notify = notify
        self.clock = clock
        now = clock()
        # The services running now (after `stack.start()`) are the ones watched.
        self.watches = {name: _Watch(policy.first_delay_s, now) for name in stack.processes}

    def poll(self) -> None:
        now = self.clock()
        for service, watch in self.watches.items():
            process = self.stack.processes.get(service)
            if watch.restart_at is not None:
                if now >= watch.restart_at:
                    self._restart(service, watch, now)
            elif process is None or process.poll() is not None:
                self._schedule(service, watch, process, now)
            elif now - watch.started_at >= self.policy.stable_after_s:
                watch.delay_s = self.policy.first_delay_s  # it recovered: the next crash is not penalised

    def _schedule(
        self, service: str, watch: _Watch, process: subprocess.Popen[bytes] | None, now: float
    ) -> None:
        code = "?" if process is None else process.returncode
        watch.restart_at = now + watch.delay_s
        self.notify(
            f"{service} exited with code {code}; restarting it in {watch.delay_s:g} s "
            f"(log: {self.stack.log_dir / f'{service}.log'})\n{self.stack.log_tail(service, 5)}"
        )

    def _restart(self, service: str, watch: _Watch, now: float) -> None:
        self.stack.start_service(service)
        watch.restarts += 1
        watch.restart_at = None
        watch.started_at = now
        watch.delay_s = min(watch.delay_s * 2, self.policy.max_delay_s)
        pid = self.stack.processes[service].pid
        self.notify(f"{service} restarted (pid {pid}, restart {watch.restarts})")


def port_in_use(host: str, port: int) -> bool:
    """Whether binding `host:port` fails because something holds it."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        # As the servers bind: connections of a stopped stack lingering in TIME_WAIT do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            return error.errno == errno.EADDRINUSE
    return False


def port_holder(port: int) -> str:
    """Who listens on TCP `port` on this machine, e.g. "pid 4242: python -m services.encoder"; "" when it
    cannot tell (another user's process, no /proc)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return ""
    for pid in _pids():
        if _holds_socket(pid, inodes):
            return f"pid {pid}: {_command_line(pid)}"
    return ""


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes in LISTEN state (0A) on `port`, from /proc/net/tcp and tcp6."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(fields[9])
    return inodes


def _pids() -> list[int]:
    return sorted(int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit())


def _holds_socket(pid: int, inodes: set[str]) -> bool:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    try:
        return any(os.readlink(fd) in wanted for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:  # gone, or another user's
        return False


def _command_line(pid: int) -> str:
    try:
        parts = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "?"
    words = [part.decode(errors="replace") for part in parts if part]
    if words:
        words[0] = Path(words[0]).name  # the interpreter's name is enough; its path is noise
    return " ".join(words) or "?"


def taken_ports(settings: StackSettings) -> list[str]:
    """One line per port of the stack that something else holds, naming the holder when known."""
    problems = []
    for service, port in settings.ports.items():
        if port_in_use(settings.host, port):
            holder = port_holder(port)
            problems.append(
                f"port {port} ({service}) on {settings.host} is taken" + (f" by {holder}" if holder else "")
            )
    return problems


class StateDirRefused(RuntimeError):
    """The demo's state folder is not the demo's to wipe, or another demo is using it."""


DEMO_MARKER = ".artsearch-demo"
_MARKER_TEXT = "created by `artsearch demo`, which empties this folder each time it starts\n"


class DemoStateDir:
    """The demo's state folder. The demo starts from empty storage each time (so vectors of an older model
    never meet the current one), but it only ever empties a folder it created itself, as the marker file
    it writes there says, and never one another running demo holds (a lock on that marker)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).resolve()
        self.marker = self.path / DEMO_MARKER
        self._lock: int | None = None

    def claim(self) -> None:
        """Creates the folder (or adopts an empty one), or empties one of the demo's; then holds it until
        `release()`. Raises StateDirRefused otherwise, touching nothing."""
        self._check_ours()
        self.path.mkdir(parents=True, exist_ok=True)
        if not self.marker.exists():
            self.marker.write_text(_MARKER_TEXT)
        self._lock = os.open(self.marker, os.O_RDWR)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.release()
            raise StateDirRefused(
                f"{self.path} is in use by another running `artsearch demo`: stop it first, or give this one "
                "another --state-dir"
            ) from None
        self._empty()

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # also drops the lock
            self._lock = None

    def _check_ours(self) -> None:
        if not self.path.exists():
            return
        if not self.path.is_dir():
            raise StateDirRefused(f"--state-dir {self.path} exists and is not a folder")
        if self._marked() or not any(self.path.iterdir()):
            return
        raise StateDirRefused(
            f"--state-dir {self.path} exists and was not created by `artsearch demo` (it has no "
            f"{DEMO_MARKER} file), so the demo will not empty it. Choose another --state-dir, or remove the "
            "folder yourself if it only holds an older demo's data."
        )

    def _marked(self) -> bool:
        if self.marker.is_symlink() or not self.marker.is_file():
            return False
        try:
            return self.marker.read_text() == _MARKER_TEXT
        except (OSError, UnicodeDecodeError):
            return False

    def _empty(self) -> None:
        """Everything but the marker, which stays: a wipe cut short leaves the folder marked the demo's."""
        for entry in self.path.iterdir():
            if entry.name == DEMO_MARKER:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
