"""The gateway starts with every setting the repository ships — both compose files (with their defaults and
with the example `.env`), each Kubernetes overlay with the placeholder Secret — and the development admin
key those settings carry is the documented `dev-admin-key-change-me`. (The gateway once crash-looped on the
shipped default: a plain key where a `name:sha256hex` entry belongs.) The images boot with the same
settings in tests/images/test_shipped_settings_boot.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import kubectl, shipped_gateway_settings

from artsearch.config import Env
from services.gateway.api_keys import ApiKeyRing
from services.gateway.config import GatewayConfig

DEV_ADMIN_KEY = "dev-admin-key-change-me"

pytestmark = pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed (kustomize)")


@pytest.fixture(scope="module")
def shipped() -> dict[str, dict[str, str]]:
    return shipped_gateway_settings()


def test_every_place_that_ships_gateway_settings_is_covered(shipped):
    assert set(shipped) == {
        "docker-compose.yml",
        "docker-compose.yml + dev.env.example",
        "docker-compose.local.yml",
        "docker-compose.local.yml + dev.env.example",
        "k8s dev",
        "k8s prod",
    }


@pytest.mark.parametrize(
    "source",
    [
        "docker-compose.yml",
        "docker-compose.yml + dev.env.example",
        "docker-compose.local.yml",
        "docker-compose.local.yml + dev.env.example",
        "k8s dev",
        "k8s prod",
    ],
)
def test_gateway_configuration_loads_from_the_shipped_settings(shipped, source: str, tmp_path: Path):
    # IMAGE_ROOT names a volume of the container; here it is a folder of the test's.
    environment = {**shipped[source], "IMAGE_ROOT": str(tmp_path)}
    config = GatewayConfig.from_env(Env(environment))
    keys = ApiKeyRing(config.admin.api_keys)
    assert keys, f"{source}: the admin API would be off"
    assert keys.identify(DEV_ADMIN_KEY) == "dev", f"{source}: the documented development key is refused"
    assert keys.identify("dev-admin-key") is None
