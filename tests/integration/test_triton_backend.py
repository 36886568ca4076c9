"""The encoder's Triton backend against a real Triton Inference Server (nvidia-pytriton's binary, CPU,
python backend serving the same ONNX file), and the production model repository's generated config.

The encoder's own gRPC health stays SERVING while Triton is down: it reports the encoder process, which
still answers (Encode with UNAVAILABLE, GetModelInfo normally); taking every encoder replica out of
rotation because of its dependency would only turn a retryable error into a connection failure.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import re
import signal
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from google.protobuf import text_format
from triton_fixture import TritonServer, TritonServerError, start_triton_server
from tritonclient.grpc import model_config_pb2

from artsearch.config import ConfigError, Env
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from artsearch_tools.launcher import free_ports
from artsearch_tools.model_export.triton_repository import (
    DEFAULT_MODEL_NAME,
    TENSORRT_CONFIG_NAME,
    production_config,
    write_production_repository,
)
from services.encoder.backend_factory import open_embedding_backend
from services.encoder.backends import EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.config import EncoderConfig
from services.encoder.server import SERVICE_NAME, EncoderService, encoder_registration
from services.encoder.triton_backend import TritonBackend, TritonSettings

MODEL_NAME = DEFAULT_MODEL_NAME
# Short, so that a hung server costs the tests little; a CPU batch of 6 takes ~0.1 s here.
TIMEOUT_S = 2.0
MAX_BATCH = 16
# content 1280 + style 384 + colour 1000 (services/encoder/aspect_builder.py)
DESCRIPTOR_DIMENSION = 2664


def settings_for(server: TritonServer, **overrides: object) -> TritonSettings:
    values: dict[str, object] = {"url": server.grpc_url, "model_name": MODEL_NAME, "timeout_s": TIMEOUT_S}
    return TritonSettings(**{**values, **overrides})  # type: ignore[arg-type]


# --- the committed production repository ---------------------------------------------------------------


def test_committed_production_configs_are_what_the_generator_writes(repo_root: Path, model_path: Path):
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    model_dir = repo_root / "deploy/triton/model_repository" / MODEL_NAME
    stale = "stale: regenerate with `make triton-repo` and commit the config"
    assert (model_dir / "config.pbtxt").read_text() == production_config(info, MODEL_NAME), stale
    tensorrt = (model_dir / "configs" / f"{TENSORRT_CONFIG_NAME}.pbtxt").read_text()
    assert tensorrt == production_config(info, MODEL_NAME, tensorrt=True), stale


def test_production_config_declares_gpu_batching_versions_and_every_output(model_path: Path):
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    config = text_format.Parse(production_config(info, MODEL_NAME), model_config_pb2.ModelConfig())
    assert (config.name, config.platform, config.backend) == (MODEL_NAME, "onnxruntime_onnx", "onnxruntime")
    assert config.max_batch_size == 64
    assert list(config.dynamic_batching.preferred_batch_size) == [16, 32]
    assert config.dynamic_batching.max_queue_delay_microseconds == 2000
    assert config.version_policy.latest.num_versions == 2
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)
    ]
    (model_input,) = config.input
    assert (model_input.name, model_input.data_type, list(model_input.dims)) == (
        "pixels", model_config_pb2.TYPE_UINT8, [224, 224, 3]
    )  # fmt: skip
    outputs = [(o.name, o.data_type, list(o.dims)) for o in config.output]
    assert outputs == [(name, model_config_pb2.TYPE_FP32, [width]) for name, width in info.outputs]
    assert not config.optimization.execution_accelerators.gpu_execution_accelerator

    tensorrt = text_format.Parse(
        production_config(info, MODEL_NAME, tensorrt=True), model_config_pb2.ModelConfig()
    )
    (accelerator,) = tensorrt.optimization.execution_accelerators.gpu_execution_accelerator
    assert accelerator.name == "tensorrt"
    assert accelerator.parameters["precision_mode"] == "FP16"
    assert accelerator.parameters["trt_profile_max_shapes"] == "pixels:64x224x224x3"


def test_production_repository_adds_a_version_beside_the_others(model_path: Path, tmp_path: Path):
    write_production_repository(model_path, tmp_path, version=1)
    model_dir = write_production_repository(model_path, tmp_path, version=2, tensorrt=True)
    assert (model_dir / "1" / "model.onnx").read_bytes() == model_path.read_bytes()
    assert (model_dir / "2" / "model.onnx").read_bytes() == model_path.read_bytes()
    assert 'name: "tensorrt"' in (model_dir / "config.pbtxt").read_text()


def test_the_model_file_in_the_production_repository_is_git_ignored(repo_root: Path):
    path = f"deploy/triton/model_repository/{MODEL_NAME}/1/model.onnx"
    ignored = subprocess.run(["git", "check-ignore", "-q", path], cwd=repo_root, check=False)
    assert ignored.returncode == 0
    kept = subprocess.run(
        ["git", "check-ignore", "-q", f"deploy/triton/model_repository/{MODEL_NAME}/config.pbtxt"],
        cwd=repo_root,
        check=False,
    )
    assert kept.returncode == 1


# --- a real Triton server -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def triton(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    try:
        server = start_triton_server(model_path, tmp_path_factory.mktemp("triton"))
    except TritonServerError as error:
        pytest.fail(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def triton_backend(model_path: Path, triton: TritonServer) -> AsyncIterator[TritonBackend]:
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    backend = await asyncio.to_thread(TritonBackend.open, info, settings_for(triton))
    yield backend
    await backend.close()


async def serve(service: EncoderService) -> tuple[GrpcServiceServer, str]:
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    return server, f"127.0.0.1:{port}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def triton_address(triton_backend: TritonBackend) -> AsyncIterator[str]:
    service = EncoderService(triton_backend, max_batch_images=MAX_BATCH, max_image_pixels=50_000_000)
    server, address = await serve(service)
    yield address
    await server.stop(0)
    await service.close()  # closes the backend too; the backend fixture's close is then a no-op


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def onnxruntime_address(model_path: Path) -> AsyncIterator[str]:
    service = EncoderService(
        OnnxRuntimeBackend(model_path), max_batch_images=MAX_BATCH, max_image_pixels=50_000_000
    )
    server, address = await serve(service)
    yield address
    await server.stop(0)
    await service.close()


@pytest.fixture(scope="module")
def paintings(gcompris_catalogue: Path) -> list[bytes]:
    """Six real paintings (JPEG) from the demo catalogue."""
    return [path.read_bytes() for path in sorted(gcompris_catalogue.glob("*.jpg"))[:6]]


async def encode(address: str, images: list[bytes], timeout: float = 30) -> np.ndarray:
    async with open_channel(address) as channel:
        response = await encoder_pb2_grpc.EncoderServiceStub(channel).Encode(
            encoder_pb2.EncodeRequest(images=images), timeout=timeout
        )
    return np.array([list(e.values) for e in response.embeddings], dtype=np.float32)


async def encode_error(address: str, images: list[bytes]) -> tuple[grpc.aio.AioRpcError, float]:
    """The error of one Encode call and how long it took. A plain channel: `open_channel` retries
    UNAVAILABLE (up to 3 attempts), which would multiply the time measured here."""
    started = time.monotonic()
    async with grpc.aio.insecure_channel(address) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await encoder_pb2_grpc.EncoderServiceStub(channel).Encode(
                encoder_pb2.EncodeRequest(images=images), timeout=30
            )
    return error.value, time.monotonic() - started


@pytest.mark.slow
async def test_server_health_and_model_metadata_through_the_backend(triton_backend: TritonBackend):
    status = await triton_backend.status()
    assert (status.live, status.ready, status.model_ready) == (True, True, True)
    metadata = await triton_backend.model_metadata()
    assert metadata.name == MODEL_NAME
    assert [(i.name, i.datatype, list(i.shape)) for i in metadata.inputs] == [
        ("pixels", "UINT8", [-1, 224, 224, 3])
    ]
    outputs = [(o.name, o.datatype, list(o.shape)) for o in metadata.outputs]
    assert outputs == [(name, "FP32", [-1, width]) for name, width in triton_backend.info.outputs]


@pytest.mark.slow
async def test_a_batch_of_paintings_gives_the_same_vectors_as_onnxruntime(
    triton_address: str, onnxruntime_address: str, paintings: list[bytes]
):
    through_triton = await encode(triton_address, paintings)
    through_onnxruntime = await encode(onnxruntime_address, paintings)
    assert through_triton.shape == (len(paintings), DESCRIPTOR_DIMENSION)
    np.testing.assert_allclose(through_triton, through_onnxruntime, atol=1e-5)
    # Different paintings, different vectors: the comparison above is not between constant outputs.
    assert np.abs(through_triton[0] - through_triton[1]).max() > 0.01


@pytest.mark.slow
async def test_model_info_names_the_triton_backend(triton_address: str):
    async with open_channel(triton_address) as channel:
        info = await encoder_pb2_grpc.EncoderServiceStub(channel).GetModelInfo(
            encoder_pb2.GetModelInfoRequest(), timeout=5
        )
    assert (info.backend, info.dimension, info.input_size) == ("triton", DESCRIPTOR_DIMENSION, 224)


@pytest.mark.slow
async def test_batches_beyond_the_models_max_batch_size_are_split(
    model_path: Path, triton: TritonServer, triton_backend: TritonBackend
):
    pixels = np.random.default_rng(7).integers(0, 256, (7, 224, 224, 3), dtype=np.uint8)
    small_batches = TritonBackend(triton_backend.info, settings_for(triton), max_batch_size=3)
    try:
        split = await small_batches.embed(pixels)
    finally:
        await small_batches.close()
    whole = await triton_backend.embed(pixels)
    reference = OnnxRuntimeBackend(model_path)
    try:
        local = await reference.embed(pixels)
    finally:
        await reference.close()
    for name, width in triton_backend.info.outputs:
        assert split[name].shape == (7, width)
        np.testing.assert_allclose(split[name], whole[name], atol=1e-5)
        np.testing.assert_allclose(split[name], local[name], atol=1e-5)


@pytest.mark.slow
async def test_a_bad_image_is_still_invalid_argument(triton_address: str, paintings: list[bytes]):
    error, _ = await encode_error(triton_address, [paintings[0], b"hello"])
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details().startswith("image 1: not an image")


@pytest.mark.slow
async def test_a_malformed_batch_never_reaches_the_server(triton_backend: TritonBackend):
    with pytest.raises(ValueError, match="expected uint8"):
        await triton_backend.embed(np.zeros((1, 224, 224, 3), dtype=np.float32))


@pytest.mark.slow
async def test_start_up_rejects_a_model_that_does_not_match_model_json(
    triton: TritonServer, model_path: Path
):
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    wider = dataclasses.replace(info, outputs=((info.features_output, 2048),))
    with pytest.raises(ConfigError, match=r"does not match model\.json: output 'features'"):
        await asyncio.to_thread(TritonBackend.open, wider, settings_for(triton))


@pytest.mark.slow
async def test_start_up_gives_up_after_the_startup_timeout(model_path: Path):
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    (nobody,) = free_ports(1)
    settings = TritonSettings(
        url=f"127.0.0.1:{nobody}", model_name=MODEL_NAME, timeout_s=0.5, startup_timeout_s=1.0
    )
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"not ready after 1 s .*UNAVAILABLE"):
        await asyncio.to_thread(TritonBackend.open, info, settings)
    assert 1.0 <= time.monotonic() - started < 4.0


@pytest.mark.slow
async def test_the_factory_opens_triton_from_the_environment(triton: TritonServer, model_path: Path):
    env = Env(
        {
            "MODEL_PATH": str(model_path),
            "TRITON_URL": f"grpc://{triton.grpc_url}",
            "TRITON_MODEL_NAME": MODEL_NAME,
            "TRITON_TIMEOUT_S": "3",
            "TRITON_STARTUP_TIMEOUT_S": "5",
        }
    )
    config = EncoderConfig.from_env(env)
    assert (config.triton_timeout_s, config.triton_startup_timeout_s) == (3.0, 5.0)
    backend = await asyncio.to_thread(open_embedding_backend, config)
    try:
        assert isinstance(backend, TritonBackend)
        assert backend.info.backend == "triton"
        pixels = np.zeros((2, 224, 224, 3), dtype=np.uint8)
        assert (await backend.embed(pixels))[backend.info.features_output].shape == (2, 1280)
    finally:
        await backend.close()
    with pytest.raises(ConfigError, match="talks gRPC"):
        await asyncio.to_thread(
            open_embedding_backend,
            EncoderConfig(model_path=model_path, triton_url=f"http://{triton.grpc_url}"),
        )


def successful_inferences(server: TritonServer) -> int:
    metrics = urllib.request.urlopen(server.metrics_url, timeout=5).read().decode()
    found = re.search(
        rf'^nv_inference_request_success{{model="{MODEL_NAME}",version="1"}} (\d+)', metrics, re.M
    )
    return int(found.group(1)) if found else 0


# Triton counts an inference once the backend reports its statistics, which the python backend does after
# the answer went out: read at once, the counter lagged behind answers already received (about one read in
# ten here, more under load; the spread test below failed so once in a while).
METRICS_BOUND_S = 10.0


def settled_successes(servers: list[TritonServer], expected_total: int) -> list[int]:
    """Each server's success count, read until they add up to `expected_total` (or METRICS_BOUND_S passed:
    then the last reading, which the caller's assertion reports)."""
    deadline = time.monotonic() + METRICS_BOUND_S
    while True:
        counts = [successful_inferences(server) for server in servers]
        if sum(counts) >= expected_total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


