"""`python -m services.encoder`: serve EncoderService until SIGTERM/SIGINT.

Environment: MODEL_PATH (required: the exported model.onnx, model.json beside it), MAX_BATCH_IMAGES (64),
MAX_IMAGE_PIXELS (50000000), ORT_THREADS (0: onnxruntime decides), TRITON_URL (unset: embedded
onnxruntime), HOST, PORT (50051), METRICS_PORT, LOG_LEVEL.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from artsearch.config import ConfigError, Env
from artsearch.grpc_server import run_service
from artsearch.jsonlog import configure_logging
from services.encoder.backends import open_embedding_backend
from services.encoder.config import EncoderConfig
from services.encoder.server import EncoderService, encoder_registration

log = logging.getLogger("services.encoder")


async def serve(config: EncoderConfig) -> None:
    backend = open_embedding_backend(config)
    service = EncoderService(
        backend, max_batch_images=config.max_batch_images, max_image_pixels=config.max_image_pixels
    )
    await run_service(
        [encoder_registration(service)],
        config.address,
        metrics_port=config.metrics_port,
        on_shutdown=service.close,
    )


def main() -> int:
    env = Env()
    try:
        configure_logging("encoder", "INFO")  # so that a configuration error is logged as JSON too
        config = EncoderConfig.from_env(env)
        configure_logging("encoder", config.log_level)
        asyncio.run(serve(config))
    except ConfigError as error:
        log.error("cannot start: %s", error)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
