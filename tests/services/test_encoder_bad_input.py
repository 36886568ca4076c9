"""What an upload causes is answered as the upload's fault, what the encoder causes as its own: over a real
gRPC channel with the real model, malformed real files (seeded mutations of every accepted format, in odd
modes) get INVALID_ARGUMENT and never INTERNAL; a picture on which Pillow itself raises, whatever the type,
is INVALID_ARGUMENT; a bug in the encoder's own decoding code stays INTERNAL; and a decode that runs out of
memory is RESOURCE_EXHAUSTED (a retry may pass), shown on the real service process under a memory limit."""

from __future__ import annotations

import asyncio
import io
import os
import random
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import numpy as np
import pytest
import pytest_asyncio
from heic_files import heic
from PIL import Image, ImageCms

from artsearch.grpc_client import is_serving, open_channel
from artsearch.grpc_server import GrpcServiceServer
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc
from services.encoder import images as encoder_images
from services.encoder.backends import OnnxRuntimeBackend
from services.encoder.server import SERVICE_NAME, EncoderService, encoder_registration

REPO_ROOT = Path(__file__).resolve().parents[2]
FUZZ_SEED = 13
FUZZ_CASES = 240


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def seed_files() -> list[bytes]:
    """Real files of every accepted format, in the modes each stores (16-bit, palette, CMYK, LAB, float...),
    big enough (600x450) for the block-wise conversion and the reduction to run."""
    rng = np.random.default_rng(FUZZ_SEED)
    rgb = Image.fromarray(rng.integers(0, 255, (45, 60, 3), dtype=np.uint8)).resize((600, 450))
    grey = rgb.convert("L")
    files = [saved(rgb.convert(mode), "TIFF") for mode in ("1", "L", "P", "RGB", "RGBA", "CMYK", "YCbCr")]
    files += [
        saved(rgb.convert("LAB"), "TIFF"),
        saved(grey.convert("I"), "TIFF"),
        saved(grey.convert("F"), "TIFF"),
    ]
    files += [saved(rgb.convert(mode), "PNG") for mode in ("1", "L", "LA", "P", "RGBA")]
    files += [saved(grey.convert("I;16"), "PNG"), saved(rgb.convert("P"), "PNG", transparency=3)]
    files += [saved(rgb, "JPEG"), saved(rgb, "JPEG", progressive=True), saved(rgb.convert("CMYK"), "JPEG")]
    files += [saved(rgb, "GIF", save_all=True, append_images=[grey.convert("RGB")])]
    files += [saved(rgb.convert(mode), "BMP") for mode in ("1", "P", "RGB", "RGBA")]
    files += [saved(rgb, "WEBP"), saved(rgb.convert("RGBA"), "WEBP", lossless=True), saved(rgb, "AVIF")]
    return files + heif_seed_files(rgb)


def heif_seed_files(rgb: Image.Image) -> list[bytes]:
    """A phone's HEIC (8 bits, 4:2:0), and one with alpha and chroma at full resolution."""
    return [heic(rgb), heic(rgb.convert("RGBA"), chroma=444)]


