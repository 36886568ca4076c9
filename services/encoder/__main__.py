"""`python -m services.encoder`: serve EncoderService until SIGTERM/SIGINT.

Settings (environment): declared in services/encoder/settings.py and artsearch/settings.py (MODEL_PATH is
required); the table of them all is in docs/architecture.md, "Configuration".
"""

from __future__ import annotations

import sys

from artsearch.grpc_server import run_service, service_main
from services.encoder.backend_factory import open_encoder_service
from services.encoder.config import EncoderConfig
from services.encoder.server import encoder_registration


async def serve(config: EncoderConfig) -> None:
    service = open_encoder_service(config)
    await run_service(
        [encoder_registration(service)],
        config.listen,
        on_shutdown=service.close,
    )


if __name__ == "__main__":
    sys.exit(service_main("encoder", EncoderConfig.from_env, serve))
