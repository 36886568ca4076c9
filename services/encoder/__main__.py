"""`python -m services.encoder`: serve EncoderService until SIGTERM/SIGINT.

Environment: MODEL_PATH (required: the exported model.onnx, model.json beside it), MAX_BATCH_IMAGES (64),
MAX_IMAGE_PIXELS (50000000), ORT_THREADS (0: onnxruntime decides), TRITON_URL (unset: embedded
onnxruntime; with it TRITON_MODEL_NAME, TRITON_TIMEOUT_S, TRITON_STARTUP_TIMEOUT_S), BATCH_MAX_IMAGES (16)
and BATCH_MAX_WAIT_MS (2: micro-batching of concurrent requests), MAX_QUEUED_IMAGES (images in progress
beyond which calls are refused with RESOURCE_EXHAUSTED; default 4 batches per core, at least 2 x
MAX_BATCH_IMAGES), HOST, PORT (50051), METRICS_PORT,
LOG_LEVEL.
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
