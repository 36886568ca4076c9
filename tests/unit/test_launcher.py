"""The local stack's housekeeping (artsearch_tools/launcher.py): restarting crashed services with backoff, the
demo's state folder (emptied only when the demo made it, never while another demo holds it), and saying
which process holds a port."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from artsearch.settings import LISTEN_HOST, LISTEN_PORT
from artsearch_tools.launcher import (
    DEMO_MARKER,
    DemoStateDir,
    RestartPolicy,
    ServiceStack,
    StackSettings,
    StateDirRefused,
    Supervisor,
    free_ports,
    inherited_environment,
    port_holder,
    port_in_use,
    taken_ports,
)


class ScriptStack(ServiceStack):
    """A stack whose services are small real processes: influence exits at once with status 3 (a crash
    injected on purpose), the others sleep; so the supervisor's schedule is checked without the real
    services."""

    def command(self, service: str) -> list[str]:
        if service == "influence":
            return [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
        return [sys.executable, "-c", "import time; time.sleep(60)"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def script_stack(tmp_path: Path) -> Iterator[ScriptStack]:
    stack = ScriptStack(StackSettings(model_path=tmp_path / "none.onnx", state_dir=tmp_path))
    stack.start(("influence", "search"))
    try:
        yield stack
    finally:
        stack.stop()


def wait_exited(stack: ServiceStack, service: str) -> None:
    stack.processes[service].wait(timeout=30)


def test_a_crashed_service_is_restarted_with_doubling_delays_up_to_the_cap(script_stack: ScriptStack):
    clock, said = Clock(), []
    policy = RestartPolicy(first_delay_s=0.5, max_delay_s=4.0, stable_after_s=30.0)
    supervisor = Supervisor(script_stack, policy, notify=said.append, clock=clock)
    steady_pid = script_stack.processes["search"].pid
    delays = []
    for _ in range(5):
        wait_exited(script_stack, "influence")
        supervisor.poll()  # notices the exit, schedules the restart
        delays.append(supervisor.watches["influence"].restart_at - clock.now)
        first_pid = script_stack.processes["influence"].pid
        clock.now += delays[-1] - 0.01
        supervisor.poll()  # not yet
        assert script_stack.processes["influence"].pid == first_pid
        clock.now += 0.01
        supervisor.poll()  # now
        assert script_stack.processes["influence"].pid != first_pid
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert supervisor.watches["influence"].restarts == 5
    assert script_stack.processes["search"].pid == steady_pid  # the others are left alone
    exits = [line for line in said if "influence exited with code 3" in line]
    assert len(exits) == 5 and "restarting it in 0.5 s" in exits[0] and "boom" in exits[0]
    assert sum("influence restarted (pid" in line for line in said) == 5


def test_a_service_that_stayed_up_is_restarted_quickly_again(tmp_path: Path):
    stack = ScriptStack(StackSettings(model_path=tmp_path / "none.onnx", state_dir=tmp_path))
    stack.start(("search",))
    clock = Clock()
    supervisor = Supervisor(
        stack, RestartPolicy(0.5, 10.0, stable_after_s=30.0), notify=[].append, clock=clock
    )
    try:
        supervisor.watches["search"].delay_s = 8.0  # as after several crashes in a row
        clock.now += 29.0
        supervisor.poll()
        assert supervisor.watches["search"].delay_s == 8.0
        clock.now += 1.0
        supervisor.poll()
        assert supervisor.watches["search"].delay_s == 0.5
        stack.processes["search"].kill()
        wait_exited(stack, "search")
        supervisor.poll()
        assert supervisor.watches["search"].restart_at == clock.now + 0.5
    finally:
        stack.stop()


# --- the demo's state folder ------------------------------------------------------------------------------


def test_a_new_folder_is_created_marked_and_emptied_on_the_next_claim(tmp_path: Path):
    folder = tmp_path / "var" / "demo"
    first = DemoStateDir(folder)
    first.claim()
    assert (folder / DEMO_MARKER).is_file()
    (folder / "search").mkdir()
    (folder / "search" / "points.bin").write_bytes(b"old vectors")
    (folder / "logs.txt").write_text("old")
    first.release()
    again = DemoStateDir(folder)
    again.claim()
    try:
        assert sorted(path.name for path in folder.iterdir()) == [DEMO_MARKER]
    finally:
        again.release()


def test_an_empty_existing_folder_is_adopted(tmp_path: Path):
    state = DemoStateDir(tmp_path)
    state.claim()
    state.release()
    assert (tmp_path / DEMO_MARKER).is_file()


@pytest.mark.parametrize(
    "marker", [None, "written by someone else\n", "symlink"], ids=["no-marker", "other-marker", "symlink"]
)
def test_a_folder_the_demo_did_not_create_is_refused_and_left_alone(tmp_path: Path, marker: str | None):
    folder = tmp_path / "precious"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    if marker == "symlink":
        real = tmp_path / "elsewhere"
        DemoStateDir(real).claim()
        (folder / DEMO_MARKER).symlink_to(real / DEMO_MARKER)
    elif marker is not None:
        (folder / DEMO_MARKER).write_text(marker)
    with pytest.raises(StateDirRefused, match="not created by `artsearch demo`"):
        DemoStateDir(folder).claim()
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_a_file_is_refused(tmp_path: Path):
    (tmp_path / "state").write_text("not a folder")
    with pytest.raises(StateDirRefused, match="is not a folder"):
        DemoStateDir(tmp_path / "state").claim()
    assert (tmp_path / "state").read_text() == "not a folder"


def test_a_folder_another_demo_holds_is_refused_and_left_alone(tmp_path: Path):
    running = DemoStateDir(tmp_path / "demo")
    running.claim()
    try:
        (tmp_path / "demo" / "search").mkdir()
        with pytest.raises(StateDirRefused, match="in use by another running"):
            DemoStateDir(tmp_path / "demo").claim()
        assert (tmp_path / "demo" / "search").is_dir()
    finally:
        running.release()
    after = DemoStateDir(tmp_path / "demo")
    after.claim()  # released: the next demo may have it
    after.release()


# --- ports ----------------------------------------------------------------------------------------------


@pytest.fixture
def listening() -> Iterator[int]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_port_in_use_and_who_holds_it(listening: int):
    assert port_in_use("127.0.0.1", listening)
    holder = port_holder(listening)
    assert holder.startswith(f"pid {os.getpid()}: "), holder
    assert "pytest" in holder


def test_a_free_port_is_free_and_held_by_nobody():
    [port] = free_ports(1)
    assert not port_in_use("127.0.0.1", port)
    assert port_holder(port) == ""


def test_a_port_whose_connections_linger_after_its_server_closed_counts_as_free():
    """A stopped demo's closed connections sit in TIME_WAIT for a minute; the next demo may bind anyway."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn and gRPC servers do
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        accepted, _ = server.accept()
        accepted.close()  # the server's side closes first: it is the one left in TIME_WAIT
        client.close()
    time.sleep(0.1)
    assert not port_in_use("127.0.0.1", port)


