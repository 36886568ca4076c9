"""The `artsearch` command's own settings (artsearch_tools/settings.py): read through their declarations when
a command runs, so a malformed value stops that command with a clear message and never `--help`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from artsearch.config import DEFAULT_PORTS, ConfigError, Env
from artsearch_tools.settings import demo_ports, local_gateway_url, service_address

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_the_demo_ports_default_to_the_services_ports_and_each_can_be_moved():
    assert demo_ports(Env({})) == DEFAULT_PORTS
    moved = demo_ports(Env({"ARTSEARCH_PORT": "18080", "SEARCH_PORT": "15052"}))
    assert moved == {**DEFAULT_PORTS, "gateway": 18080, "search": 15052}
    with pytest.raises(ConfigError, match="ENCODER_PORT"):
        demo_ports(Env({"ENCODER_PORT": "fifty"}))
    with pytest.raises(ConfigError, match="INFLUENCE_PORT"):
        demo_ports(Env({"INFLUENCE_PORT": "0"}))


def test_the_tools_find_the_services_on_this_machine_unless_told_otherwise():
    assert local_gateway_url(Env({})) == "http://127.0.0.1:8080"
    assert local_gateway_url(Env({"ARTSEARCH_PORT": "9000"})) == "http://127.0.0.1:9000"
    assert service_address("encoder", Env({})) == "127.0.0.1:50051"
    assert service_address("search", Env({"SEARCH_ADDR": "search.internal:50052"})) == "search.internal:50052"


def _artsearch(*args: str, **environment: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "artsearch_tools.cli", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", **environment},
    )


def test_a_malformed_setting_stops_the_command_that_reads_it_not_the_help():
    assert _artsearch("query", "--help", ARTSEARCH_PORT="eighty").returncode == 0
    refused = _artsearch("query", str(REPO_ROOT / "README.md"), ARTSEARCH_PORT="eighty")
    assert refused.returncode == 2
    assert "ARTSEARCH_PORT='eighty' is not an integer" in refused.stderr
    assert "Traceback" not in refused.stderr
