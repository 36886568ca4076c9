"""The int8 variant of the exported encoder model: onnxruntime static quantization, calibrated on paintings.

    python -m artsearch_tools.model_export.quantize_onnx --fp32 models/efficientnet-lite0/model.onnx \\
        --calibration data/catalogues/gcompris --output models/efficientnet-lite0-int8/model.onnx

The result is a model version of its own (`<fp32 version>-int8`, with its own `model.json`): its vectors are
not comparable with the fp32 model's, so switching is the usual model-version flow (re-index under the new
version, then move the alias; docs/operations.md). Same tensors, same preprocessing: the embedded backend and
Triton serve it exactly like the fp32 file.

How it is quantized (chosen by measurement on this project's CPUs, docs/performance.md):
- QDQ format, weights int8 per output channel, activations uint8 per tensor, ranges from MinMax calibration.
- `reduce_range` (7-bit weights): on x86 CPUs without VNNI, onnxruntime's uint8 x int8 kernels add pairs of
  products in 16 bits and saturate; with 8-bit weights the pooled features fell to cosine 0.86 with fp32 on
  visitor photos, with 7-bit 0.96.
- The stem convolution stays float: it sees raw pixels (normalised in the graph), the widest range of all;
  quantizing it cost more than any other layer (cosine 0.86 -> 0.95 when kept float).

Calibration set (reproducible: the files and the order are fixed): every painting of the given catalogue,
decoded and resized exactly as the encoder does (`services.encoder.images.decode_image`), whole and as its
four quadrant crops -- details are queries too. With the demo catalogue: 36 paintings, 180 images.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from artsearch.config import ConfigError
from artsearch_tools.model_export.export_onnx import sha256_of, sidecar_path, write_json_atomically
from services.encoder.backends import EmbeddingModelInfo

log = logging.getLogger(__name__)

# Bump when the recipe below changes: it is part of the int8 model's version.
QUANTIZATION_REVISION = 1
VERSION_SUFFIX = f"int8q{QUANTIZATION_REVISION}"
CALIBRATION_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
# Pooled features of the int8 model vs fp32 on the check images: below this the export is refused.
MIN_FEATURE_COSINE = 0.9


@dataclass(frozen=True)
class QuantizationCheck:
    """How closely the int8 model follows fp32 on the check images (cosine of each output, per image)."""

    images: int
    cosine_mean: dict[str, float]
    cosine_min: dict[str, float]


def calibration_files(catalogue: Path) -> list[Path]:
    if not catalogue.is_dir():
        raise FileNotFoundError(
            f"{catalogue} is not a folder of calibration images (make catalogue builds one)"
        )
    files = sorted(p for p in catalogue.iterdir() if p.suffix.lower() in CALIBRATION_IMAGE_SUFFIXES)
    if not files:
        raise FileNotFoundError(f"no calibration images in {catalogue} (make catalogue builds the demo one)")
    return files


def calibration_pixels(files: Sequence[Path], size: int) -> np.ndarray:
    """uint8 [5 * len(files), size, size, 3]: each picture whole, then its four quadrants."""
    from PIL import Image

    from services.encoder.config import DEFAULT_MAX_IMAGE_PIXELS
    from services.encoder.images import decode_image

    whole, quadrants = [], []
    for path in files:
        data = path.read_bytes()
        whole.append(decode_image(data, size=size, max_pixels=DEFAULT_MAX_IMAGE_PIXELS))
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        width, height = picture.size
        for box in _quadrants(width, height):
            quadrants.append(np.asarray(picture.crop(box).resize((size, size), Image.Resampling.BILINEAR)))
    return np.stack(whole + quadrants)


def _quadrants(width: int, height: int) -> list[tuple[int, int, int, int]]:
    half_w, half_h = width // 2, height // 2
    return [
        (0, 0, half_w, half_h),
        (half_w, 0, width, half_h),
        (0, half_h, half_w, height),
        (half_w, half_h, width, height),
    ]


def quantize(fp32: Path, output: Path, pixels: np.ndarray, info: EmbeddingModelInfo) -> None:
    """Writes the int8 model to `output` (through a temporary file beside it)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent) as scratch:
        prepared = Path(scratch) / "prepared.onnx"
        quantized = Path(scratch) / "model.onnx"
        quant_pre_process(str(fp32), str(prepared))
        stem = next(node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv")
        quantize_static(
            str(prepared),
            str(quantized),
            _CalibrationReader(pixels, info.input_name),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=[stem],
        )
        quantized.chmod(0o644)
        os.replace(quantized, output)


class _CalibrationReader:
    """onnxruntime's CalibrationDataReader: one image per call."""

    def __init__(self, pixels: np.ndarray, input_name: str) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = (
            {input_name: pixels[i : i + 1]} for i in range(len(pixels))
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def compare_outputs(
    fp32: Path, int8: Path, pixels: np.ndarray, info: EmbeddingModelInfo
) -> QuantizationCheck:
    """Cosine of every output, int8 vs fp32, image by image."""
    import onnxruntime as ort

    names = [name for name, _ in info.outputs]
    results = []
    for path in (fp32, int8):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        runs = [session.run(names, {info.input_name: pixels[i : i + 16]}) for i in range(0, len(pixels), 16)]
        results.append({name: np.concatenate([run[k] for run in runs]) for k, name in enumerate(names)})
    means, minimums = {}, {}
    for name in names:
        a, b = results[0][name], results[1][name]
        cosine = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        means[name], minimums[name] = round(float(cosine.mean()), 4), round(float(cosine.min()), 4)
    return QuantizationCheck(images=len(pixels), cosine_mean=means, cosine_min=minimums)


def int8_sidecar(
    fp32_meta: dict[str, Any], onnx_sha256: str, files: Sequence[Path], check: QuantizationCheck
) -> dict[str, Any]:
    """The fp32 sidecar with what changed: version, file digest, and how it was quantized."""
    import onnxruntime

    meta = dict(fp32_meta)
    meta["version"] = f"{fp32_meta['version']}-{VERSION_SUFFIX}"
    meta["onnx_sha256"] = onnx_sha256
    meta["quantization"] = {
        "revision": QUANTIZATION_REVISION,
        "from": {"version": fp32_meta["version"], "onnx_sha256": fp32_meta["onnx_sha256"]},
        "method": "onnxruntime static quantization, QDQ, per-channel int8 weights (reduce_range: 7-bit), "
        "uint8 activations, MinMax calibration; the stem convolution kept float",
        "calibration": {
            "images": [path.name for path in files],
            "variants": "each whole and as its four quadrant crops",
            "count": check.images,
        },
        "cosine_to_fp32": {"mean": check.cosine_mean, "min": check.cosine_min},
        "onnxruntime": onnxruntime.__version__,
    }
    meta.pop("verification", None)
    return meta


def is_up_to_date(output: Path, fp32_meta: dict[str, Any], files: Sequence[Path]) -> bool:
    import json

    try:
        meta = json.loads(sidecar_path(output).read_text())
    except (OSError, ValueError):
        return False
    quantization = meta.get("quantization", {})
    return (
        output.is_file()
        and quantization.get("revision") == QUANTIZATION_REVISION
        and quantization.get("from", {}).get("onnx_sha256") == fp32_meta.get("onnx_sha256")
        and quantization.get("calibration", {}).get("images") == [path.name for path in files]
        and meta.get("onnx_sha256") == sha256_of(output)
    )


def main(argv: Sequence[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--fp32", type=Path, required=True, help="the exported fp32 model.onnx (model.json beside)"
    )
    parser.add_argument("--calibration", type=Path, required=True, help="a catalogue folder of paintings")
    parser.add_argument("--output", type=Path, required=True, help="where to write the int8 model.onnx")
    parser.add_argument("--force", action="store_true", help="quantize even when the model is up to date")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    try:
        info = EmbeddingModelInfo.from_sidecar(args.fp32, backend="onnxruntime")
        fp32_meta = json.loads(sidecar_path(args.fp32).read_text())
        files = calibration_files(args.calibration)
    except (ConfigError, FileNotFoundError) as error:
        log.error("cannot quantize: %s", error)
        return 2
    if not args.force and is_up_to_date(args.output, fp32_meta, files):
        args.output.touch()  # make compares timestamps: current from now on
        log.info("%s is up to date", args.output)
        return 0
    pixels = calibration_pixels(files, info.input_size)
    quantize(args.fp32, args.output, pixels, info)
    check = compare_outputs(args.fp32, args.output, pixels, info)
    if check.cosine_mean[info.features_output] < MIN_FEATURE_COSINE:
        args.output.unlink()
        log.error("int8 features too far from fp32 (cosine %s); not keeping it", check.cosine_mean)
        return 1
    meta = int8_sidecar(fp32_meta, sha256_of(args.output), files, check)
    write_json_atomically(sidecar_path(args.output), meta)
    log.info("quantized %s (%s): cosine to fp32 %s", args.output, meta["version"], check.cosine_mean)
    return 0


if __name__ == "__main__":
    sys.exit(main())
