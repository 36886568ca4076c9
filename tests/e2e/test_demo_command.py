"""`artsearch demo` (what `make demo` runs): starts everything, ingests, answers a sample query, keeps the
gateway serving; restarts a service that crashed (the gateway answers again by itself); refuses, saying
why, a second demo on its ports or its state folder and a state folder it did not create; and Ctrl-C stops
every service.

One demo runs for the whole module (starting one costs half a minute here); the last test stops it."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from artsearch_tools.launcher import SERVICES, free_ports

pytestmark = pytest.mark.slow

START_BOUND_S = 180.0
RECOVERY_BOUND_S = 60.0


def demo_env(ports: dict[str, int]) -> dict[str, str]:
    env = {
        **os.environ,
        "ARTSEARCH_PORT": str(ports["gateway"]),
        **{f"{service.upper()}_PORT": str(ports[service]) for service in ("encoder", "search", "influence")},
    }
    env.pop("PYTHONUNBUFFERED", None)  # the demo must stream its output through a pipe by itself
    return env


def demo_command(model_path: Path, catalogue: Path, state_dir: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "artsearch_tools.cli",
        "demo",
        "--catalogue",
        str(catalogue),
        "--model",
        str(model_path),
        "--state-dir",
        str(state_dir),
    ]


@dataclass
class Demo:
    process: subprocess.Popen[str]
    ports: dict[str, int]
    state_dir: Path
    lines: list[str] = field(default_factory=list)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gateway']}"

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def read_output(self) -> None:
        """Runs in a thread for the demo's lifetime: the pipe is always drained, every line kept."""
        for line in self.process.stdout:
            self.lines.append(line)

    def wait_for(self, pattern: str, bound_s: float, after: int = 0) -> re.Match[str]:
        """The first line from index `after` on matching `pattern`, waiting up to `bound_s`."""
        deadline = time.monotonic() + bound_s
        while time.monotonic() < deadline:
            for line in self.lines[after:]:
                if found := re.search(pattern, line):
                    return found
            if self.process.poll() is not None and not any(re.search(pattern, x) for x in self.lines[after:]):
                raise AssertionError(f"the demo exited ({self.process.returncode}):\n{self.output}")
            time.sleep(0.1)
        raise AssertionError(f"no line matching {pattern!r} within {bound_s:.0f} s:\n{self.output}")

    def services(self) -> dict[str, int]:
        """Service name -> pid of the demo's child processes, read from /proc."""
        found = {}
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                parent = int(stat.read_text().rsplit(")", 1)[1].split()[1])
                words = (stat.parent / "cmdline").read_bytes().split(b"\0")
            except (OSError, IndexError, ValueError):
                continue  # exited meanwhile
            module = next((w.decode() for w in words if w.startswith(b"services.")), "")
            if parent == self.process.pid and module:
                found[module.removeprefix("services.")] = int(stat.parent.name)
        return found


@pytest.fixture(scope="module")
def demo(
    model_path: Path, gcompris_catalogue: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Demo]:
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    state_dir = tmp_path_factory.mktemp("demo") / "state"
    process = subprocess.Popen(
        demo_command(model_path, gcompris_catalogue, state_dir),
        env=demo_env(ports),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # Started with SIGINT ignored, as a background job of a script or CI step starts it: Ctrl-C (the
        # last test) must stop it all the same (a full run started that way once timed out there).
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    running = Demo(process, ports, state_dir)
    reader = threading.Thread(target=running.read_output, daemon=True)
    reader.start()
    try:
        running.wait_for("gateway serving on", START_BOUND_S)
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        reader.join(timeout=10)


def search_ok(demo: Demo, query: bytes) -> Callable[[], bool]:
    """True once the gateway answers a search with every back end (nothing degraded)."""

    def check() -> bool:
        try:
            reply = httpx.post(
                f"{demo.gateway_url}/v1/search", params={"k": 3}, files={"image": query}, timeout=30
            )
        except httpx.HTTPError:
            return False
        return reply.status_code == 200 and reply.json()["degraded"] == []

    return check


def poll(condition: Callable[[], bool], bound_s: float = RECOVERY_BOUND_S) -> float:
    started = time.monotonic()
    while time.monotonic() - started < bound_s:
        if condition():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"not recovered within {bound_s:.0f} s")


