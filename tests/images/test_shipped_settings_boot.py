"""The gateway image boots with every development setting the repository ships (both compose files with and
without the example `.env`, the Kubernetes dev overlay with the placeholder Secret) and takes the documented
development admin key; with the prod overlay's settings and the placeholder Secret it refuses that published
key and exits 2, saying why. The settings are collected in tests/deploy
(deploy_support.shipped_gateway_settings); there no downstream service runs, so /healthz answers and the
admin routes get past the key check."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import httpx
import pytest
from image_support import DEV_ADMIN_KEY, LABELS, docker_client, tag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "deploy"))
from deploy_support import kubectl, shipped_gateway_settings

pytestmark = [
    pytest.mark.slow,
    pytest.mark.usefixtures("images"),
    pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed (kustomize)"),
]


@pytest.mark.parametrize(
    "source",
    [
        "docker-compose.yml",
        "docker-compose.yml + dev.env.example",
        "docker-compose.local.yml + dev.env.example",
        "k8s dev",
    ],
)
def test_gateway_image_boots_with_the_shipped_settings_and_the_dev_key(source: str):
    container = _run_gateway(shipped_gateway_settings()[source])
    try:
        url = _wait_for_healthz(container)
        unknown = httpx.get(f"{url}/v1/artworks", headers={"X-API-Key": "not-the-key"}, timeout=10)
        assert unknown.status_code == 401
        known = httpx.get(f"{url}/v1/artworks", headers={"X-API-Key": DEV_ADMIN_KEY}, timeout=30)
        # Past the key check; the search service is not there to answer.
        assert known.status_code == 503, known.text
    finally:
        container.remove(force=True)


def test_gateway_image_refuses_the_published_key_with_the_prod_settings():
    container = _run_gateway(shipped_gateway_settings()["k8s prod"])
    try:
        assert container.wait(timeout=60)["StatusCode"] == 2
        logs = container.logs().decode()
        assert "published development key" in logs and "ALLOW_DEV_ADMIN_KEY" in logs, logs[-2000:]
    finally:
        container.remove(force=True)


def _run_gateway(environment: dict[str, str]):
    return docker_client().containers.run(
        tag("gateway"),
        detach=True,
        environment=environment,
        # IMAGE_ROOT (/catalogues or /images) is a volume in compose and Kubernetes.
        tmpfs={"/tmp": "size=64m", environment.get("IMAGE_ROOT", "/images"): "size=16m,uid=10001"},
        ports={"8080/tcp": ("127.0.0.1", None)},
        read_only=True,
        cap_drop=["ALL"],
        security_opt=["no-new-privileges:true"],
        labels=LABELS,
    )


def _wait_for_healthz(container) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        container.reload()
        if container.status == "exited":
            pytest.fail(f"the gateway exited: {container.logs().decode()[-2000:]}")
        bindings = container.attrs["NetworkSettings"]["Ports"].get("8080/tcp")
        if bindings:
            url = f"http://127.0.0.1:{bindings[0]['HostPort']}"
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
        time.sleep(0.25)
    pytest.fail(f"no /healthz within 60 s: {container.logs().decode()[-2000:]}")
