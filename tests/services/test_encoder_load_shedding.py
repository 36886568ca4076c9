"""The encoder sheds load instead of queueing without bound (services/encoder/load_shedding.py): over a real
gRPC channel, with the real model, a call that would take the images in progress over MAX_QUEUED_IMAGES is
answered RESOURCE_EXHAUSTED at once, while the calls already taken finish; and work whose caller's deadline
passed while it waited (for a decode thread, or for a batch) is dropped, never run.

Faults are injected on purpose where a test needs the service to be slow: a stalled model (its batches held
until released) and a stalled decode (one picture's decode held); everything else is the real service."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from artsearch.config import ConfigError, Env
from artsearch.cpu_quota import available_cpus
from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from services.encoder.backends import EmbeddingModelInfo, OnnxRuntimeBackend
from services.encoder.batching import MicroBatchingBackend
from services.encoder.config import EncoderConfig
from services.encoder.images import OpenedImage
from services.encoder.load_shedding import default_max_queued_images
from services.encoder.server import SERVICE_NAME, EncoderService, encoder_registration

REPO_ROOT = Path(__file__).resolve().parents[2]
PER_CALL = 4  # MAX_REQUEST_IMAGES of the in-process services below
QUEUE_LIMIT = 8  # MAX_QUEUED_IMAGES: two full calls


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG")
    return buffer.getvalue()


PICTURE = jpeg(96, 72, 1)


class StalledModel:
    """The real onnxruntime backend behind a fault: every batch waits for `release` (a model server that
    stopped answering); records how many images each batch it ran had."""

    def __init__(self, model_path: Path) -> None:
        self._backend = OnnxRuntimeBackend(model_path)
        self.release = asyncio.Event()
        self.started = asyncio.Event()
        self.batches: list[int] = []

    @property
    def info(self) -> EmbeddingModelInfo:
        return self._backend.info

    async def embed(self, pixels: np.ndarray) -> dict[str, np.ndarray]:
        self.batches.append(len(pixels))
        self.started.set()
        await self.release.wait()
        return await self._backend.embed(pixels)

    async def close(self) -> None:
        await self._backend.close()


@dataclass
class Stalled:
    """An in-process encoder on a stalled model: `stub` to call it, `service` to read its admission."""

    stub: encoder_pb2_grpc.EncoderServiceStub
    service: EncoderService
    model: StalledModel

    def encode(self, images: int, timeout: float = 60) -> grpc.aio.UnaryUnaryCall:
        return self.stub.Encode(encoder_pb2.EncodeRequest(images=[PICTURE] * images), timeout=timeout)

    async def wait_until_in_progress(self, images: int) -> None:
        for _ in range(600):
            if self.service._admission.in_progress == images:
                return
            await asyncio.sleep(0.01)
        pytest.fail(f"{self.service._admission.in_progress} images in progress, expected {images}")


@pytest_asyncio.fixture(loop_scope="session")
async def stalled(model_path: Path) -> AsyncIterator[Stalled]:
    model = StalledModel(model_path)
    batching = MicroBatchingBackend(model, max_batch_images=PER_CALL, max_wait_ms=0)
    service = EncoderService(
        batching, max_batch_images=PER_CALL, max_image_pixels=50_000_000, max_queued_images=QUEUE_LIMIT
    )
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    async with open_channel(f"127.0.0.1:{port}") as channel:
        yield Stalled(encoder_pb2_grpc.EncoderServiceStub(channel), service, model)
    model.release.set()
    await server.stop(0)
    await service.close()


async def test_a_flood_past_the_limit_is_refused_at_once_and_the_calls_taken_finish(stalled):
    taken = [stalled.encode(PER_CALL), stalled.encode(PER_CALL)]
    await stalled.wait_until_in_progress(QUEUE_LIMIT)  # both taken: one batch stalled, one queued
    started = time.monotonic()
    flood = await asyncio.wait_for(
        asyncio.gather(*(stalled.encode(1) for _ in range(20)), return_exceptions=True), timeout=10
    )
    refused_within = time.monotonic() - started
    # Answered while the model was still stalled: none of them waited for it.
    assert not stalled.model.release.is_set()
    assert all(isinstance(answer, grpc.aio.AioRpcError) for answer in flood), flood
    assert {answer.code() for answer in flood} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert refused_within < 5.0
    details = flood[0].details()
    assert "overloaded" in details and f"limit of {QUEUE_LIMIT} (MAX_QUEUED_IMAGES)" in details
    stalled.model.release.set()
    replies = await asyncio.gather(*taken)
    assert [len(reply.embeddings) for reply in replies] == [PER_CALL, PER_CALL]
    # Their places are free again: the service takes calls as before.
    assert stalled.service._admission.in_progress == 0
    assert len((await stalled.encode(PER_CALL)).embeddings) == PER_CALL
    assert sum(stalled.model.batches) == 3 * PER_CALL  # the refused calls never reached the model


async def test_a_call_whose_deadline_passes_while_queued_for_a_batch_is_dropped_unrun(stalled):
    running = stalled.encode(PER_CALL)
    await asyncio.wait_for(stalled.model.started.wait(), 30)
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await stalled.encode(2, timeout=0.5)  # decoded, then queued behind the stalled batch
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    stalled.model.release.set()
    assert len((await running).embeddings) == PER_CALL
    assert len((await stalled.encode(1)).embeddings) == 1
    assert stalled.model.batches == [PER_CALL, 1]  # never the expired call's 2 images
    assert stalled.service._admission.in_progress == 0


async def test_a_picture_whose_deadline_passes_while_it_waits_for_a_decode_thread_is_never_decoded(
    model_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """One decode thread; a call of two pictures whose first decode stalls past the deadline: the second,
    queued for the thread, must be dropped, not decoded for nobody once the thread is free."""
    backend = OnnxRuntimeBackend(model_path)
    service = EncoderService(
        backend, max_batch_images=PER_CALL, max_image_pixels=50_000_000, decode_threads=1
    )
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    stalling, marker = jpeg(120, 90, 2), jpeg(88, 66, 3)
    decoded: list[tuple[int, int]] = []
    proceed = threading.Event()
    decode = OpenedImage.decode

    def recorded_decode(self: OpenedImage) -> np.ndarray:
        decoded.append(self.image.size)
        if self.image.size == (120, 90):
            proceed.wait(30)  # the injected fault: this decode stalls
        return decode(self)

    monkeypatch.setattr(OpenedImage, "decode", recorded_decode)
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as expired:
                await stub.Encode(encoder_pb2.EncodeRequest(images=[stalling, marker]), timeout=0.5)
            assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            proceed.set()
            for _ in range(100):  # the stalled decode finishes and gives its memory back
                if service._decode_memory.in_use == 0:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # time for a wrongly queued decode to run
            assert decoded == [(120, 90)]
            assert service._decode_memory.in_use == 0
            reply = await stub.Encode(encoder_pb2.EncodeRequest(images=[marker]), timeout=30)
            assert len(reply.embeddings) == 1
    finally:
        proceed.set()
        await server.stop(0)
        await service.close()


class TestSettings:
    def test_the_default_limit_is_four_batches_per_core_and_at_least_two_full_calls(self, model_path):
        assert default_max_queued_images(16, 64, 2) == 128
        assert default_max_queued_images(16, 64, 8) == 512
        assert default_max_queued_images(4, 64, 1) == 128
        config = EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path), "BATCH_MAX_IMAGES": "8"}))
        assert config.max_queued_images == default_max_queued_images(8, 64, available_cpus())
        given = EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path), "MAX_QUEUED_IMAGES": "300"}))
        assert given.max_queued_images == 300

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("many", "MAX_QUEUED_IMAGES='many' is not an integer"),
            ("0", "MAX_QUEUED_IMAGES=0 must be >= 1"),
            ("63", "MAX_QUEUED_IMAGES=63 must be >= MAX_REQUEST_IMAGES=64"),
        ],
    )
    def test_a_malformed_limit_is_refused_at_start_up(self, model_path, value, message):
        with pytest.raises(ConfigError, match=message):
            EncoderConfig.from_env(Env({"MODEL_PATH": str(model_path), "MAX_QUEUED_IMAGES": value}))


@pytest.mark.slow
async def test_the_service_process_refuses_a_flood_fast_with_resource_exhausted(
    model_path: Path, tmp_path: Path
):
    """`python -m services.encoder` with MAX_QUEUED_IMAGES from its environment, flooded by 40 concurrent
    calls of 4 images on its real model: the calls over the limit are refused within a round trip, every
    other call succeeds, nothing else is answered."""
    port = _free_port()
    settings = {"MAX_REQUEST_IMAGES": "4", "MAX_QUEUED_IMAGES": "8", "BATCH_MAX_IMAGES": "4"}
    process = _start_encoder(model_path, port, settings, tmp_path / "encoder.log")
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            await _wait_serving(channel, process, tmp_path / "encoder.log")
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            request = encoder_pb2.EncodeRequest(images=[PICTURE] * 4)
            outcomes = await asyncio.gather(*(_timed(stub.Encode(request, timeout=60)) for _ in range(40)))
    finally:
        process.kill()
        process.wait()
    served = [seconds for code, seconds in outcomes if code == grpc.StatusCode.OK]
    refused = [seconds for code, seconds in outcomes if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
    assert len(served) + len(refused) == 40, outcomes
    assert served and refused
    assert max(refused) < 3.0


async def _timed(call: grpc.aio.UnaryUnaryCall) -> tuple[grpc.StatusCode, float]:
    started = time.monotonic()
    try:
        await call
        code = grpc.StatusCode.OK
    except grpc.aio.AioRpcError as error:
        code = error.code()
    return code, time.monotonic() - started


def _start_encoder(
    model_path: Path, port: int, settings: dict[str, str], log: Path
) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "MODEL_PATH": str(model_path),
        "ARTSEARCH_PORT": str(port),
        "ARTSEARCH_HOST": "127.0.0.1",
        **settings,
    }
    with log.open("w") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "services.encoder"], cwd=REPO_ROOT, env=environ, stderr=log_file
        )


def _tail(log: Path) -> str:
    return log.read_text()[-2000:]


async def _wait_serving(channel: grpc.aio.Channel, process: subprocess.Popen[bytes], log: Path) -> None:
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"the encoder exited: {_tail(log)}")
        if await is_serving(channel, SERVICE_NAME, timeout=0.5):
            return
        await asyncio.sleep(0.1)
    pytest.fail("the encoder did not report SERVING")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