@pytest.mark.slow
async def test_triton_metrics_count_successful_inferences(
    triton: TritonServer, triton_backend: TritonBackend
):
    before = await asyncio.to_thread(successful_inferences, triton)
    await triton_backend.embed(np.zeros((1, 224, 224, 3), dtype=np.uint8))
    [after] = await asyncio.to_thread(settled_successes, [triton], before + 1)
    assert after >= before + 1  # (an earlier test's call may land late too: at least this one counted)


@pytest.mark.slow
async def test_calls_are_spread_over_every_triton_the_address_resolves_to(
    model_path: Path, triton: TritonServer, tmp_path: Path
):
    """Round robin over the resolved addresses (a headless Service's pods in Kubernetes; here gRPC's
    `ipv4:` target naming two servers): every server gets calls, not only the first one."""
    second = await asyncio.to_thread(start_triton_server, model_path, tmp_path)
    try:
        both = f"ipv4:127.0.0.1:{triton.grpc_port},127.0.0.1:{second.grpc_port}"
        info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
        backend = await asyncio.to_thread(TritonBackend.open, info, settings_for(triton, url=both))
        before = [await asyncio.to_thread(successful_inferences, s) for s in (triton, second)]
        try:
            for _ in range(8):
                await backend.embed(np.zeros((1, 224, 224, 3), dtype=np.uint8))
        finally:
            await backend.close()
        after = await asyncio.to_thread(settled_successes, [triton, second], sum(before) + 8)
    finally:
        await asyncio.to_thread(second.stop)
    served = [a - b for a, b in zip(after, before, strict=True)]
    assert sum(served) == 8 and min(served) >= 2, served


