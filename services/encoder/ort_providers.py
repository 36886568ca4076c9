"""Which onnxruntime execution providers run the embedded model: `ORT_PROVIDERS`, a comma-separated list
in order of preference, of `tensorrt`, `cuda` and `cpu` (default `cpu`).

On a GPU host without Triton, `ORT_PROVIDERS=tensorrt,cuda,cpu` runs the network on the GPU with the
`onnxruntime-gpu` package: TensorRT in FP16 with its engines cached on disk (built once per model and GPU,
minutes), CUDA for what TensorRT does not take. onnxruntime silently falls back to the CPU when a GPU
provider cannot load (missing CUDA or TensorRT libraries); here that is a start-up error instead, so a
GPU deployment never runs on its CPU unnoticed.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from artsearch.config import ConfigError

PROVIDER_NAMES = {
    "tensorrt": "TensorrtExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "cpu": "CPUExecutionProvider",
}
DEFAULT_TENSORRT_CACHE = Path(tempfile.gettempdir()) / "artsearch-tensorrt-engines"


def parse_providers(value: str) -> tuple[str, ...]:
    """`tensorrt,cuda,cpu` -> ("tensorrt", "cuda", "cpu"); ConfigError for unknown, repeated or no names."""
    names = tuple(name.strip().lower() for name in value.split(",") if name.strip())
    unknown = [name for name in names if name not in PROVIDER_NAMES]
    if not names or unknown or len(set(names)) != len(names):
        raise ConfigError(
            f"ORT_PROVIDERS={value!r}: give distinct names among {', '.join(PROVIDER_NAMES)} in order of "
            "preference, e.g. tensorrt,cuda,cpu"
        )
    return names


def session_providers(
    names: tuple[str, ...], tensorrt_cache: Path = DEFAULT_TENSORRT_CACHE
) -> list[str | tuple[str, dict[str, Any]]]:
    """The `providers` argument of an InferenceSession for these names; ConfigError when this onnxruntime
    build lacks one of them (the CPU package has no GPU providers)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    missing = [PROVIDER_NAMES[name] for name in names if PROVIDER_NAMES[name] not in available]
    if missing:
        raise ConfigError(
            f"ORT_PROVIDERS asks for {missing}, which this onnxruntime does not have (it has {available}); "
            "GPU providers come with the onnxruntime-gpu package"
        )
    providers: list[str | tuple[str, dict[str, Any]]] = []
    for name in names:
        if name == "tensorrt":
            options = {
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(tensorrt_cache),
            }
            providers.append((PROVIDER_NAMES[name], options))
        else:
            providers.append(PROVIDER_NAMES[name])
    return providers


def check_session_providers(session: Any, names: tuple[str, ...]) -> None:
    """ConfigError when the session did not get the first provider asked for (onnxruntime falls back to
    the next ones, down to the CPU, when one fails to load)."""
    wanted = PROVIDER_NAMES[names[0]]
    got = session.get_providers()
    if wanted not in got:
        raise ConfigError(
            f"onnxruntime could not start {wanted} (the session runs on {got}): check the GPU, its driver "
            "and the CUDA/TensorRT libraries onnxruntime-gpu needs, or set ORT_PROVIDERS=cpu"
        )
