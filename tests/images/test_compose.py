"""The local compose file as users run it: `make compose-demo`'s script (docker-compose.local.yml up, the
demo catalogue ingested through the CLI container, a query) with the example `.env`
(deploy/compose/dev.env.example) on ports of the test's choosing, then `down -v`."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from image_support import REPO_ROOT, docker_client

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploy_support import example_env_file

from artsearch_tools.launcher import free_ports

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("images")]


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


@pytest.fixture(scope="module")
def compose_project(catalogues: Path) -> Iterator[tuple[dict[str, str], subprocess.CompletedProcess[str]]]:
    gateway, encoder, search, influence = free_ports(4)
    # deploy/compose/dev.env.example as the `.env` a user copies it to; the test's own paths and ports on top.
    example = example_env_file(REPO_ROOT / "deploy/compose/dev.env.example")
    env = {
        **os.environ,
        **example,
        "COMPOSE_PROJECT_NAME": f"artsearch-test-{uuid.uuid4().hex[:8]}",
        "ARTSEARCH_CATALOGUES": str(catalogues),
        "ARTSEARCH_PORT": str(gateway),
        "ENCODER_PORT": str(encoder),
        "SEARCH_PORT": str(search),
        "INFLUENCE_PORT": str(influence),
        "PYTHON": str(REPO_ROOT / ".venv/bin/python"),
    }
    down = [*compose_command(), "-f", "docker-compose.local.yml", "down", "-v", "--remove-orphans"]
    try:
        demo = subprocess.run(
            ["bash", "scripts/compose_demo.sh"],
            cwd=REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        yield env, demo
    finally:
        subprocess.run(down, cwd=REPO_ROOT, env=env, capture_output=True, timeout=300, check=False)


def test_compose_demo_brings_the_stack_up_ingests_through_the_cli_image_and_answers(compose_project):
    _, demo = compose_project
    assert demo.returncode == 0, demo.stdout[-3000:] + demo.stderr[-3000:]
    assert "36 artworks stored, 0 rejected" in demo.stdout + demo.stderr
    ranked = [line for line in demo.stdout.splitlines() if line.strip().startswith("1 ")]
    assert ranked and "Vincent van Gogh" in ranked[0], demo.stdout


def test_compose_stack_serves_the_production_paths_with_every_container_healthy(compose_project):
    env, demo = compose_project
    assert demo.returncode == 0
    project = env["COMPOSE_PROJECT_NAME"]
    containers = docker_client().containers.list(filters={"label": f"com.docker.compose.project={project}"})
    services = {c.labels["com.docker.compose.service"]: c for c in containers}
    assert set(services) == {"encoder", "search", "influence", "gateway", "triton", "neo4j"}
    for name, container in services.items():
        assert container.attrs["State"]["Health"]["Status"] == "healthy", name
    # The encoder runs the network on Triton and influence reads the graph over Bolt: their logs say so.
    assert '"backend": "triton"' in services["encoder"].logs().decode()
    assert "falkordb dialect" in services["influence"].logs().decode()
    gateway = f"http://127.0.0.1:{env['ARTSEARCH_PORT']}"
    reply = httpx.get(f"{gateway}/v1/artists/Vincent van Gogh/neighbours", timeout=10)
    assert reply.status_code == 200 and reply.json()["influencers"], reply.text