@pytest.mark.slow
async def test_an_old_channel_is_replaced_and_closed_after_the_calls_still_on_it(
    model_path: Path, triton: TritonServer
):
    """Triton does not age its connections: the backend makes its channel anew after
    `channel_max_age_s` (so the name is resolved again), and a call still running on the old channel
    finishes before that channel is closed (at the calls' deadline)."""
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    settings = settings_for(triton, channel_max_age_s=0.5, timeout_s=3.0)
    backend = await asyncio.to_thread(TritonBackend.open, info, settings)
    pixels = np.zeros((1, 224, 224, 3), dtype=np.uint8)
    try:
        await backend.embed(pixels)
        old = backend._client
        triton.freeze()
        try:
            held = asyncio.create_task(backend.embed(pixels))  # on the old channel, answered after the thaw
            await asyncio.sleep(0.6)  # the channel is now older than its maximum age
        finally:
            triton.thaw()
        assert (await backend.embed(pixels))["features"].shape == (1, 1280)  # on a new channel
        assert backend._client is not old
        assert (await held)["features"].shape == (1, 1280)
        assert await old.is_server_live(client_timeout=1)  # still open for the calls it may carry
        await asyncio.sleep(settings.timeout_s + 0.5)  # the old channel's calls are past their deadline
        with pytest.raises(Exception) as closed:  # its type depends on grpc and tritonclient versions
            await old.is_server_live(client_timeout=1)
        assert "closed" in str(closed.value).lower(), closed.value
        assert (await backend.embed(pixels))["features"].shape == (1, 1280)
    finally:
        await backend.close()


