"""The gateway's readiness says what it can serve: the encoder and search services are required, the influence
service is optional (its outage degrades answers, it must not take every gateway pod out of the load
balancer); the health of each service is a Prometheus gauge on /metrics. Real in-process services, the
gateway app over them (httpx.ASGITransport); a service "down" is an address where nothing listens."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from gateway_support import gateway_client, gateway_config, in_process_services

from artsearch_tools.launcher import free_ports
from services.gateway.app import create_app

pytestmark = pytest.mark.slow  # runs the real encoder model


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, str]]:
    async with in_process_services(model_path, tmp_path_factory.mktemp("readiness")) as addresses:
        yield addresses


@pytest.fixture(scope="module")
def nowhere() -> str:
    (port,) = free_ports(1)
    return f"127.0.0.1:{port}"


def gauge(metrics: str, service: str) -> float:
    found = re.search(rf'^artsearch_downstream_up\{{service="{service}"\}} (\S+)$', metrics, re.M)
    assert found, f"no artsearch_downstream_up for {service}"
    return float(found.group(1))


async def test_influence_down_leaves_the_gateway_ready_and_says_degraded(services, nowhere):
    app = create_app(gateway_config(services, INFLUENCE_ADDR=nowhere))
    async with gateway_client(app) as client:
        reply = await client.get("/readyz")
        assert reply.status_code == 200, reply.text
        assert reply.json() == {
            "ready": True,
            "services": {"encoder": True, "search": True, "influence": False},
            "degraded": ["influence"],
        }


@pytest.mark.parametrize("down", ["ENCODER_ADDR", "SEARCH_ADDR"])
async def test_a_required_service_down_makes_the_gateway_unready(services, nowhere, down):
    app = create_app(gateway_config(services, **{down: nowhere}))
    async with gateway_client(app) as client:
        reply = await client.get("/readyz")
    assert reply.status_code == 503, reply.text
    body = reply.json()
    assert body["ready"] is False
    service = down.removesuffix("_ADDR").lower()
    assert body["services"][service] is False
    assert [name for name, up in body["services"].items() if not up] == [service]
    assert body["degraded"] == []


async def test_all_services_up_is_ready_and_not_degraded(services):
    async with gateway_client(create_app(gateway_config(services))) as client:
        reply = await client.get("/readyz")
    assert reply.status_code == 200
    assert reply.json() == {
        "ready": True,
        "services": {"encoder": True, "search": True, "influence": True},
        "degraded": [],
    }


async def test_metrics_export_each_services_health_as_of_the_scrape(services, nowhere):
    """No /readyz call in between: the scrape itself checks the services."""
    async with gateway_client(create_app(gateway_config(services, INFLUENCE_ADDR=nowhere))) as client:
        metrics = (await client.get("/metrics/")).text
    assert (gauge(metrics, "encoder"), gauge(metrics, "search"), gauge(metrics, "influence")) == (1, 1, 0)
    async with gateway_client(create_app(gateway_config(services))) as client:
        metrics = (await client.get("/metrics/")).text
    assert gauge(metrics, "influence") == 1
    async with gateway_client(create_app(gateway_config(services, SEARCH_ADDR=nowhere))) as client:
        metrics = (await client.get("/metrics/")).text
    assert (gauge(metrics, "search"), gauge(metrics, "influence")) == (0, 1)


async def test_the_openapi_document_declares_the_readiness_body(services):
    async with gateway_client(create_app(gateway_config(services))) as client:
        spec = (await client.get("/openapi.json")).json()
    readiness = spec["components"]["schemas"]["Readiness"]
    assert {"ready", "services", "degraded"} <= set(readiness["properties"])
    assert set(spec["paths"]["/readyz"]["get"]["responses"]) == {"200", "503"}
