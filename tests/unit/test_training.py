"""The retraining workflow's pieces on tiny data: the head's loss, the exported graph's contract, the version,
and the Triton repository's next version."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from artsearch.config import ConfigError
from artsearch_tools.model_export.export_onnx import sha256_of
from artsearch_tools.model_export.triton_repository import add_version, existing_versions
from artsearch_tools.training.export import export_with_head
from artsearch_tools.training.head import (
    HeadSettings,
    HeadWeights,
    positive_groups,
    supervised_contrastive_loss,
    train_head,
)
from services.encoder.aspect_builder import DescriptorAssembler
from services.encoder.backends import OnnxRuntimeBackend

FEATURES, STYLE, SIZE = 12, 6, 224


def noisy_views(items: int = 6, views: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item a random centre; its views the centre plus noise as large as the spread of the centres."""
    rng = np.random.default_rng(seed)
    centres_f, centres_s = rng.normal(size=(items, FEATURES)), rng.normal(size=(items, STYLE))
    item = np.repeat(np.arange(items), views)
    features = centres_f[item] + rng.normal(scale=0.8, size=(len(item), FEATURES))
    style = centres_s[item] + rng.normal(scale=0.8, size=(len(item), STYLE))
    return features.astype(np.float32), style.astype(np.float32), item


def test_training_lowers_the_contrastive_loss() -> None:
    features, style, item = noisy_views()
    result = train_head(features, style, item, HeadSettings(hidden=16, epochs=60, learning_rate=1e-2))
    assert result.final_loss < 0.8 * result.initial_loss
    assert result.rows == 24 and result.groups == 6
    assert result.weights.output_width == FEATURES and result.weights.input_width == FEATURES + STYLE


def test_the_untrained_head_is_the_identity_on_unit_features() -> None:
    features, style, item = noisy_views()
    result = train_head(features, style, item, HeadSettings(hidden=8, epochs=0))
    projected = result.weights.apply(features, style)
    np.testing.assert_allclose(
        projected, features / np.linalg.norm(features, axis=1, keepdims=True), atol=1e-6
    )


