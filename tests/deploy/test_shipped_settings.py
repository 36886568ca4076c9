"""The gateway starts with every development setting the repository ships — both compose files (with their
defaults and with the example `.env`), the Kubernetes dev overlay with the placeholder Secret — and the
development admin key those settings carry is the documented `dev-admin-key-change-me`. (The gateway once
crash-looped on the shipped default: a plain key where a `name:sha256hex` entry belongs.) The prod overlay
does not allow that published key: with the placeholder Secret the gateway refuses to start, with a real
key it starts. The images boot (or refuse to) with the same settings in
tests/images/test_shipped_settings_boot.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from deploy_support import kubectl, shipped_gateway_settings

from artsearch.config import ConfigError, Env
from services.gateway.api_keys import ApiKeyRing, config_entry, new_key
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


DEVELOPMENT_SOURCES = [
    "docker-compose.yml",
    "docker-compose.yml + dev.env.example",
    "docker-compose.local.yml",
    "docker-compose.local.yml + dev.env.example",
    "k8s dev",
]


@pytest.mark.parametrize("source", DEVELOPMENT_SOURCES)
def test_gateway_configuration_loads_from_the_shipped_settings(shipped, source: str, tmp_path: Path):
    # IMAGE_ROOT names a volume of the container; here it is a folder of the test's.
    environment = {**shipped[source], "IMAGE_ROOT": str(tmp_path)}
    config = GatewayConfig.from_env(Env(environment))
    keys = ApiKeyRing(config.admin.api_keys)
    assert keys, f"{source}: the admin API would be off"
    assert keys.identify(DEV_ADMIN_KEY) == "dev", f"{source}: the documented development key is refused"
    assert keys.identify("dev-admin-key") is None


@pytest.mark.parametrize("source", DEVELOPMENT_SOURCES)
def test_only_the_development_settings_allow_the_published_key(shipped, source: str):
    assert shipped[source]["ALLOW_DEV_ADMIN_KEY"] == "true"
    assert "ALLOW_DEV_ADMIN_KEY" not in shipped["k8s prod"]


def test_prod_refuses_the_published_development_key(shipped, tmp_path: Path):
    environment = {**shipped["k8s prod"], "IMAGE_ROOT": str(tmp_path)}
    with pytest.raises(ConfigError, match="published development key"):
        GatewayConfig.from_env(Env(environment))


def test_prod_starts_with_a_real_key_in_its_secret(shipped, tmp_path: Path):
    key = new_key()
    environment = {
        **shipped["k8s prod"],
        "IMAGE_ROOT": str(tmp_path),
        "ADMIN_API_KEYS": config_entry("ops", key),
    }
    keys = ApiKeyRing(GatewayConfig.from_env(Env(environment)).admin.api_keys)
    assert keys.identify(key) == "ops" and keys.identify(DEV_ADMIN_KEY) is None
