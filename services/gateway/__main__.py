"""Runs the gateway: `python -m services.gateway` (settings from the environment: settings.py, config.py).

A configuration error is logged as one JSON line and gives exit code 2 (as the gRPC services'
`service_main`): an orchestrator sees a failed start with its reason, not a crash loop of tracebacks.
"""

from __future__ import annotations

import logging
import sys

import uvicorn

from artsearch.config import ConfigError
from artsearch.jsonlog import configure_logging
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig

log = logging.getLogger("services.gateway")


def main() -> int:
    configure_logging("gateway", "INFO")  # so that a configuration error is logged as JSON too
    try:
        config = GatewayConfig.from_env()
    except ConfigError as error:
        log.error("cannot start: %s", error, extra={"service": "gateway"})
        return 2
    configure_logging("gateway", config.log_level)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
            # Which X-Forwarded-For to believe is TRUSTED_PROXIES' decision (services/gateway/clients.py);
            # uvicorn's own handling would take it from any loopback peer.
            proxy_headers=False,
        )
    )
    server.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