@pytest.fixture(scope="module")
def query(gcompris_catalogue: Path) -> bytes:
    return next(iter(sorted(gcompris_catalogue.glob("*.jpg")))).read_bytes()


def test_the_demo_ingests_answers_the_sample_query_and_serves(demo: Demo):
    output = demo.output
    stored = re.search(r"(\d+) artworks stored, 0 rejected", output)
    assert stored and int(stored.group(1)) >= 30, output
    assert "source artist:" in output and "  1  " in output, output
    assert httpx.get(f"{demo.gateway_url}/readyz", timeout=5).status_code == 200
    assert sorted(demo.services()) == sorted(SERVICES)


def run_second_demo(
    model_path: Path, catalogue: Path, state_dir: Path, ports: dict[str, int]
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        demo_command(model_path, catalogue, state_dir),
        env=demo_env(ports),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_second_demo_on_the_same_ports_says_which_are_taken_and_by_what(
    demo: Demo, model_path: Path, gcompris_catalogue: Path, tmp_path: Path
):
    second = run_second_demo(model_path, gcompris_catalogue, tmp_path / "second", demo.ports)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "Traceback" not in second.stderr, second.stderr
    pids = demo.services()
    for service, port in demo.ports.items():
        assert f"port {port} ({service}) on 127.0.0.1 is taken by pid {pids[service]}: " in second.stderr
        assert f"-m services.{service}" in second.stderr
    assert "Is another `make demo` running?" in second.stderr
    assert not (tmp_path / "second").exists()  # refused before anything was set up


def test_a_second_demo_on_other_ports_leaves_the_running_demos_state_alone(
    demo: Demo, model_path: Path, gcompris_catalogue: Path, query: bytes
):
    other_ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    second = run_second_demo(model_path, gcompris_catalogue, demo.state_dir, other_ports)
    assert second.returncode == 2, second.stdout + second.stderr
    assert "is in use by another running `artsearch demo`" in second.stderr
    assert (demo.state_dir / "search").is_dir() and (demo.state_dir / "logs").is_dir()
    assert search_ok(demo, query)()  # its catalogue is still there


def test_the_demo_refuses_to_empty_a_folder_it_did_not_create(
    model_path: Path, gcompris_catalogue: Path, tmp_path: Path
):
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    ports = dict(zip(SERVICES, free_ports(len(SERVICES)), strict=True))
    try:
        refused = run_second_demo(model_path, gcompris_catalogue, precious, ports)
    finally:
        assert (precious / "thesis.tex").read_text() == "years of work"
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "was not created by `artsearch demo`" in refused.stderr
    assert sorted(path.name for path in precious.iterdir()) == ["thesis.tex"]


def test_a_killed_service_is_restarted_and_the_gateway_answers_again(demo: Demo, query: bytes):
    for service in ("influence", "gateway"):
        before = demo.services()[service]
        seen = len(demo.lines)
        os.kill(before, signal.SIGKILL)
        demo.wait_for(rf"{service} exited with code -9; restarting it in 0\.5 s", 10, after=seen)
        demo.wait_for(rf"{service} restarted \(pid \d+, restart 1\)", 10, after=seen)
        poll(search_ok(demo, query))
        assert demo.services()[service] != before
    # A second crash soon after the first waits twice as long.
    seen = len(demo.lines)
    os.kill(demo.services()["influence"], signal.SIGKILL)
    demo.wait_for(r"influence exited with code -9; restarting it in 1 s", 10, after=seen)
    demo.wait_for(r"influence restarted \(pid \d+, restart 2\)", 10, after=seen)
    poll(search_ok(demo, query))
    assert demo.process.poll() is None


def test_ctrl_c_stops_every_service(demo: Demo):
    """Runs last: it stops the module's demo."""
    children = demo.services()
    assert sorted(children) == sorted(SERVICES)
    demo.process.send_signal(signal.SIGINT)
    assert demo.process.wait(timeout=60) == 0, demo.output
    for service, pid in children.items():
        assert not Path(f"/proc/{pid}").exists() or _is_zombie(pid), f"{service} (pid {pid}) still runs"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{demo.gateway_url}/healthz", timeout=2)


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True
