"""The encoder's backend factory: onnxruntime embedded, or a Triton server when TRITON_URL is set.

Apart from backends.py so that triton_backend.py (which needs the backends' types) and backends.py
do not import each other."""

from __future__ import annotations

import logging

from services.encoder.backends import EmbeddingBackend, EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.batching import MicroBatchingBackend
from services.encoder.config import EncoderConfig
from services.encoder.server import EncoderService

log = logging.getLogger(__name__)


def open_embedding_backend(config: EncoderConfig) -> EmbeddingBackend:
    """The backend the configuration asks for; ConfigError when it cannot be used.

    With TRITON_URL this blocks until Triton and the model are ready (at most TRITON_STARTUP_TIMEOUT_S):
    it runs once, before the encoder serves anything."""
    backend: EmbeddingBackend
    if config.triton_url:
        # Imported here: tritonclient is only needed when a Triton server is configured.
        from services.encoder.triton_backend import TritonBackend, TritonSettings

        settings = TritonSettings(
            url=config.triton_url,
            model_name=config.triton_model_name,
            model_version=config.triton_model_version,
            timeout_s=config.triton_timeout_s,
            startup_timeout_s=config.triton_startup_timeout_s,
            channel_max_age_s=config.triton_channel_max_age_s,
        )
        backend = TritonBackend.open(EmbeddingModelInfo.from_sidecar(config.model_path, "triton"), settings)
    else:
        backend = OnnxRuntimeBackend(
            config.model_path, intra_op_threads=config.ort_threads, providers=config.ort_providers
        )
    log.info(
        "model loaded",
        extra={
            "model": backend.info.name,
            "version": backend.info.version,
            "backend": backend.info.backend,
            "providers": "" if config.triton_url else ",".join(config.ort_providers),
        },
    )
    return backend


def open_encoder_service(config: EncoderConfig) -> EncoderService:
    """The encoder as the configuration composes it: the backend behind micro-batching, the servicer's limits
    (`python -m services.encoder` serves it; bench/in_process.py calls it directly)."""
    backend = MicroBatchingBackend(
        open_embedding_backend(config),
        max_batch_images=config.batch_max_images,
        max_wait_ms=config.batch_max_wait_ms,
    )
    return EncoderService(
        backend,
        max_batch_images=config.max_batch_images,
        max_image_pixels=config.max_image_pixels,
        max_queued_images=config.max_queued_images,
    )
