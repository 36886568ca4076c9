"""EncoderService bounds its decoding by memory (services/encoder/decode_memory.py): over a real gRPC
channel, with the real model, pictures whose decoding needs more than the budget are refused naming what
would pass, concurrent big pictures are decoded a budget's worth at a time, and the memory of a decode stays
counted until its thread is done, even when the call was cancelled meanwhile."""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from artsearch.cpu_quota import available_cpus
from artsearch.grpc_client import open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.decode_memory import DecodeMemory
from services.encoder.images import OpenedImage, open_image
from services.encoder.server import EncoderService, encoder_registration

BUDGET = 40_000_000  # bytes: one 2500x2500 RGBA picture (~38 MB with a block's conversion), not two


def picture(side: int, fmt: str = "PNG") -> bytes:
    rng = np.random.default_rng(side)
    rgba = rng.integers(0, 255, size=(side // 50, side // 50, 4), dtype=np.uint8)
    image = Image.fromarray(rgba, "RGBA").resize((side, side), Image.Resampling.NEAREST)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    return buffer.getvalue()


class TrackingMemory(DecodeMemory):
    """Records the most memory held at once."""

    def __init__(self, capacity: int) -> None:
        super().__init__(capacity)
        self.most = 0

    async def acquire(self, amount: int) -> int:
        taken = await super().acquire(amount)
        self.most = max(self.most, self.in_use)
        return taken


@pytest_asyncio.fixture(loop_scope="session")
async def service(model_path: Path) -> AsyncIterator[EncoderService]:
    service = EncoderService(
        OnnxRuntimeBackend(model_path),
        max_batch_images=8,
        max_image_pixels=50_000_000,
        decode_threads=4,
        decode_memory_bytes=BUDGET,
    )
    service._decode_memory = TrackingMemory(BUDGET)
    yield service
    await service.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(service: EncoderService) -> AsyncIterator[encoder_pb2_grpc.EncoderServiceStub]:
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    async with open_channel(f"127.0.0.1:{port}") as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel)
    await server.stop(0)


async def test_a_picture_needing_more_than_the_budget_is_refused_saying_what_passes(stub):
    big = picture(3000)  # 3000x3000 RGBA: ~49 MB to decode
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[big]), timeout=30)
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "3000x3000 PNG image needs about 49 MB" in refused.value.details()
    assert "send at most" in refused.value.details()


async def test_concurrent_big_pictures_decode_one_budget_at_a_time_and_all_succeed(stub, service):
    pictures = [picture(2500), picture(2400), picture(2300), picture(2450)]
    needs = [open_image(p, size=224, max_pixels=50_000_000).decode_bytes for p in pictures]
    assert all(need <= BUDGET for need in needs) and sum(needs[:2]) > BUDGET
    calls = [stub.Encode(encoder_pb2.EncodeRequest(images=[p]), timeout=60) for p in pictures]
    calls.append(stub.Encode(encoder_pb2.EncodeRequest(images=pictures[:2]), timeout=60))  # one call, two
    replies = await asyncio.gather(*calls)
    assert [len(reply.embeddings) for reply in replies] == [1, 1, 1, 1, 2]
    assert service._decode_memory.most <= BUDGET
    assert service._decode_memory.in_use == 0


async def test_a_cancelled_call_keeps_its_decode_counted_until_the_thread_is_done(stub, service, monkeypatch):
    proceed = threading.Event()
    decode = OpenedImage.decode

    def held_decode(self: OpenedImage) -> np.ndarray:
        proceed.wait(30)
        return decode(self)

    monkeypatch.setattr(OpenedImage, "decode", held_decode)
    with pytest.raises(grpc.aio.AioRpcError) as expired:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[picture(2500)]), timeout=0.2)
    assert expired.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await asyncio.sleep(0.2)
    assert service._decode_memory.in_use > 0  # the call is gone, its decode thread is not
    proceed.set()
    for _ in range(200):
        if service._decode_memory.in_use == 0:
            break
        await asyncio.sleep(0.05)
    assert service._decode_memory.in_use == 0


def test_the_decode_pool_is_sized_to_the_cpus_the_quota_allows(model_path: Path):
    service = EncoderService(OnnxRuntimeBackend(model_path), max_batch_images=8, max_image_pixels=50_000_000)
    try:
        assert service._decode_pool._max_workers == available_cpus()
        assert service._decode_memory.capacity == 4 * 50_000_000 + 24 * 2**19
    finally:
        asyncio.run(service.close())
