"""The encoder's settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from artsearch.config import DEFAULT_PORTS, ConfigError, Env, ListenSettings

DEFAULT_MAX_BATCH_IMAGES = 64
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class EncoderConfig:
    model_path: Path
    listen: ListenSettings = field(default_factory=lambda: ListenSettings(port=DEFAULT_PORTS["encoder"]))
    max_batch_images: int = DEFAULT_MAX_BATCH_IMAGES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    # onnxruntime intra-op threads; 0 lets onnxruntime use one per physical core.
    ort_threads: int = 0
    # When set, a Triton Inference Server runs the model instead of the embedded onnxruntime.
    triton_url: str | None = None

    @classmethod
    def from_env(cls, env: Env) -> EncoderConfig:
        model_path = Path(env.str("MODEL_PATH"))
        if not model_path.is_file():
            raise ConfigError(f"MODEL_PATH={model_path} is not a file (run `make model` to export it)")
        return cls(
            model_path=model_path,
            listen=ListenSettings.from_env(env, DEFAULT_PORTS["encoder"]),
            max_batch_images=env.int("MAX_BATCH_IMAGES", DEFAULT_MAX_BATCH_IMAGES, minimum=1),
            max_image_pixels=env.int("MAX_IMAGE_PIXELS", DEFAULT_MAX_IMAGE_PIXELS, minimum=64),
            ort_threads=env.int("ORT_THREADS", 0, minimum=0),
            triton_url=env.optional("TRITON_URL"),
        )
