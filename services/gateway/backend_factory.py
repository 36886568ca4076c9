"""The gateway's backend factory: its back ends are the three services, reached over gRPC (or, in
bench/in_process.py, through stubs calling the servicers directly). The same place as the other services'
factories (services/<name>/backend_factory.py)."""

from __future__ import annotations

from services.gateway.config import GatewayConfig
from services.gateway.downstream import Downstream, ServiceStubs


def open_downstream(config: GatewayConfig, stubs: ServiceStubs | None = None) -> Downstream:
    """The clients of the encoder, search and influence services the configuration names (channels with
    round-robin and retries, connected lazily), or the given stubs."""
    return Downstream(config, stubs)
