"""EncoderService in-process over a real gRPC channel, with the real exported model: the descriptor it
returns (content, style, colour) and the layout it publishes, run once per backend -- embedded onnxruntime,
and a real Triton server (tests/triton_fixture.py) serving the same ONNX file -- so both give the same
answers to the same tests; and its start-up: configuration and backend choice."""

from __future__ import annotations

import asyncio
import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image, ImageDraw
from triton_fixture import TritonServer, TritonServerError, start_triton_server

from artsearch.config import ConfigError, Env
from artsearch.descriptor_layout import DescriptorLayout, aspect_similarities, reweight_query
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from artsearch_tools.model_export.triton_repository import DEFAULT_MODEL_NAME
from services.encoder.aspect_builder import DEFAULT_WEIGHTS, DESCRIPTOR_REVISION, DescriptorAssembler
from services.encoder.backend_factory import open_embedding_backend
from services.encoder.backends import EmbeddingBackend, EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.config import EncoderConfig
from services.encoder.images import decode_image
from services.encoder.ort_providers import check_session_providers
from services.encoder.server import SERVICE_NAME, EncoderService, encoder_registration
from services.encoder.triton_backend import TritonBackend, TritonSettings

MAX_BATCH = 8
# content (head features) + style (mean and std of blocks 7 and 10: 80 and 112 channels) + colour (10^3 bins)
CONTENT_WIDTH, STYLE_WIDTH, COLOUR_WIDTH = 1280, 2 * (80 + 112), 10**3
DIMENSION = CONTENT_WIDTH + STYLE_WIDTH + COLOUR_WIDTH


def painting(seed: int, size: tuple[int, int] = (96, 72), mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y, r = int(rng.integers(0, size[0])), int(rng.integers(0, size[1])), int(rng.integers(5, 30))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    if mode == "RGBA":
        image.putalpha(Image.linear_gradient("L").resize(size))
    return image


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 16)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


JPEG = encode(painting(1), "JPEG")
PNG_RGBA = encode(painting(2, mode="RGBA"), "PNG")
WEBP = encode(painting(3), "WEBP")


BACKENDS = ["onnxruntime", pytest.param("triton", marks=pytest.mark.slow)]


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def triton_server(
    backend_name: str, model_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer | None]:
    if backend_name != "triton":
        yield None
        return
    try:
        server = start_triton_server(model_path, tmp_path_factory.mktemp("triton"))
    except TritonServerError as error:
        pytest.fail(str(error))
    yield server
    server.stop()


async def open_backend(backend_name: str, model_path: Path, triton: TritonServer | None) -> EmbeddingBackend:
    if triton is None:
        return OnnxRuntimeBackend(model_path)
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    settings = TritonSettings(url=triton.grpc_url, model_name=DEFAULT_MODEL_NAME, timeout_s=10.0)
    return await asyncio.to_thread(TritonBackend.open, info, settings)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def address(
    backend_name: str, model_path: Path, triton_server: TritonServer | None
) -> AsyncIterator[str]:
    backend = await open_backend(backend_name, model_path, triton_server)
    service = EncoderService(backend, max_batch_images=MAX_BATCH, max_image_pixels=50_000_000)
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(0)
    await service.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(address: str) -> AsyncIterator[encoder_pb2_grpc.EncoderServiceStub]:
    async with open_channel(address) as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel)


async def encode_images(stub: encoder_pb2_grpc.EncoderServiceStub, images: list[bytes]) -> np.ndarray:
    response = await stub.Encode(encoder_pb2.EncodeRequest(images=images), timeout=30)
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


