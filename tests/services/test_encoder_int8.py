"""The int8 model variant (artsearch_tools/model_export/quantize_onnx.py, built by `make model`): a model
version of its own, really quantized, served by the encoder service exactly like the fp32 file -- on the
embedded backend and on a real Triton server -- and finding the demo paintings from altered copies as well
as fp32 does."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from PIL import Image, ImageEnhance
from triton_fixture import TritonServerError, start_triton_server
from tritonclient.grpc import model_config_pb2

from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from artsearch_tools.model_export.quantize_onnx import QUANTIZATION_REVISION, calibration_files, is_up_to_date
from artsearch_tools.model_export.quantize_onnx import main as quantize_main
from artsearch_tools.model_export.triton_repository import DEFAULT_MODEL_NAME, write_production_repository
from services.encoder.backends import EmbeddingBackend, EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.images import decode_image
from services.encoder.server import EncoderService, encoder_registration
from services.encoder.triton_backend import TritonBackend, TritonSettings


def sidecar(model: Path) -> dict:
    return json.loads(model.with_name("model.json").read_text())


def test_the_int8_model_is_a_version_of_its_own_that_names_its_source_and_calibration(
    model_path: Path, int8_model_path: Path, gcompris_catalogue: Path
):
    fp32, int8 = sidecar(model_path), sidecar(int8_model_path)
    assert int8["version"] == f"{fp32['version']}-int8q{QUANTIZATION_REVISION}"
    assert int8["quantization"]["from"] == {"version": fp32["version"], "onnx_sha256": fp32["onnx_sha256"]}
    # Same tensors: every caller (the backends, Triton's configuration) treats both files alike.
    for key in ("input", "outputs", "features_output", "dimension", "input_size", "preprocessing"):
        assert int8[key] == fp32[key], key
    calibration = int8["quantization"]["calibration"]
    assert calibration["images"] == [path.name for path in calibration_files(gcompris_catalogue)]
    assert calibration["count"] == 5 * len(calibration["images"])
    assert int8["quantization"]["cosine_to_fp32"]["mean"]["features"] >= 0.9
    assert is_up_to_date(int8_model_path, fp32, calibration_files(gcompris_catalogue))
    assert not is_up_to_date(
        int8_model_path, {**fp32, "onnx_sha256": "0" * 64}, calibration_files(gcompris_catalogue)
    )


def test_the_int8_graph_really_holds_int8_weights_and_a_float_stem(int8_model_path: Path, model_path: Path):
    graph = onnx.load(str(int8_model_path)).graph
    int8_weights = [t for t in graph.initializer if t.data_type == onnx.TensorProto.INT8]
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    assert len(int8_weights) >= len(convolutions) - 1  # every convolution but the stem
    stem = convolutions[0]
    # The stem's weight is float (no DequantizeLinear feeds it); the next convolution's is quantized.
    producers = {output: node.op_type for node in graph.node for output in node.output}
    assert producers.get(stem.input[1]) != "DequantizeLinear"
    assert producers.get(convolutions[1].input[1]) == "DequantizeLinear"
    assert int8_model_path.stat().st_size < 0.5 * model_path.stat().st_size


# --------------------------------------------------------------------------------- through the service


def altered(path: Path) -> bytes:
    """A visitor's copy: 85 % crop off centre, darker, re-encoded as a JPEG of quality 70."""
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    picture = picture.crop((int(width * 0.1), int(height * 0.05), int(width * 0.95), int(height * 0.9)))
    picture = ImageEnhance.Brightness(picture).enhance(0.8)
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=70)
    return out.getvalue()


async def descriptors_from(backend: EmbeddingBackend, images: list[bytes]) -> tuple[np.ndarray, str]:
    """Every image through the encoder service (one in-process gRPC server) on `backend`."""
    service = EncoderService(backend, max_batch_images=64, max_image_pixels=50_000_000)
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            answers = [
                await stub.Encode(encoder_pb2.EncodeRequest(images=images[i : i + 32]), timeout=60)
                for i in range(0, len(images), 32)
            ]
    finally:
        await server.stop(0)
        await service.close()
    embeddings = [embedding for answer in answers for embedding in answer.embeddings]
    vectors = np.array([list(embedding.values) for embedding in embeddings], dtype=np.float32)
    return vectors, answers[0].model.version


@pytest.fixture(scope="module")
def paintings(gcompris_catalogue: Path) -> list[Path]:
    return calibration_files(gcompris_catalogue)