@pytest.mark.slow
async def test_a_hung_triton_gives_unavailable_at_the_deadline(
    triton: TritonServer, triton_address: str, paintings: list[bytes]
):
    # The encoder opens its channel to Triton at its first call: connected first, the server hangs on an
    # open connection (the case tested). Run first (e.g. alone), the channel was opened to the frozen
    # server and failed on its connection timeout instead ("... before receiving SETTINGS frame").
    assert (await encode(triton_address, paintings[:1])).shape == (1, DESCRIPTOR_DIMENSION)
    triton.freeze()
    try:
        error, elapsed = await encode_error(triton_address, paintings[:2])
    finally:
        triton.thaw()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "DEADLINE_EXCEEDED" in error.details()
    assert TIMEOUT_S <= elapsed < TIMEOUT_S + 2
    assert (await encode(triton_address, paintings[:2])).shape == (2, DESCRIPTOR_DIMENSION)


@pytest.mark.slow
async def test_triton_down_then_restarted_the_same_service_recovers(
    triton: TritonServer, triton_address: str, paintings: list[bytes]
):
    before = await encode(triton_address, paintings[:3])
    await asyncio.to_thread(triton.stop)

    error, elapsed = await encode_error(triton_address, paintings[:3])
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert error.details().startswith("the model server is unavailable: Triton at ")
    assert elapsed < 2.0  # connection refused: no need to wait for the deadline
    async with open_channel(triton_address) as channel:
        assert await is_serving(channel, SERVICE_NAME)

    await asyncio.to_thread(triton.start)
    # The channel reconnects on its own; its backoff is capped at 1 s, so the service is back that soon.
    ready_at = time.monotonic()
    while True:
        try:
            after = await encode(triton_address, paintings[:3])
            break
        except grpc.aio.AioRpcError as failure:
            assert failure.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - ready_at < 3.0, "the service did not recover after Triton came back"
            await asyncio.sleep(0.1)
    np.testing.assert_allclose(after, before, atol=1e-6)
    assert (await encode(triton_address, paintings[3:])).shape == (3, DESCRIPTOR_DIMENSION)


