"""Triton model repositories for the exported encoder model, generated from its `model.json` sidecar.

    python -m artsearch_tools.model_export.triton_repository --model models/efficientnet-lite0/model.onnx \\
        --repository deploy/triton/model_repository [--version 1] [--tensorrt]

Two variants share the model's name, tensors and batching, so `TritonBackend` cannot tell them apart:

- production (`write_production_repository`): the ONNX file served by Triton's onnxruntime backend on a GPU,
  dynamic batching, the two newest versions loaded. `config.pbtxt` is the plain GPU configuration (with
  `--tensorrt`, the TensorRT FP16 one); `configs/tensorrt-fp16.pbtxt` is always written beside it, and
  `tritonserver --model-config-name=tensorrt-fp16` selects it without regenerating anything. For the int8
  model (`quantize_onnx`) the TensorRT configuration asks for INT8 and is `configs/tensorrt-int8.pbtxt`.
- python backend (`write_python_backend_repository`): `deploy/triton/python_backend/model.py` runs the
  same ONNX file with onnxruntime inside Triton's python backend, on CPU. It is what the tests serve, since
  the only Triton binary obtainable here (PyPI's nvidia-pytriton) ships the python backend only.

Pixels travel as uint8 NHWC and the graph normalises them itself: a quarter of the bytes of float32.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from artsearch.config import ConfigError
from services.encoder.backends import EmbeddingModelInfo
from services.encoder.config import DEFAULT_TRITON_MODEL_NAME

DEFAULT_MODEL_NAME = DEFAULT_TRITON_MODEL_NAME
MAX_BATCH_SIZE = 64
PREFERRED_BATCH_SIZES = (16, 32)
MAX_QUEUE_DELAY_MICROSECONDS = 2000
# Version directories loaded at once: the new one serves while the previous one stays for a rollback.
LOADED_VERSIONS = 2
TENSORRT_CONFIG_NAME = "tensorrt-fp16"
# The int8 model's (artsearch_tools/model_export/quantize_onnx.py): TensorRT INT8 from the model's own scales.
TENSORRT_INT8_CONFIG_NAME = "tensorrt-int8"
PYTHON_MODEL_SOURCE = (
    Path(__file__).resolve().parents[2] / "deploy" / "triton" / "python_backend" / "model.py"
)


def _tensors(info: EmbeddingModelInfo) -> str:
    outputs = ",\n".join(
        f'  {{ name: "{name}", data_type: TYPE_FP32, dims: [ {width} ] }}' for name, width in info.outputs
    )
    size = info.input_size
    return (
        f'input [\n  {{ name: "{info.input_name}", data_type: TYPE_UINT8, dims: [ {size}, {size}, 3 ] }}\n]\n'
        f"output [\n{outputs}\n]\n"
    )


def _batching() -> str:
    preferred = ", ".join(map(str, PREFERRED_BATCH_SIZES))
    return (
        f"max_batch_size: {MAX_BATCH_SIZE}\n"
        "# Concurrent Encode calls (one per gateway query) are merged into one batch; waiting up to 2 ms\n"
        "# for company costs little next to a query's latency and multiplies GPU throughput under load.\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {preferred} ]\n"
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_MICROSECONDS}\n"
        "}\n"
    )


def _tensorrt(info: EmbeddingModelInfo) -> str:
    size = info.input_size

    def shape(batch: int) -> str:
        return f"{info.input_name}:{batch}x{size}x{size}x3"

    # One optimisation profile covering every batch size Triton can form, so TensorRT builds its engine
    # once (cached on disk across restarts) instead of once per new batch shape.
    parameters = {
        # An int8 model's QDQ nodes carry its scales: TensorRT builds INT8 kernels from them, no calibration
        # table (explicit quantization); layers kept float run in FP16.
        "precision_mode": "INT8" if info.quantized else "FP16",
        "max_workspace_size_bytes": str(1 << 30),
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/triton-trt-cache",
        "trt_profile_min_shapes": shape(1),
        "trt_profile_opt_shapes": shape(PREFERRED_BATCH_SIZES[-1]),
        "trt_profile_max_shapes": shape(MAX_BATCH_SIZE),
    }
    lines = "\n".join(f'      parameters {{ key: "{k}" value: "{v}" }}' for k, v in parameters.items())
    return (
        f"# onnxruntime hands the graph to TensorRT in {_precision(info)}; "
        "nodes TensorRT cannot run fall back to CUDA.\n"
        "optimization {\n"
        "  execution_accelerators {\n"
        "    gpu_execution_accelerator: [ {\n"
        '      name: "tensorrt"\n'
        f"{lines}\n"
        "    } ]\n"
        "  }\n"
        "}\n"
    )


def _precision(info: EmbeddingModelInfo) -> str:
    return "INT8 (FP16 where the model is float)" if info.quantized else "FP16"


def _header(info: EmbeddingModelInfo, variant: str) -> str:
    return (
        f"# {variant}.\n"
        f"# Generated from model.json of {info.name} {info.version} by\n"
        "# `python -m artsearch_tools.model_export.triton_repository` (make triton-repo): "
        "regenerate, do not edit.\n"
    )


def production_config(info: EmbeddingModelInfo, model_name: str, *, tensorrt: bool = False) -> str:
    """`config.pbtxt` for Triton's onnxruntime backend on GPU, optionally with TensorRT FP16."""
    variant = "Production, onnxruntime on GPU" + (f" with TensorRT {_precision(info)}" if tensorrt else "")
    text = (
        _header(info, variant)
        + f'name: "{model_name}"\n'
        + 'platform: "onnxruntime_onnx"\n'
        + 'backend: "onnxruntime"\n'
        + f"version_policy: {{ latest {{ num_versions: {LOADED_VERSIONS} }} }}\n"
        + _batching()
        + _tensors(info)
        + "instance_group [ { kind: KIND_GPU, count: 1 } ]\n"
        + (_tensorrt(info) if tensorrt else "")
    )
    return _validated(text)