async def test_batch_of_three_formats_gives_unit_vectors_in_input_order(stub):
    response = await stub.Encode(encoder_pb2.EncodeRequest(images=[JPEG, PNG_RGBA, WEBP]), timeout=30)
    vectors = np.array([list(e.values) for e in response.embeddings], dtype=np.float32)
    assert vectors.shape == (3, DIMENSION)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert response.model.name == "efficientnet-lite0-imagenet"
    assert response.model.dimension == DIMENSION
    assert len(response.model.aspects) == 3
    # Order: each row is the vector of the image at that index, encoded on its own.
    for index, image in enumerate([JPEG, PNG_RGBA, WEBP]):
        (alone,) = await encode_images(stub, [image])
        np.testing.assert_allclose(vectors[index], alone, atol=1e-5)
    assert np.abs(vectors[0] - vectors[1]).max() > 0.01


async def test_the_same_image_twice_gives_identical_vectors(stub):
    first, second = await encode_images(stub, [JPEG, JPEG])
    np.testing.assert_array_equal(first, second)


async def test_concurrent_requests_each_get_their_own_vectors(stub):
    singles = await asyncio.gather(*(encode_images(stub, [image]) for image in (JPEG, PNG_RGBA, WEBP) * 2))
    batch = await encode_images(stub, [JPEG, PNG_RGBA, WEBP])
    for index, single in enumerate(singles):
        np.testing.assert_allclose(single[0], batch[index % 3], atol=1e-5)


async def test_model_info(stub, backend_name):
    info = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=5)
    assert info.name == "efficientnet-lite0-imagenet"
    assert info.version.endswith(f"-g2-d{DESCRIPTOR_REVISION}")  # graph revision, descriptor revision
    assert info.dimension == DIMENSION
    assert info.input_size == 224
    assert info.max_batch_images == MAX_BATCH
    assert info.backend == backend_name


async def test_model_info_publishes_the_aspect_layout_with_default_weights(stub):
    info = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=5)
    assert [(a.name, a.offset, a.length) for a in info.aspects] == [
        ("content", 0, CONTENT_WIDTH),
        ("style", CONTENT_WIDTH, STYLE_WIDTH),
        ("colour", CONTENT_WIDTH + STYLE_WIDTH, COLOUR_WIDTH),
    ]
    weights = {a.name: a.default_weight for a in info.aspects}
    assert weights == pytest.approx(dict(DEFAULT_WEIGHTS))
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-6)
    assert DescriptorLayout.from_model_info(info).dimension == info.dimension


async def test_every_aspect_of_a_descriptor_is_unit_length_times_the_root_of_its_weight(stub):
    info = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=5)
    vectors = await encode_images(stub, [JPEG, PNG_RGBA])
    for aspect in info.aspects:
        part = vectors[:, aspect.offset : aspect.offset + aspect.length]
        np.testing.assert_allclose(np.linalg.norm(part, axis=1), np.sqrt(aspect.default_weight), atol=1e-5)


async def test_descriptor_is_the_in_process_assembly_of_the_model_outputs(stub, model_path):
    """Over gRPC comes exactly the model's outputs plus the colour histogram of the decoded pixels."""
    backend = OnnxRuntimeBackend(model_path)
    try:
        pixels = np.stack([decode_image(data, size=224, max_pixels=50_000_000) for data in (JPEG, WEBP)])
        expected = DescriptorAssembler(backend.info)(await backend.embed(pixels), pixels)
    finally:
        await backend.close()
    np.testing.assert_allclose(await encode_images(stub, [JPEG, WEBP]), expected, atol=1e-5)


async def test_aspects_tell_a_grey_copy_apart_by_colour(stub):
    """A greyscale copy keeps the shapes and loses the colours: the colour aspect sees it, the network's
    aspects much less; and a re-weighted query scores exactly the chosen aspects' cosines."""
    info = await stub.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=5)
    layout = DescriptorLayout.from_model_info(info)
    scene = painting(11, (160, 120))
    original, grey = await encode_images(
        stub, [encode(scene, "PNG"), encode(scene.convert("L").convert("RGB"), "PNG")]
    )
    similarities = aspect_similarities(original, grey, layout)
    assert similarities["colour"] < 0.1
    assert min(similarities["content"], similarities["style"]) > similarities["colour"] + 0.5
    assert aspect_similarities(original, original, layout) == pytest.approx(
        {"content": 1.0, "style": 1.0, "colour": 1.0}, abs=1e-5
    )
    for weights in ({"content": 1.0}, {"colour": 1.0}, {"style": 0.5, "colour": 0.5}):
        expected = sum(weight * similarities[name] for name, weight in weights.items())
        assert reweight_query(original, layout, weights) @ grey == pytest.approx(expected, abs=1e-4)