@pytest.mark.slow
async def test_a_triton_shutting_down_is_unavailable_never_an_encoder_error(
    model_path: Path, tmp_path: Path, paintings: list[bytes]
):
    """A Triton told to stop (what `docker restart` and a pod's termination do) first answers "Server is
    stopping" (UNAVAILABLE), then "unknown model ... has no available versions" (NOT_FOUND) while it unloads
    the model, then refuses connections: all of it must reach the caller as UNAVAILABLE (retry elsewhere),
    none as INTERNAL (502 at the gateway: 222 of 385 answers in a fault run before)."""
    server = start_triton_server(model_path, tmp_path)
    info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
    backend = await asyncio.to_thread(TritonBackend.open, info, settings_for(server))
    service = EncoderService(backend, max_batch_images=MAX_BATCH, max_image_pixels=50_000_000)
    grpc_server, address = await serve(service)
    codes: collections.Counter[grpc.StatusCode] = collections.Counter()
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)

            async def call() -> None:
                try:
                    await stub.Encode(encoder_pb2.EncodeRequest(images=paintings[:1]), timeout=10)
                    codes[grpc.StatusCode.OK] += 1
                except grpc.aio.AioRpcError as error:
                    codes[error.code()] += 1

            await call()
            assert server.process is not None
            server.process.send_signal(signal.SIGTERM)
            stop_at = time.monotonic() + 4
            while time.monotonic() < stop_at:
                await asyncio.gather(*(call() for _ in range(4)))
    finally:
        await grpc_server.stop(0)
        await service.close()
        server.stop()
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, codes
    assert codes[grpc.StatusCode.UNAVAILABLE] > 0, codes


@pytest.mark.slow
async def test_start_up_waits_for_a_triton_that_is_still_starting(
    triton: TritonServer, triton_backend: TritonBackend
):
    await asyncio.to_thread(triton.stop)
    triton.launch()  # not ready yet when the backend starts waiting
    backend = await asyncio.to_thread(
        TritonBackend.open, triton_backend.info, settings_for(triton, startup_timeout_s=30)
    )
    try:
        # Ready over gRPC (what the backend polls); Triton's HTTP endpoint may come up a moment later.
        assert triton.process is not None and triton.process.poll() is None
        assert (await backend.embed(np.zeros((1, 224, 224, 3), dtype=np.uint8)))["features"].shape == (
            1,
            1280,
        )
    finally:
        await backend.close()


@pytest.mark.slow
async def test_a_triton_answering_wrong_shapes_is_unavailable_not_an_encoder_error(
    model_path: Path, paintings: list[bytes], tmp_path: Path
):
    """A fault injected on purpose: the served model.py answers every request one row short (as the python
    backend did right after the server was frozen and thawed). The encoder says UNAVAILABLE — the caller
    retries, the gateway answers 503 — instead of INTERNAL (a 502 at the gateway)."""
    server = start_triton_server(model_path, tmp_path, start=False)
    model_file = next(server.repository.glob("*/1/model.py"))
    source = model_file.read_text()
    assert "result[start:end]" in source
    model_file.write_text(source.replace("result[start:end]", "result[start:end][:-1]"))
    server.start()
    try:
        info = EmbeddingModelInfo.from_sidecar(model_path, backend="triton")
        backend = await asyncio.to_thread(TritonBackend.open, info, settings_for(server))
        service = EncoderService(backend, max_batch_images=MAX_BATCH, max_image_pixels=50_000_000)
        grpc_server, address = await serve(service)
        try:
            error, _ = await encode_error(address, paintings[:3])
        finally:
            await grpc_server.stop(0)
            await service.close()
    finally:
        server.stop()
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert "shape" in error.details()