def test_loss_by_hand_on_two_pairs() -> None:
    """Two groups of two orthogonal-ish rows: each anchor has one positive; the loss is
    -log(e^{s_p/τ} / Σ_{j≠i} e^{s_j/τ}) averaged over the four anchors."""
    import torch

    z = np.array([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=np.float32)
    loss = supervised_contrastive_loss(torch.from_numpy(z), torch.tensor([0, 0, 1, 1]), temperature=1.0)
    expected = -np.log(np.e / (np.e + 2.0))  # positive cosine 1, two negatives with cosine 0
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_label_groups_fall_back_to_the_artwork() -> None:
    groups = positive_groups(
        np.array([0, 0, 1, 2]), np.array(["Impressionism", "Impressionism", "", "Impressionism"])
    )
    assert groups[0] == groups[1] == groups[3] and groups[2] != groups[0]


# --- export ------------------------------------------------------------------------------------------


def write_tiny_base_model(folder: Path) -> Path:
    """A stand-in for the exported backbone with the same contract: uint8 `pixels` [N,224,224,3] in,
    `features` [N,12] and `style` [N,6] out (mean colour through fixed projections), plus model.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    nodes = [
        helper.make_node("Cast", ["pixels"], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["as_float"], ["mean_colour"], axes=[1, 2], keepdims=0),
        helper.make_node("MatMul", ["mean_colour", "to_features"], ["features"]),
        helper.make_node("MatMul", ["mean_colour", "to_style"], ["style"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixels", TensorProto.UINT8, ["batch", SIZE, SIZE, 3])],
        [
            helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", FEATURES]),
            helper.make_tensor_value_info("style", TensorProto.FLOAT, ["batch", STYLE]),
        ],
        [
            numpy_helper.from_array(rng.normal(size=(3, FEATURES)).astype(np.float32), "to_features"),
            numpy_helper.from_array(rng.normal(size=(3, STYLE)).astype(np.float32), "to_style"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    onnx.save(model, str(path))
    sidecar = {
        "name": "tiny",
        "version": "base-g1",
        "dimension": FEATURES,
        "input_size": SIZE,
        "input": {"name": "pixels", "dtype": "uint8", "shape": ["batch", SIZE, SIZE, 3]},
        "outputs": [
            {"name": "features", "dtype": "float32", "shape": ["batch", FEATURES]},
            {"name": "style", "dtype": "float32", "shape": ["batch", STYLE]},
        ],
        "features_output": "features",
        "onnx_sha256": sha256_of(path),
    }
    (folder / "model.json").write_text(json.dumps(sidecar))
    return path


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, HeadWeights]:
    base = write_tiny_base_model(tmp_path / "base")
    features, style, item = noisy_views()
    weights = train_head(
        features, style, item, HeadSettings(hidden=16, epochs=20, learning_rate=1e-2)
    ).weights
    output = tmp_path / "retrained" / "model.onnx"
    export_with_head(base, weights, output, {"note": "test"})
    return base, output, weights


def test_exported_model_keeps_the_input_and_output_contract(trained: tuple[Path, Path, HeadWeights]) -> None:
    base, retrained, weights = trained
    signatures = []
    for path in (base, retrained):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        inputs = [(i.name, i.type, i.shape) for i in session.get_inputs()]
        outputs = [(o.name, o.type, o.shape[-1]) for o in session.get_outputs()]
        signatures.append((inputs, outputs))
    assert signatures[0] == signatures[1]
    pixels = np.random.default_rng(2).integers(0, 256, size=(2, SIZE, SIZE, 3), dtype=np.uint8)
    base_out = ort.InferenceSession(str(base)).run(None, {"pixels": pixels})
    new_out = ort.InferenceSession(str(retrained)).run(None, {"pixels": pixels})
    np.testing.assert_allclose(new_out[0], weights.apply(base_out[0], base_out[1]), atol=1e-5)
    np.testing.assert_array_equal(new_out[1], base_out[1])  # style untouched


async def test_the_encoder_serves_the_new_version_with_the_same_layout(
    trained: tuple[Path, Path, HeadWeights],
) -> None:
    base, retrained, _ = trained
    base_backend, new_backend = OnnxRuntimeBackend(base), OnnxRuntimeBackend(retrained)
    try:
        assert new_backend.info.version.startswith("base-g1-h") and new_backend.info.version != "base-g1"
        assert new_backend.info.outputs == base_backend.info.outputs
        assert DescriptorAssembler(new_backend.info).layout == DescriptorAssembler(base_backend.info).layout
        pixels = np.full((1, SIZE, SIZE, 3), 90, dtype=np.uint8)
        outputs = await new_backend.embed(pixels)
        assert np.isfinite(DescriptorAssembler(new_backend.info)(outputs, pixels)).all()
    finally:
        await base_backend.close()
        await new_backend.close()
    meta = json.loads(retrained.with_name("model.json").read_text())
    assert meta["base_model"]["version"] == "base-g1" and meta["training"] == {"note": "test"}


def test_triton_repository_gets_the_next_version(
    trained: tuple[Path, Path, HeadWeights], tmp_path: Path
) -> None:
    base, retrained, _ = trained
    repository = tmp_path / "repository"
    assert add_version(base, repository, model_name="m", python_backend=True) == 1
    assert add_version(retrained, repository, model_name="m", python_backend=True) == 2
    assert existing_versions(repository / "m") == [1, 2]
    assert sha256_of(repository / "m" / "2" / "model.onnx") == sha256_of(retrained)


def test_triton_refuses_a_version_with_other_tensors(
    trained: tuple[Path, Path, HeadWeights], tmp_path: Path
) -> None:
    base, _, _ = trained
    repository = tmp_path / "repository"
    add_version(base, repository, model_name="m")
    other = tmp_path / "other"
    write_tiny_base_model(other)
    meta = json.loads((other / "model.json").read_text())
    meta["outputs"][0]["shape"] = ["batch", FEATURES + 1]
    (other / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="own Triton model name"):
        add_version(other / "model.onnx", repository, model_name="m")
    assert existing_versions(repository / "m") == [1]


def test_a_head_of_another_width_is_refused(tmp_path: Path) -> None:
    base = write_tiny_base_model(tmp_path / "base")
    rng = np.random.default_rng(0)
    weights = HeadWeights(
        w1=rng.normal(size=(FEATURES + STYLE, 4)).astype(np.float32),
        b1=np.zeros(4, np.float32),
        w2=np.zeros((4, FEATURES + 1), np.float32),
        b2=np.zeros(FEATURES + 1, np.float32),
    )
    with pytest.raises(ValueError, match="contract"):
        export_with_head(base, weights, tmp_path / "out" / "model.onnx", {})
