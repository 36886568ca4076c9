"""Runs the gateway: `python -m services.gateway` (settings from the environment, see config.py)."""

from __future__ import annotations

import uvicorn

from artsearch.jsonlog import configure_logging
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig


def main() -> None:
    config = GatewayConfig.from_env()
    configure_logging("gateway", config.log_level)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host=config.host,
            port=config.port,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=5,
        )
    )
    server.run()


if __name__ == "__main__":
    main()