def python_backend_config(
    info: EmbeddingModelInfo, model_name: str, *, execution_env: Path | None = None, intra_op_threads: int = 0
) -> str:
    """`config.pbtxt` for the python-backend twin: the same name, tensors and batching, on CPU.

    `execution_env` is a Python environment (a venv or an unpacked conda-pack) holding numpy and
    onnxruntime, of the Python version of the backend's stub. The stub runs its interpreter isolated
    (PYTHONPATH is ignored), so this is how it finds them; without it, the stub's own Python must have them.
    """
    env = (
        "# The stub activates this environment (numpy, onnxruntime) before loading model.py.\n"
        f'parameters {{ key: "EXECUTION_ENV_PATH" value: {{ string_value: "{execution_env}" }} }}\n'
        if execution_env is not None
        else ""
    )
    text = (
        _header(
            info, "Python backend running onnxruntime on CPU (tests; hosts without the onnxruntime backend)"
        )
        + f'name: "{model_name}"\n'
        + 'backend: "python"\n'
        + _batching()
        + _tensors(info)
        + "instance_group [ { kind: KIND_CPU, count: 1 } ]\n"
        + "# onnxruntime intra-op threads inside the model (0: one per core).\n"
        + f'parameters {{ key: "intra_op_threads" value: {{ string_value: "{intra_op_threads}" }} }}\n'
        + env
    )
    return _validated(text)


def _validated(text: str) -> str:
    """The text itself, once it parses as Triton's ModelConfig (catches a misspelt field at generation)."""
    text_format.Parse(text, model_config_pb2.ModelConfig())
    return text


def _write_model(model_path: Path, model_dir: Path, version: int) -> None:
    if version < 1:
        raise ConfigError(f"model version must be >= 1, got {version}")
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_path, version_dir / "model.onnx")


def tensorrt_config_name(info: EmbeddingModelInfo) -> str:
    """The name `tritonserver --model-config-name=...` selects the TensorRT configuration by."""
    return TENSORRT_INT8_CONFIG_NAME if info.quantized else TENSORRT_CONFIG_NAME


def write_production_repository(
    model_path: Path,
    repository: Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    version: int = 1,
    tensorrt: bool = False,
) -> Path:
    """Writes `<repository>/<model_name>/{config.pbtxt, configs/tensorrt-<fp16|int8>.pbtxt,
    <version>/model.onnx}` and returns the model directory. Other version directories are left alone
    (rollbacks)."""
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    model_dir = repository / model_name
    (model_dir / "configs").mkdir(parents=True, exist_ok=True)
    (model_dir / "config.pbtxt").write_text(production_config(info, model_name, tensorrt=tensorrt))
    tensorrt_config = production_config(info, model_name, tensorrt=True)
    (model_dir / "configs" / f"{tensorrt_config_name(info)}.pbtxt").write_text(tensorrt_config)
    _write_model(model_path, model_dir, version)
    return model_dir


