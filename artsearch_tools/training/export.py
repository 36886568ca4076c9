"""A new ONNX model version: the base graph with the trained head appended, plus its `model.json`.

The base graph's `features` tensor is renamed `backbone_features`; the head reads it and `style` and writes a
new `features` of the same width. Input (`pixels`, uint8 NHWC) and outputs (`features`, `style`) keep their
names, types and shapes, so the encoder service, its descriptor code and Triton's config serve the new file
unchanged. The sidecar is the base one with a new version (`<base version>-h<head sha>`), the new file's
sha256, and what the head is and how it was trained.
"""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from artsearch_tools.model_export.export_onnx import sha256_of, sidecar_path, write_json_atomically
from artsearch_tools.training.head import HeadWeights
from services.encoder.aspect_builder import STYLE_OUTPUT
from services.encoder.backends import EmbeddingModelInfo

BACKBONE_FEATURES = "backbone_features"
NORM_EPSILON = 1e-12
# onnxruntime vs the numpy head on the same backbone outputs.
MAX_ABS_DIFF = 1e-4


def head_version(base_version: str, weights: HeadWeights) -> str:
    return f"{base_version}-h{weights.sha256()[:8]}"


def _unit_nodes(source: str, prefix: str) -> list[Any]:
    from onnx import helper

    return [
        helper.make_node("ReduceL2", [source], [f"{prefix}_norm"], axes=[1], keepdims=1),
        helper.make_node("Max", [f"{prefix}_norm", "head_epsilon"], [f"{prefix}_safe_norm"]),
        helper.make_node("Div", [source, f"{prefix}_safe_norm"], [f"{prefix}_unit"]),
    ]


def append_head(model: Any, weights: HeadWeights, features_output: str) -> Any:
    """A copy of the ONNX `model` whose `features_output` is the head's output."""
    from onnx import TensorProto, helper, numpy_helper

    model = copy.deepcopy(model)
    graph = model.graph
    for node in graph.node:
        node.input[:] = [BACKBONE_FEATURES if name == features_output else name for name in node.input]
        node.output[:] = [BACKBONE_FEATURES if name == features_output else name for name in node.output]
    initializers = {
        "head_epsilon": np.array([NORM_EPSILON], dtype=np.float32),
        "head_w1": weights.w1.astype(np.float32),
        "head_b1": weights.b1.astype(np.float32),
        "head_w2": weights.w2.astype(np.float32),
        "head_b2": weights.b2.astype(np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in initializers.items())
    nodes = [
        *_unit_nodes(BACKBONE_FEATURES, "head_features"),
        *_unit_nodes(STYLE_OUTPUT, "head_style"),
        helper.make_node("Concat", ["head_features_unit", "head_style_unit"], ["head_input"], axis=1),
        helper.make_node("Gemm", ["head_input", "head_w1", "head_b1"], ["head_hidden"]),
        helper.make_node("Relu", ["head_hidden"], ["head_activation"]),
        helper.make_node("Gemm", ["head_activation", "head_w2", "head_b2"], ["head_delta"]),
        helper.make_node("Add", ["head_features_unit", "head_delta"], [features_output]),
    ]
    graph.node.extend(nodes)
    outputs = list(graph.output)
    del graph.output[:]
    for output in outputs:
        if output.name == features_output:
            output = helper.make_tensor_value_info(
                features_output, TensorProto.FLOAT, ["batch", weights.output_width]
            )
        graph.output.append(output)
    return model


def export_with_head(
    base_model: Path, weights: HeadWeights, output: Path, training: Mapping[str, Any]
) -> dict[str, Any]:
    """Writes `output` (model.onnx) and its model.json; returns the sidecar. Raises RuntimeError when
    onnxruntime does not reproduce the numpy head or the outputs contract changed."""
    import onnx

    base_info = EmbeddingModelInfo.from_sidecar(Path(base_model), backend="onnxruntime")
    widths = dict(base_info.outputs)
    if weights.output_width != widths[base_info.features_output]:
        raise ValueError(
            f"head writes {weights.output_width} values, the base {base_info.features_output!r} has "
            f"{widths[base_info.features_output]}: the outputs contract must not change"
        )
    model = append_head(onnx.load(str(base_model)), weights, base_info.features_output)
    onnx.checker.check_model(model)
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(output.name + ".tmp")
    onnx.save(model, str(tmp))
    try:
        max_diff = verify_head(base_model, tmp, weights, base_info)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, output)
    meta = json.loads(sidecar_path(Path(base_model)).read_text())
    meta.update(
        name=f"{base_info.name}-retrained",
        version=head_version(base_info.version, weights),
        onnx_sha256=sha256_of(output),
        base_model={
            "name": base_info.name,
            "version": base_info.version,
            "onnx_sha256": base_info.onnx_sha256,
        },
        head={
            "formula": "features = unit(f) + W2 relu(W1 [unit(f), unit(style)] + b1) + b2",
            "input_width": weights.input_width,
            "hidden": int(weights.w1.shape[1]),
            "output_width": weights.output_width,
            "sha256": weights.sha256(),
            "max_abs_diff_vs_numpy": max_diff,
        },
        training=dict(training),
    )
    write_json_atomically(sidecar_path(output), meta)
    return meta


def verify_head(base_model: Path, model: Path, weights: HeadWeights, info: EmbeddingModelInfo) -> float:
    """Runs both graphs on the same pixels: `style` must be unchanged and `features` equal the numpy head
    applied to the base outputs. Returns the largest difference."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, info.input_size, info.input_size, 3), dtype=np.uint8)
    names = [name for name, _ in info.outputs]
    base = dict(zip(names, _session(base_model, ort).run(names, {info.input_name: pixels}), strict=True))
    new = dict(zip(names, _session(model, ort).run(names, {info.input_name: pixels}), strict=True))
    for name, width in info.outputs:
        if new[name].shape != (len(pixels), width) or new[name].dtype != np.float32:
            raise RuntimeError(
                f"output {name!r} is {new[name].dtype}{new[name].shape}, expected [N, {width}]"
            )
    expected = weights.apply(base[info.features_output], base[STYLE_OUTPUT])
    worst = float(np.max(np.abs(new[info.features_output] - expected)))
    style_diff = float(np.max(np.abs(new[STYLE_OUTPUT] - base[STYLE_OUTPUT])))
    if worst > MAX_ABS_DIFF or style_diff > MAX_ABS_DIFF:
        raise RuntimeError(f"exported head differs from numpy by {worst:.3g} (style {style_diff:.3g})")
    return worst


def _session(path: Path, ort: Any) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