def mutated(data: bytes, rng: random.Random) -> bytes:
    """A few byte-level faults where decoders look: headers and chunk lengths, scattered bytes, truncation."""
    damaged = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        kind = rng.randrange(4)
        if kind == 0:
            damaged[rng.randrange(min(len(damaged), 400))] ^= 1 << rng.randrange(8)
        elif kind == 1:
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        elif kind == 2:
            at = rng.randrange(min(len(damaged), 400))
            damaged[at : at + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\x00\x10"])
        else:
            del damaged[rng.randrange(len(damaged) // 2, len(damaged)) :]
    return bytes(damaged)


@pytest_asyncio.fixture(loop_scope="session")
async def service(model_path: Path) -> AsyncIterator[EncoderService]:
    encoder = EncoderService(OnnxRuntimeBackend(model_path), max_batch_images=8, max_image_pixels=50_000_000)
    yield encoder
    await encoder.close()


@pytest_asyncio.fixture(loop_scope="session")
async def stub(service: EncoderService) -> AsyncIterator[encoder_pb2_grpc.EncoderServiceStub]:
    server = GrpcServiceServer([encoder_registration(service)])
    port = await server.start()
    async with open_channel(f"127.0.0.1:{port}") as channel:
        yield encoder_pb2_grpc.EncoderServiceStub(channel)
    await server.stop(0)


async def answer_code(stub: encoder_pb2_grpc.EncoderServiceStub, data: bytes) -> grpc.StatusCode:
    try:
        await stub.Encode(encoder_pb2.EncodeRequest(images=[data]), timeout=60)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


@pytest.mark.slow
async def test_malformed_real_files_are_invalid_argument_never_internal(stub):
    seeds = seed_files()
    assert {await answer_code(stub, data) for data in seeds} == {grpc.StatusCode.OK}
    rng = random.Random(FUZZ_SEED)
    cases = [mutated(rng.choice(seeds), rng) for _ in range(FUZZ_CASES)]
    codes = [await answer_code(stub, data) for data in cases]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, [
        (index, code)
        for index, code in enumerate(codes)
        if code not in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
    ]
    assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) > FUZZ_CASES // 4  # the faults did reach decoders
    assert await answer_code(stub, seeds[0]) == grpc.StatusCode.OK


@pytest.mark.slow
async def test_malformed_heic_photos_are_invalid_argument_never_internal(stub):
    """libheif (C, through pillow-heif) on damaged files: every failure a client's INVALID_ARGUMENT, the
    service unharmed. The mixed fuzz above gives HEIF only its share of cases."""
    rgb = Image.open(io.BytesIO(seed_files()[3])).convert("RGB")  # the RGB TIFF's picture
    seeds = heif_seed_files(rgb)
    rng = random.Random(FUZZ_SEED)
    cases = [mutated(rng.choice(seeds), rng) for _ in range(FUZZ_CASES // 2)]
    codes = [await answer_code(stub, data) for data in cases]
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}, [
        (index, code)
        for index, code in enumerate(codes)
        if code not in {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT}
    ]
    assert codes.count(grpc.StatusCode.INVALID_ARGUMENT) > len(cases) // 4
    assert [await answer_code(stub, data) for data in seeds] == [grpc.StatusCode.OK] * 2


async def test_a_picture_on_which_pillow_raises_is_invalid_argument(stub, monkeypatch):
    """A LAB picture whose colour conversion fails inside Pillow: littlecms, asked for the sRGB profile, fails
    (injected: its C entry point raises as it does on bad input), and Pillow raises its PyCMSError -- not a
    ValueError, the one type the conversion step used to expect."""
    lab = saved(Image.new("RGB", (64, 48), (200, 30, 60)).convert("LAB"), "TIFF")
    assert await answer_code(stub, lab) == grpc.StatusCode.OK
    monkeypatch.setattr(ImageCms.core, "createProfile", int)  # int("sRGB", 5000) raises ValueError in C
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Encode(
            encoder_pb2.EncodeRequest(images=[saved(Image.new("RGB", (16, 16)), "PNG"), lab]), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert refused.value.details().startswith(
        "image 1: cannot decode this TIFF image in mode LAB (PyCMSError:"
    )


async def test_a_bug_in_the_encoders_own_decoding_code_stays_internal(stub, monkeypatch):
    def broken(source: tuple[int, int], size: int) -> tuple[int, int]:
        raise TypeError("a bug in the encoder, not in the picture")

    monkeypatch.setattr(encoder_images, "_reduction_factor", broken)
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await stub.Encode(
            encoder_pb2.EncodeRequest(images=[saved(Image.new("RGB", (16, 16)), "PNG")]), timeout=30
        )
    assert failed.value.code() == grpc.StatusCode.INTERNAL
    assert failed.value.details() == "image 0: the encoder failed to decode it"


@pytest.mark.slow
async def test_a_decode_that_runs_out_of_memory_is_resource_exhausted_and_the_service_goes_on(
    model_path: Path, tmp_path: Path
):
    """The real service process, warmed up, then held to its current address space plus 48 MB (the fault,
    injected with RLIMIT_AS; glibc's mmap threshold is fixed so that every 16 MB block Pillow allocates is a
    mapping of its own, counted against the limit, rather than reused reserved arena space): a 3000x3000
    picture (~36 MB decoded) still decodes, a 6000x6000 one (36 M pixels, within every limit, ~144 MB)
    cannot, now."""
    port = _free_port()
    process = _start_encoder(model_path, port, tmp_path / "encoder.log")
    small = saved(Image.new("RGB", (96, 72), (10, 120, 200)), "JPEG")
    fits = saved(Image.new("RGB", (3000, 3000), (10, 120, 200)), "PNG")
    big = saved(Image.new("RGB", (6000, 6000), (10, 120, 200)), "PNG")
    try:
        async with open_channel(f"127.0.0.1:{port}") as channel:
            await _wait_serving(channel, process, tmp_path / "encoder.log")
            stub = encoder_pb2_grpc.EncoderServiceStub(channel)
            # Warm-up: every decode thread and the model's arena exist before the limit.
            await asyncio.gather(
                *(stub.Encode(encoder_pb2.EncodeRequest(images=[small] * 4), timeout=60) for _ in range(4))
            )
            _limit_address_space(process.pid, extra_bytes=48 << 20)
            assert (
                len((await stub.Encode(encoder_pb2.EncodeRequest(images=[fits]), timeout=60)).embeddings) == 1
            )
            with pytest.raises(grpc.aio.AioRpcError) as short:
                await stub.Encode(encoder_pb2.EncodeRequest(images=[small, big]), timeout=60)
            assert short.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, short.value.details()
            assert short.value.details() == "image 1: the encoder ran out of memory decoding it; retry later"
            reply = await stub.Encode(encoder_pb2.EncodeRequest(images=[small]), timeout=60)
            assert len(reply.embeddings) == 1
    finally:
        process.kill()
        process.wait()


def _limit_address_space(pid: int, extra_bytes: int) -> None:
    size_kb = next(
        int(line.split()[1])
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if line.startswith("VmSize:")
    )
    limit = size_kb * 1024 + extra_bytes
    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))


def _start_encoder(model_path: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    environ = {
        **os.environ,
        "MODEL_PATH": str(model_path),
        "ARTSEARCH_PORT": str(port),
        "ARTSEARCH_HOST": "127.0.0.1",
    }
    environ["GLIBC_TUNABLES"] = "glibc.malloc.mmap_threshold=131072"
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
