"""The encoder's backend factory: onnxruntime embedded, or a Triton server when TRITON_URL is set.

Apart from backends.py so that triton_backend.py (which needs the backends' types) and backends.py
do not import each other."""

from __future__ import annotations

import logging

from services.encoder.backends import EmbeddingBackend, EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.config import EncoderConfig

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