def test_taken_ports_name_the_service_the_port_and_the_holder(tmp_path: Path, listening: int):
    [free] = free_ports(1)
    settings = StackSettings(
        model_path=tmp_path / "m.onnx", state_dir=tmp_path, ports={"encoder": free, "gateway": listening}
    )
    [problem] = taken_ports(settings)
    assert problem.startswith(f"port {listening} (gateway) on 127.0.0.1 is taken by pid {os.getpid()}: ")


def test_every_service_is_given_artsearch_host_and_port_and_no_old_name_from_the_shell(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    """A HOST or PORT left in the shell (the gRPC services' old names) would contradict the ARTSEARCH_HOST /
    ARTSEARCH_PORT the launcher gives, and the service would refuse to start: they are not passed on."""
    (old_host,), (old_port,) = LISTEN_HOST.deprecated_names, LISTEN_PORT.deprecated_names  # HOST, PORT
    monkeypatch.setenv(old_host, "0.0.0.0")
    monkeypatch.setenv(old_port, "1234")
    monkeypatch.setenv("LOG_LEVEL", "DEBUG")
    settings = StackSettings(model_path=tmp_path / "model.onnx", state_dir=tmp_path)
    for service, port in settings.ports.items():
        own = settings.service_env(service)
        assert (own["ARTSEARCH_HOST"], own["ARTSEARCH_PORT"]) == ("127.0.0.1", str(port))
        inherited = inherited_environment(own)
        assert old_host not in inherited and old_port not in inherited
        assert inherited["LOG_LEVEL"] == "DEBUG"


def test_an_older_checkout_s_grpc_services_also_get_their_listen_address_under_the_old_names(tmp_path: Path):
    """A benchmark's "before" stack runs code that read the old names: it is given both, same values."""
    (old_host,), (old_port,) = LISTEN_HOST.deprecated_names, LISTEN_PORT.deprecated_names  # HOST, PORT
    settings = StackSettings(model_path=tmp_path / "model.onnx", state_dir=tmp_path, older_listen_names=True)
    for service, port in settings.ports.items():
        own = settings.service_env(service)
        expected = {} if service == "gateway" else {old_host: "127.0.0.1", old_port: str(port)}
        assert {name: own[name] for name in (old_host, old_port) if name in own} == expected
        assert (own["ARTSEARCH_HOST"], own["ARTSEARCH_PORT"]) == ("127.0.0.1", str(port))
