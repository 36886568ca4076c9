"""Where the network runs: behind `EmbeddingBackend`, chosen once at start-up by
`backend_factory.open_embedding_backend`.

The embedded onnxruntime backend is the default; with TRITON_URL set, `triton_backend.TritonBackend` runs
the same ONNX file on a Triton Inference Server, with the same tensor names, so the servicer never knows
which one it has.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from artsearch.config import ConfigError
from services.encoder.ort_providers import check_session_providers, session_providers

# The exported graph's output names (artsearch_tools/model_export/export_onnx.py writes them, the backends and
# the descriptor read them): the one definition of this contract.
FEATURES_OUTPUT = "features"
STYLE_OUTPUT = "style"


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """What a backend runs: from the exported model's `model.json` sidecar."""

    name: str
    version: str
    dimension: int
    input_size: int
    input_name: str
    features_output: str
    onnx_sha256: str
    backend: str
    # Every output tensor of the graph and its width: (name, width), in the sidecar's order.
    outputs: tuple[tuple[str, int], ...] = ()
    # An int8 (QDQ) variant of a float model (artsearch_tools/model_export/quantize_onnx.py).
    quantized: bool = False

    @classmethod
    def from_sidecar(cls, model_path: Path, backend: str) -> EmbeddingModelInfo:
        """Reads `model.json` beside `model_path`; ConfigError when it is missing or malformed."""
        sidecar = model_path.with_name("model.json")
        try:
            meta: dict[str, Any] = json.loads(sidecar.read_text())
            return cls(
                name=str(meta["name"]),
                version=str(meta["version"]),
                dimension=int(meta["dimension"]),
                input_size=int(meta["input_size"]),
                input_name=str(meta["input"]["name"]),
                features_output=str(meta["features_output"]),
                onnx_sha256=str(meta["onnx_sha256"]),
                backend=backend,
                outputs=tuple((str(o["name"]), int(o["shape"][-1])) for o in meta["outputs"]),
                quantized="quantization" in meta,
            )
        except FileNotFoundError:
            raise ConfigError(f"{sidecar} is missing: export the model with `make model`") from None
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{sidecar} is malformed: {error!r}") from None


class BackendUnavailable(RuntimeError):
    """The model server behind a backend cannot answer now (down, restarting, overloaded, past the
    deadline); the same call may succeed later. The servicer answers UNAVAILABLE, not INTERNAL."""


class EmbeddingBackend(Protocol):
    """Runs the network on a batch of preprocessed images."""

    @property
    def info(self) -> EmbeddingModelInfo: ...

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        """uint8 RGB [N, input_size, input_size, 3] → every output of the graph by name, raw (not
        normalised) float32 [N, width]; `info.features_output` is the global descriptor.
        Raises ValueError for a malformed batch, BackendUnavailable when a remote model server is out of
        reach for now."""
        ...

    async def close(self) -> None: ...


class OnnxRuntimeBackend:
    """The exported ONNX model in an in-process onnxruntime session.

    Inference runs on one dedicated thread: onnxruntime releases the GIL, so the event loop keeps serving,
    and batches queue instead of competing for the same cores with their own intra-op thread pools.
    """

    def __init__(
        self, model_path: Path, intra_op_threads: int = 0, providers: tuple[str, ...] = ("cpu",)
    ) -> None:
        import onnxruntime as ort

        self._info = EmbeddingModelInfo.from_sidecar(model_path, backend="onnxruntime")
        _check_file_matches_sidecar(model_path, self._info)
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Spinning worker threads steal the cores that decode JPEGs and serve gRPC in the same process:
        # measured ~20 -> ~12.4 CPU ms per image under load, single-image p50 ~30 -> ~17 ms
        # (docs/performance.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(str(model_path), options, providers=session_providers(providers))
        check_session_providers(self._session, providers)
        self._check_signature()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")

    @property
    def info(self) -> EmbeddingModelInfo:
        return self._info

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        expected = (self._info.input_size, self._info.input_size, 3)
        if pixels.dtype != np.uint8 or pixels.ndim != 4 or pixels.shape[1:] != expected:
            shape = ", ".join(map(str, expected))
            raise ValueError(f"expected uint8 [N, {shape}], got {pixels.dtype} {pixels.shape}")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, np.ascontiguousarray(pixels))

    def _run(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        names = [name for name, _ in self._info.outputs]
        results = self._session.run(names, {self._info.input_name: pixels})
        return {
            name: np.asarray(result, dtype=np.float32) for name, result in zip(names, results, strict=True)
        }

    async def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _check_signature(self) -> None:
        """The sidecar and the graph must agree, or every request would fail later with a worse message."""
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        model_input = inputs.get(self._info.input_name)
        features = outputs.get(self._info.features_output)
        if model_input is None or model_input.type != "tensor(uint8)":
            raise ConfigError(f"model has no uint8 input {self._info.input_name!r}: inputs {list(inputs)}")
        if features is None or features.shape[-1] != self._info.dimension:
            raise ConfigError(
                f"model has no output {self._info.features_output!r} of width {self._info.dimension}: "
                f"outputs {[(o.name, o.shape) for o in outputs.values()]}"
            )


def _check_file_matches_sidecar(model_path: Path, info: EmbeddingModelInfo) -> None:
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    if digest != info.onnx_sha256:
        raise ConfigError(f"{model_path} does not match its model.json (sha256 {digest[:12]}…): re-export it")