async def test_health_reports_serving(address):
    async with open_channel(address) as channel:
        assert await is_serving(channel)
        assert await is_serving(channel, SERVICE_NAME)


BAD_IMAGES = {
    "empty bytes": (b"", "image 2: empty image data"),
    "not an image": (b"hello", "image 2: not an image"),
    "truncated JPEG": (encode(painting(4, (200, 150)), "JPEG")[:600], "image 2: truncated JPEG"),
    "1x1 image": (encode(Image.new("RGB", (1, 1)), "PNG"), "image 2: image is 1x1 pixels"),
    "20000x20000 PNG header": (png_header_only(20000, 20000), "image 2: image has 400,000,000 pixels"),
}


@pytest.mark.parametrize("case", list(BAD_IMAGES))
async def test_a_bad_image_fails_the_call_naming_its_index_and_the_service_keeps_serving(stub, case):
    data, expected = BAD_IMAGES[case]
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[JPEG, WEBP, data]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(expected)
    assert (await encode_images(stub, [PNG_RGBA])).shape == (1, DIMENSION)


async def test_every_bad_image_is_named(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[b"", JPEG, b"hello"]), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith("image 0: empty image data; image 2: not an image")


async def test_empty_request_is_invalid(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Encode(encoder_pb2.EncodeRequest(), timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no images" in error.value.details()
    assert (await encode_images(stub, [JPEG])).shape == (1, DIMENSION)


async def test_too_many_images_is_invalid(stub):
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[JPEG] * (MAX_BATCH + 1)), timeout=5)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details() == f"request has {MAX_BATCH + 1} images; at most {MAX_BATCH} per call"
    assert (await encode_images(stub, [JPEG] * MAX_BATCH)).shape == (MAX_BATCH, DIMENSION)


