"""The encoder's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch import settings as core
from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings
from artsearch.cpu_quota import available_cpus
from services.encoder import settings
from services.encoder.load_shedding import default_max_queued_images
from services.encoder.ort_providers import parse_providers

# The declared defaults (services/encoder/settings.py), for code that builds an EncoderConfig itself.
DEFAULT_MAX_BATCH_IMAGES: int = settings.MAX_REQUEST_IMAGES.default  # type: ignore[assignment]
DEFAULT_MAX_IMAGE_PIXELS: int = core.MAX_IMAGE_PIXELS.default  # type: ignore[assignment]
# Triton backend (services/encoder/triton_backend.py), used when TRITON_URL is set.
DEFAULT_TRITON_MODEL_NAME: str = settings.TRITON_MODEL_NAME.default  # type: ignore[assignment]
DEFAULT_TRITON_TIMEOUT_S: float = settings.TRITON_TIMEOUT_S.default  # type: ignore[assignment]
DEFAULT_TRITON_STARTUP_TIMEOUT_S: float = settings.TRITON_STARTUP_TIMEOUT_S.default  # type: ignore[assignment]
DEFAULT_TRITON_CHANNEL_MAX_AGE_S: float = settings.TRITON_CHANNEL_MAX_AGE_S.default  # type: ignore[assignment]
# Micro-batching of concurrent requests (services/encoder/batching.py).
# 16 on CPU: as fast per image as 32 here, ~200 MB less resident memory (docs/performance.md).
DEFAULT_BATCH_MAX_IMAGES: int = settings.BATCH_MAX_IMAGES.default  # type: ignore[assignment]
DEFAULT_BATCH_MAX_WAIT_MS: float = settings.BATCH_MAX_WAIT_MS.default  # type: ignore[assignment]


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
        model_path = Path(settings.MODEL_PATH.read(env))
        if not model_path.is_file():
            raise ConfigError(f"MODEL_PATH={model_path} is not a file (run `make model` to export it)")
        max_batch_images = settings.MAX_REQUEST_IMAGES.read(env)
        batch_max_images = settings.BATCH_MAX_IMAGES.read(env)
        return cls(
            model_path=model_path,
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["encoder"]),
            max_batch_images=max_batch_images,
            max_image_pixels=core.MAX_IMAGE_PIXELS.read(env),
            ort_threads=settings.ORT_THREADS.read(env),
            ort_providers=parse_providers(settings.ORT_PROVIDERS.read(env)),
            triton_url=settings.TRITON_URL.read(env),
            triton_model_name=settings.TRITON_MODEL_NAME.read(env),
            triton_model_version=settings.TRITON_MODEL_VERSION.read(env),
            triton_timeout_s=settings.TRITON_TIMEOUT_S.read(env),
            triton_startup_timeout_s=settings.TRITON_STARTUP_TIMEOUT_S.read(env),
            triton_channel_max_age_s=settings.TRITON_CHANNEL_MAX_AGE_S.read(env),
            batch_max_images=batch_max_images,
            batch_max_wait_ms=settings.BATCH_MAX_WAIT_MS.read(env),
            max_queued_images=_max_queued_images(env, batch_max_images, max_batch_images),
        )


def _max_queued_images(env: Env, batch_max_images: int, max_batch_images: int) -> int:
    """MAX_QUEUED_IMAGES, by default `default_max_queued_images` of the batch size and the CPU quota; never
    below MAX_REQUEST_IMAGES, or a call of the largest size allowed could never be served."""
    default = default_max_queued_images(batch_max_images, max_batch_images, available_cpus())
    limit = settings.MAX_QUEUED_IMAGES.read(env, default)
    if limit < max_batch_images:
        raise ConfigError(
            f"MAX_QUEUED_IMAGES={limit} must be >= MAX_REQUEST_IMAGES={max_batch_images} "
            "(a call of that many images could never be served)"
        )
    return limit