def write_python_backend_repository(
    model_path: Path,
    repository: Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    version: int = 1,
    execution_env: Path | None = None,
    intra_op_threads: int = 0,
) -> Path:
    """Writes `<repository>/<model_name>/{config.pbtxt, <version>/model.py, <version>/model.onnx}` and
    returns the model directory. `execution_env`: see `python_backend_config`."""
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    model_dir = repository / model_name
    model_dir.mkdir(parents=True, exist_ok=True)
    config = python_backend_config(
        info, model_name, execution_env=execution_env, intra_op_threads=intra_op_threads
    )
    (model_dir / "config.pbtxt").write_text(config)
    _write_model(model_path, model_dir, version)
    shutil.copyfile(PYTHON_MODEL_SOURCE, model_dir / str(version) / "model.py")
    return model_dir


def existing_versions(model_dir: Path) -> list[int]:
    """The numbered version folders of a model, ascending."""
    if not model_dir.is_dir():
        return []
    return sorted(int(entry.name) for entry in model_dir.iterdir() if entry.is_dir() and entry.name.isdigit())


def next_version(model_dir: Path) -> int:
    """One above the newest version folder (1 for a new model)."""
    versions = existing_versions(model_dir)
    return versions[-1] + 1 if versions else 1


def check_same_tensors(model_path: Path, model_dir: Path) -> None:
    """ConfigError unless the model's tensors are those the existing config.pbtxt declares: every version of
    a Triton model shares one config, so a new version must keep the input and outputs contract."""
    config_file = model_dir / "config.pbtxt"
    if not config_file.is_file():
        return
    existing = text_format.Parse(config_file.read_text(), model_config_pb2.ModelConfig())
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    wanted = text_format.Parse(_tensors(info), model_config_pb2.ModelConfig())
    if list(existing.input) != list(wanted.input) or list(existing.output) != list(wanted.output):
        raise ConfigError(
            f"{model_path} has other tensors than {config_file} declares: a model whose inputs or outputs "
            "differ needs its own Triton model name, not a new version"
        )


def add_version(
    model_path: Path,
    repository: Path,
    *,
    model_name: str = DEFAULT_MODEL_NAME,
    python_backend: bool = False,
    execution_env: Path | None = None,
) -> int:
    """Places the model as the next numbered version of `model_name` (Triton then serves it as the newest,
    the previous one still loaded for a rollback); returns the version number."""
    model_dir = repository / model_name
    check_same_tensors(model_path, model_dir)
    version = next_version(model_dir)
    if python_backend:
        write_python_backend_repository(
            model_path, repository, model_name=model_name, version=version, execution_env=execution_env
        )
    else:
        write_production_repository(model_path, repository, model_name=model_name, version=version)
    return version


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model", type=Path, required=True, help="the exported model.onnx (model.json beside)"
    )
    parser.add_argument("--repository", type=Path, required=True, help="the model repository to write into")
    parser.add_argument(
        "--model-name", default=DEFAULT_MODEL_NAME, help=f"Triton model name ({DEFAULT_MODEL_NAME})"
    )
    parser.add_argument(
        "--version",
        type=_version,
        default=1,
        help="version directory for the ONNX file (1), or `next`: one above the newest present",
    )
    parser.add_argument(
        "--tensorrt", action="store_true", help="config.pbtxt with the TensorRT FP16 accelerator (GPU hosts)"
    )
    parser.add_argument(
        "--python-backend", action="store_true", help="write the python-backend (CPU) variant instead"
    )
    parser.add_argument(
        "--execution-env",
        type=Path,
        help="with --python-backend: the Python environment with numpy and onnxruntime for the stub",
    )
    args = parser.parse_args(argv)
    try:
        if args.version == "next":
            check_same_tensors(args.model, args.repository / args.model_name)
            args.version = next_version(args.repository / args.model_name)
        if args.python_backend:
            model_dir = write_python_backend_repository(
                args.model, args.repository, model_name=args.model_name, version=args.version,
                execution_env=args.execution_env.resolve() if args.execution_env else None,
            )  # fmt: skip
        else:
            model_dir = write_production_repository(
                args.model, args.repository, model_name=args.model_name, version=args.version,
                tensorrt=args.tensorrt,
            )  # fmt: skip
    except (ConfigError, OSError) as error:
        print(f"triton_repository: {error}", file=sys.stderr)
        return 2
    print(f"wrote {model_dir}")
    return 0


def _version(text: str) -> int | str:
    if text == "next":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a version number nor `next`") from None


if __name__ == "__main__":
    sys.exit(main())
