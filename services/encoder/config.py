"""The encoder's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from artsearch.cpu_quota import available_cpus
from services.encoder.load_shedding import default_max_queued_images
from services.encoder.ort_providers import parse_providers

DEFAULT_MAX_BATCH_IMAGES = 64
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
# Triton backend (services/encoder/triton_backend.py), used when TRITON_URL is set.
DEFAULT_TRITON_MODEL_NAME = "efficientnet-lite0"
DEFAULT_TRITON_TIMEOUT_S = 10.0
DEFAULT_TRITON_STARTUP_TIMEOUT_S = 60.0
DEFAULT_TRITON_CHANNEL_MAX_AGE_S = 300.0
# Micro-batching of concurrent requests (services/encoder/batching.py).
# 16 on CPU: as fast per image as 32 here, ~200 MB less resident memory (docs/performance.md).
DEFAULT_BATCH_MAX_IMAGES = 16
DEFAULT_BATCH_MAX_WAIT_MS = 2.0


@dataclass(frozen=True)
class EncoderConfig:
    model_path: Path
    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["encoder"]))
    max_batch_images: int = DEFAULT_MAX_BATCH_IMAGES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # onnxruntime intra-op threads; 0 lets onnxruntime use one per physical core.
    ort_threads: int = 0
    # onnxruntime execution providers in order of preference (services/encoder/ort_providers.py).
    ort_providers: tuple[str, ...] = ("cpu",)
    # When set, a Triton Inference Server runs the model instead of the embedded onnxruntime.
    triton_url: str | None = None
    # The model's name in Triton's repository and its version ("": Triton's newest loaded version).
    triton_model_name: str = DEFAULT_TRITON_MODEL_NAME
    triton_model_version: str = ""
    # Deadline of every call to Triton; start-up waits this long for Triton and the model to be ready.
    triton_timeout_s: float = DEFAULT_TRITON_TIMEOUT_S
    triton_startup_timeout_s: float = DEFAULT_TRITON_STARTUP_TIMEOUT_S
    # The channel to Triton is made anew this often (0: never), to find Triton pods added since.
    triton_channel_max_age_s: float = DEFAULT_TRITON_CHANNEL_MAX_AGE_S
    # Concurrent requests are coalesced into backend calls of up to this many images...
    batch_max_images: int = DEFAULT_BATCH_MAX_IMAGES
    # ...waiting at most this long for companions when the backend is idle under concurrent traffic.
    batch_max_wait_ms: float = DEFAULT_BATCH_MAX_WAIT_MS
    # Images in the calls being served (decoding, queued, in the running batch) beyond which a new call is
    # refused at once with RESOURCE_EXHAUSTED; None: derived from the batch size and the cores.
    max_queued_images: int | None = None

    @classmethod
    def from_env(cls, env: Env) -> EncoderConfig:
        model_path = Path(env.str("MODEL_PATH"))
        if not model_path.is_file():
            raise ConfigError(f"MODEL_PATH={model_path} is not a file (run `make model` to export it)")
        max_batch_images = env.int("MAX_BATCH_IMAGES", DEFAULT_MAX_BATCH_IMAGES, minimum=1)
        batch_max_images = env.int("BATCH_MAX_IMAGES", DEFAULT_BATCH_MAX_IMAGES, minimum=1)
        return cls(
            model_path=model_path,
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["encoder"]),
            max_batch_images=max_batch_images,
            max_image_pixels=env.int("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, minimum=64),
            ort_threads=env.int("ORT_THREADS", 0, minimum=0),
            ort_providers=parse_providers(env.str("ORT_PROVIDERS", "cpu")),
            triton_url=env.optional("TRITON_URL"),
            triton_model_name=env.str("TRITON_MODEL_NAME", DEFAULT_TRITON_MODEL_NAME),
            triton_model_version=env.str("TRITON_MODEL_VERSION", ""),
            triton_timeout_s=env.float("TRITON_TIMEOUT_S", DEFAULT_TRITON_TIMEOUT_S, minimum=0.001),
            triton_startup_timeout_s=env.float(
                "TRITON_STARTUP_TIMEOUT_S", DEFAULT_TRITON_STARTUP_TIMEOUT_S, minimum=0.0
            ),
            triton_channel_max_age_s=env.float(
                "TRITON_CHANNEL_MAX_AGE_S", DEFAULT_TRITON_CHANNEL_MAX_AGE_S, minimum=0.0
            ),
            batch_max_images=batch_max_images,
            batch_max_wait_ms=env.float("BATCH_MAX_WAIT_MS", DEFAULT_BATCH_MAX_WAIT_MS, minimum=0.0),
            max_queued_images=_max_queued_images(env, batch_max_images, max_batch_images),
        )


def _max_queued_images(env: Env, batch_max_images: int, max_batch_images: int) -> int:
    """MAX_QUEUED_IMAGES, by default `default_max_queued_images` of the batch size and the CPU quota; never
    below MAX_BATCH_IMAGES, or a call of the largest size allowed could never be served."""
    default = default_max_queued_images(batch_max_images, max_batch_images, available_cpus())
    limit = env.int("MAX_QUEUED_IMAGES", default, minimum=1)
    if limit < max_batch_images:
        raise ConfigError(
            f"MAX_QUEUED_IMAGES={limit} must be >= MAX_BATCH_IMAGES={max_batch_images} "
            "(a call of that many images could never be served)"
        )
    return limit
