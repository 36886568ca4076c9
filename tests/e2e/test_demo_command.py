"""`artsearch demo` (what `make demo` runs): starts everything, ingests, answers a sample query, keeps the
gateway serving, and Ctrl-C stops every service."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from artsearch.launcher import free_ports

pytestmark = pytest.mark.slow


def test_demo_serves_then_stops_everything_on_ctrl_c(
    model_path: Path, gcompris_catalogue: Path, tmp_path: Path
):
    gateway_port, *grpc_ports = free_ports(4)
    env = {
        **os.environ,
        "ARTSEARCH_PORT": str(gateway_port),
        "ENCODER_PORT": str(grpc_ports[0]),
        "SEARCH_PORT": str(grpc_ports[1]),
        "INFLUENCE_PORT": str(grpc_ports[2]),
    }
    env.pop("PYTHONUNBUFFERED", None)  # the demo must stream its output through a pipe by itself
    command = [
        sys.executable,
        "-m",
        "artsearch.cli",
        "demo",
        "--catalogue",
        str(gcompris_catalogue),
        "--model",
        str(model_path),
        "--state-dir",
        str(tmp_path / "demo"),
    ]
    demo = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            line = demo.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "gateway serving on" in line:
                break
        output = "".join(lines)
        assert "gateway serving on" in output, output
        stored = re.search(r"(\d+) artworks stored, 0 rejected", output)
        assert stored and int(stored.group(1)) >= 30, output
        assert "source artist:" in output and "  1  " in output, output
        assert httpx.get(f"http://127.0.0.1:{gateway_port}/readyz", timeout=5).status_code == 200
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=30)
    assert demo.returncode == 0
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{gateway_port}/healthz", timeout=2)
