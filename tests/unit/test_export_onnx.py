"""The exported EfficientNet-Lite0 model (`make model`): its contract, its sidecar, and that it carries the
real pretrained ImageNet weights and behaves like an image descriptor."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image, ImageDraw

from artsearch_tools.model_export import export_onnx
from services.encoder.images import decode_image


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sidecar(model_path: Path) -> dict:
    return json.loads(model_path.with_name("model.json").read_text())


STYLE_WIDTH = 2 * (80 + 112)  # mean and std of the channels of blocks 7 (80) and 10 (112)


def features(session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    return session.run(["features"], {"pixels": pixels})[0]


def style(session: ort.InferenceSession, pixels: np.ndarray) -> np.ndarray:
    return session.run(["style"], {"pixels": pixels})[0]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def shapes_scene(seed: int, width: int = 320, height: int = 240) -> Image.Image:
    """A flat-colour "painting" of random discs and bars."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y, r = int(rng.integers(0, width)), int(rng.integers(0, height)), int(rng.integers(10, 70))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        if rng.random() < 0.5:
            draw.ellipse([x - r, y - r, x + r, y + r], fill=colour)
        else:
            draw.rectangle([x - r, y - r // 2, x + r, y + r // 2], fill=colour)
    return image


def stripes(width: int = 320, height: int = 240) -> Image.Image:
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    band = (np.arange(width) // 10) % 2 == 0
    pixels[:, band] = (20, 40, 200)
    pixels[:, ~band] = (240, 220, 30)
    return Image.fromarray(pixels)


def as_input(image: Image.Image) -> np.ndarray:
    """The service's own preprocessing, from encoded bytes."""
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return decode_image(buffer.getvalue(), size=224, max_pixels=10_000_000)


class TestGraphContract:
    def test_input_is_uint8_nhwc_with_dynamic_batch(self, session):
        (model_input,) = session.get_inputs()
        assert model_input.name == "pixels"
        assert model_input.type == "tensor(uint8)"
        assert model_input.shape[1:] == [224, 224, 3]
        assert isinstance(model_input.shape[0], str)  # symbolic: any batch size

    def test_outputs_are_float32_features_of_width_1280_and_style_statistics(self, session):
        outputs = {output.name: output for output in session.get_outputs()}
        assert list(outputs) == ["features", "style"]
        for output, width in ((outputs["features"], 1280), (outputs["style"], STYLE_WIDTH)):
            assert output.type == "tensor(float)"
            assert output.shape[1] == width
            assert isinstance(output.shape[0], str)

    @pytest.mark.parametrize("batch", [1, 2, 5])
    def test_runs_any_batch_size_and_rows_do_not_depend_on_the_batch(self, session, batch):
        pixels = np.stack([as_input(shapes_scene(seed)) for seed in range(batch)])
        batched_features, batched_style = session.run(["features", "style"], {"pixels": pixels})
        assert batched_features.shape == (batch, 1280)
        assert batched_style.shape == (batch, STYLE_WIDTH)
        assert batched_features.dtype == batched_style.dtype == np.float32
        alone_features, alone_style = session.run(["features", "style"], {"pixels": pixels[-1:]})
        np.testing.assert_allclose(batched_features[-1], alone_features[0], atol=1e-4)
        np.testing.assert_allclose(batched_style[-1], alone_style[0], atol=1e-4)

    def test_features_are_raw_not_normalised(self, session):
        row = features(session, as_input(shapes_scene(3))[None])[0]
        assert np.all(np.isfinite(row))
        assert np.all(row >= 0)  # ReLU6 activations, averaged
        assert abs(float(np.linalg.norm(row)) - 1.0) > 0.05

    def test_style_standard_deviations_are_positive_and_finite(self, session):
        row = style(session, as_input(shapes_scene(4))[None])[0]
        assert np.all(np.isfinite(row))
        # Per block: means then standard deviations (block 7: 80 channels, block 10: 112).
        deviations = np.concatenate([row[80:160], row[160 + 112 :]])
        assert np.all(deviations > 0)


class TestSidecar:
    def test_describes_the_model(self, sidecar):
        assert sidecar["name"] == "efficientnet-lite0-imagenet"
        assert sidecar["dimension"] == 1280
        assert sidecar["input_size"] == 224
        assert sidecar["input"] == {"name": "pixels", "dtype": "uint8", "shape": ["batch", 224, 224, 3]}
        assert sidecar["outputs"] == [
            {"name": "features", "dtype": "float32", "shape": ["batch", 1280]},
            {"name": "style", "dtype": "float32", "shape": ["batch", STYLE_WIDTH]},
        ]
        assert sidecar["features_output"] == "features"
        assert sidecar["style_output"]["name"] == "style"
        assert sidecar["style_output"]["blocks"] == list(export_onnx.STYLE_BLOCKS) == [7, 10]
        assert sidecar["opset"] == 17
        assert "(x - 0.5) / 0.5" in sidecar["preprocessing"]
        assert sidecar["version"] == export_onnx.model_version(sidecar["weights"]["sha256"])

    def test_hashes_match_the_files(self, model_path, sidecar):
        assert sidecar["onnx_sha256"] == export_onnx.sha256_of(model_path)
        assert sidecar["weights"]["sha256"] == export_onnx.sha256_of(export_onnx.weights_path())

    def test_export_was_verified_against_torch(self, sidecar):
        assert sidecar["verification"]["max_abs_diff_vs_torch"] < export_onnx.MAX_ABS_DIFF

    def test_model_on_disk_is_up_to_date_so_a_rerun_is_a_no_op(self, model_path):
        weights_sha = export_onnx.sha256_of(export_onnx.weights_path())
        assert export_onnx.is_up_to_date(model_path, weights_sha)
        # A model tapping other blocks is not the one the service expects.
        assert not export_onnx.is_up_to_date(model_path, weights_sha, style_blocks=(4, 10))

    def test_a_model_that_does_not_match_its_sidecar_is_stale(self, model_path, tmp_path):
        copy = tmp_path / "model.onnx"
        shutil.copy(model_path, copy)
        shutil.copy(model_path.with_name("model.json"), tmp_path / "model.json")
        weights_sha = export_onnx.sha256_of(export_onnx.weights_path())
        assert export_onnx.is_up_to_date(copy, weights_sha)
        with copy.open("ab") as stream:
            stream.write(b"\0")
        assert not export_onnx.is_up_to_date(copy, weights_sha)
        assert not export_onnx.is_up_to_date(tmp_path / "missing.onnx", weights_sha)


class TestPretrainedWeights:
    def test_onnx_matches_the_pretrained_torch_model(self, session):
        """The library's own forward path (not the export wrapper) on the float-normalised images."""
        torch = pytest.importorskip("torch")
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=str(export_onnx.weights_path())
        )
        model.eval()
        pixels = np.stack([as_input(shapes_scene(7)), as_input(stripes())])
        normalised = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
        with torch.no_grad():
            expected = model._avg_pooling(model.extract_features(normalised)).flatten(1).numpy()
            random_init = EfficientNet.from_name("efficientnet-lite0").eval()
            untrained = random_init._avg_pooling(random_init.extract_features(normalised)).flatten(1).numpy()
        actual = features(session, pixels)
        assert np.abs(actual - expected).max() < 1e-3
        # And the comparison has teeth: a randomly initialised network is nowhere near.
        assert np.abs(actual - untrained).max() > 0.1

    def test_style_is_the_channel_mean_and_std_of_blocks_7_and_10(self, session):
        """Recomputed from the library's blocks, independently of the export wrapper."""
        torch = pytest.importorskip("torch")
        from efficientnet_lite_pytorch import EfficientNet

        model = EfficientNet.from_pretrained(
            "efficientnet-lite0", weights_path=str(export_onnx.weights_path())
        ).eval()
        pixels = np.stack([as_input(shapes_scene(8)), as_input(stripes())])
        x = (torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0 - 0.5) / 0.5
        expected = []
        with torch.no_grad():
            x = model._swish(model._bn0(model._conv_stem(x)))
            for index, block in enumerate(model._blocks[:11]):
                x = block(x)
                if index in (7, 10):
                    flat = x.flatten(2).numpy().astype(np.float64)
                    expected += [flat.mean(axis=2), flat.std(axis=2)]
        np.testing.assert_allclose(style(session, pixels), np.concatenate(expected, axis=1), atol=1e-3)


class TestDescriptorBehaviour:
    def test_different_images_differ_and_a_resized_copy_stays_close(self, session):
        scene = shapes_scene(1)
        smaller = scene.resize((288, 216), Image.Resampling.LANCZOS)
        pixels = np.stack(
            [as_input(scene), as_input(smaller), as_input(shapes_scene(2)), as_input(stripes())]
        )
        original, resized, other_scene, striped = features(session, pixels)
        assert cosine(original, resized) > 0.9
        assert cosine(original, striped) < 0.6
        assert cosine(original, resized) > cosine(original, other_scene) + 0.05


def test_export_command_is_deterministic_and_idempotent(model_path, tmp_path, caplog):
    output = tmp_path / "model.onnx"
    assert export_onnx.main(["--output", str(output)]) == 0
    assert export_onnx.sha256_of(output) == export_onnx.sha256_of(model_path)
    written = json.loads((tmp_path / "model.json").read_text())
    assert written["onnx_sha256"] == export_onnx.sha256_of(output)
    sidecar_before = (tmp_path / "model.json").read_text()
    caplog.clear()
    with caplog.at_level("INFO", logger=export_onnx.__name__):
        assert export_onnx.main(["--output", str(output)]) == 0
    assert "is up to date" in caplog.text
    assert "exported" not in caplog.text
    assert export_onnx.sha256_of(output) == written["onnx_sha256"]
    assert (tmp_path / "model.json").read_text() == sidecar_before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.onnx"]