def top1_hits(index: np.ndarray, queries: np.ndarray) -> int:
    return int(np.sum(np.argmax(queries @ index.T, axis=1) == np.arange(len(queries))))


@pytest.mark.asyncio(loop_scope="session")
async def test_the_service_serves_int8_and_finds_altered_copies_as_well_as_fp32(
    model_path: Path, int8_model_path: Path, paintings: list[Path]
):
    originals = [path.read_bytes() for path in paintings]
    copies = [altered(path) for path in paintings]
    results = {}
    for name, model in (("fp32", model_path), ("int8", int8_model_path)):
        vectors, version = await descriptors_from(OnnxRuntimeBackend(model), originals + copies)
        results[name] = (vectors[: len(originals)], vectors[len(originals) :], version)
    # The service's version is the model's and its descriptor revision's: fp32 vectors never mix with these.
    assert results["int8"][2].startswith(sidecar(int8_model_path)["version"] + "-")
    assert not results["fp32"][2].startswith(sidecar(int8_model_path)["version"])
    # Each index searched by its own model's queries: what a re-index under the int8 version gives.
    hits = {name: top1_hits(index, queries) for name, (index, queries, _) in results.items()}
    assert hits["fp32"] == len(paintings), hits
    assert hits["int8"] >= hits["fp32"] - 1, hits
    # The descriptors themselves stay close to fp32's (unit vectors: the dot product is the cosine).
    cosine = np.sum(results["fp32"][0] * results["int8"][0], axis=1)
    assert cosine.mean() >= 0.95, cosine


@pytest.mark.slow
@pytest.mark.asyncio(loop_scope="session")
async def test_triton_serves_the_int8_model_with_the_embedded_backends_vectors(
    int8_model_path: Path, paintings: list[Path], tmp_path: Path
):
    pixels = np.stack(
        [decode_image(path.read_bytes(), size=224, max_pixels=50_000_000) for path in paintings[:8]]
    )
    try:
        server = await asyncio.to_thread(start_triton_server, int8_model_path, tmp_path)
    except TritonServerError as error:
        pytest.fail(str(error))
    try:
        info = EmbeddingModelInfo.from_sidecar(int8_model_path, backend="triton")
        settings = TritonSettings(url=server.grpc_url, model_name=DEFAULT_MODEL_NAME, timeout_s=30.0)
        triton = await asyncio.to_thread(TritonBackend.open, info, settings)
        embedded = OnnxRuntimeBackend(int8_model_path)
        try:
            served, local = await triton.embed(pixels), await embedded.embed(pixels)
        finally:
            await triton.close()
            await embedded.close()
    finally:
        server.stop()
    for name, values in local.items():
        np.testing.assert_allclose(served[name], values, rtol=1e-4, atol=1e-4)


def test_the_triton_tensorrt_configuration_of_the_int8_model_asks_for_int8(
    int8_model_path: Path, tmp_path: Path
):
    model_dir = write_production_repository(int8_model_path, tmp_path, tensorrt=True)
    config = text_format.Parse((model_dir / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    (accelerator,) = config.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt" and accelerator.parameters["precision_mode"] == "INT8"
    assert (model_dir / "configs" / "tensorrt-int8.pbtxt").is_file()
    assert (model_dir / "1" / "model.onnx").read_bytes() == int8_model_path.read_bytes()


@pytest.mark.slow
def test_quantizing_again_gives_the_same_bytes(
    model_path: Path, gcompris_catalogue: Path, int8_model_path: Path, tmp_path: Path
):
    """The calibration set and the recipe are fixed: anyone running `make model` gets this very file."""
    output = tmp_path / "int8" / "model.onnx"
    argv = ["--fp32", str(model_path), "--calibration", str(gcompris_catalogue), "--output", str(output)]
    assert quantize_main(argv) == 0
    assert output.read_bytes() == int8_model_path.read_bytes()
    assert sidecar(output) == sidecar(int8_model_path)


def test_quantizing_without_a_model_or_calibration_images_fails_with_a_message(
    model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    output = ["--output", str(tmp_path / "int8" / "model.onnx")]
    assert quantize_main(["--fp32", str(model_path), "--calibration", str(tmp_path / "none"), *output]) == 2
    assert "is not a folder of calibration images" in caplog.text
    assert quantize_main(["--fp32", str(tmp_path / "no.onnx"), "--calibration", str(tmp_path), *output]) == 2
    assert "model.json is missing" in caplog.text
    assert not (tmp_path / "int8").exists()