class TestStartUp:
    """Configuration and backend choice: everything that must fail fast, before serving."""

    def test_config_reads_the_environment(self, model_path):
        config = EncoderConfig.from_env(
            Env(
                {
                    "MODEL_PATH": str(model_path),
                    "MAX_REQUEST_IMAGES": "16",
                    "ORT_THREADS": "2",
                    "ARTSEARCH_PORT": "0",
                }
            )
        )
        assert config.model_path == model_path
        assert (config.max_batch_images, config.ort_threads, config.max_image_pixels) == (16, 2, 50_000_000)
        assert config.triton_url is None
        assert config.listen.address == "127.0.0.1:0"
        assert config.ort_providers == ("cpu",)
        gpu = EncoderConfig.from_env(
            Env({"MODEL_PATH": str(model_path), "ORT_PROVIDERS": " TensorRT, cuda,cpu"})
        )
        assert gpu.ort_providers == ("tensorrt", "cuda", "cpu")
        assert config.triton_channel_max_age_s == 300.0
        aged = EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path), "TRITON_CHANNEL_MAX_AGE_S": "0"}))
        assert aged.triton_channel_max_age_s == 0.0

    @pytest.mark.parametrize(
        ("environ", "message"),
        [
            ({}, "MODEL_PATH is required"),
            ({"MODEL_PATH": "/no/such/model.onnx"}, "is not a file"),
            ({"MAX_REQUEST_IMAGES": "0"}, "MAX_REQUEST_IMAGES=0 must be >= 1"),
            ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
            ({"ORT_PROVIDERS": "gpu"}, "ORT_PROVIDERS='gpu': give distinct names among tensorrt, cuda, cpu"),
            ({"ORT_PROVIDERS": "cuda,cuda"}, "ORT_PROVIDERS"),
            ({"ORT_PROVIDERS": " , "}, "ORT_PROVIDERS"),
        ],
    )
    def test_bad_configuration_is_refused(self, model_path, environ, message):
        with pytest.raises(ConfigError, match=message):
            EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path), **environ} if environ else {}))

    def test_default_backend_is_embedded_onnxruntime(self, model_path):
        backend = open_embedding_backend(EncoderConfig(model_path=model_path))
        assert isinstance(backend, OnnxRuntimeBackend)
        assert backend.info.backend == "onnxruntime"

    @pytest.mark.skipif(
        "CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
        reason="this onnxruntime has the GPU providers",
    )
    def test_gpu_providers_missing_from_this_onnxruntime_are_refused_at_start_up(self, model_path):
        config = EncoderConfig(model_path=model_path, ort_providers=("cuda", "cpu"))
        with pytest.raises(ConfigError, match=r"asks for \['CUDAExecutionProvider'\].*onnxruntime-gpu"):
            open_embedding_backend(config)

    def test_a_session_that_fell_back_to_another_provider_is_refused(self, model_path):
        import onnxruntime as ort

        session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
        check_session_providers(session, ("cpu",))
        with pytest.raises(ConfigError, match="could not start CUDAExecutionProvider"):
            check_session_providers(session, ("cuda", "cpu"))

    def test_an_unreachable_triton_is_refused_at_start_up(self, model_path):
        config = EncoderConfig(model_path=model_path, triton_url="127.0.0.1:1", triton_startup_timeout_s=0.3)
        with pytest.raises(ConfigError, match="not ready after"):
            open_embedding_backend(config)

    def test_a_model_without_the_style_output_is_refused(self, model_path, tmp_path):
        """A model exported before the descriptor had a style aspect: the service must not start."""
        meta = json.loads(model_path.with_name("model.json").read_text())
        meta["outputs"] = [o for o in meta["outputs"] if o["name"] != "style"]
        (tmp_path / "model.json").write_text(json.dumps(meta))
        shutil.copy(model_path, tmp_path / "model.onnx")
        backend = OnnxRuntimeBackend(tmp_path / "model.onnx")
        with pytest.raises(ConfigError, match=r"no output \['style'\].*re-export"):
            EncoderService(backend, max_batch_images=MAX_BATCH, max_image_pixels=50_000_000)

    def test_a_model_that_does_not_match_its_sidecar_is_refused(self, model_path, tmp_path):
        shutil.copy(model_path.with_name("model.json"), tmp_path / "model.json")
        (tmp_path / "model.onnx").write_bytes(model_path.read_bytes()[:-1])
        with pytest.raises(ConfigError, match=r"does not match its model\.json"):
            OnnxRuntimeBackend(tmp_path / "model.onnx")

    def test_a_model_without_sidecar_is_refused(self, model_path, tmp_path):
        shutil.copy(model_path, tmp_path / "model.onnx")
        with pytest.raises(ConfigError, match=r"model\.json is missing"):
            OnnxRuntimeBackend(tmp_path / "model.onnx")

    async def test_backend_refuses_pixels_of_the_wrong_shape(self, model_path):
        backend = OnnxRuntimeBackend(model_path)
        with pytest.raises(ValueError, match=r"expected uint8 \[N, 224, 224, 3\]"):
            await backend.embed(np.zeros((1, 100, 100, 3), dtype=np.uint8))
        with pytest.raises(ValueError, match="expected uint8"):
            await backend.embed(np.zeros((1, 224, 224, 3), dtype=np.float32))
        await backend.close()

    def test_service_exits_with_a_message_when_model_path_is_missing(self, repo_root):
        environ = {k: v for k, v in os.environ.items() if k != "MODEL_PATH"}
        result = subprocess.run(
            [sys.executable, "-m", "services.encoder"],
            cwd=repo_root,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2
        assert "MODEL_PATH is required" in result.stderr
