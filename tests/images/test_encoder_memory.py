"""The encoder under the memory limit the Kubernetes manifests give it (the smallest of base and overlays)
survives the worst pictures the gateway accepts: each just under the gateway's MAX_IMAGE_PIXELS
(50,000,000) and its upload limit (20 MB), in every accepted format, one at a time and several at once.

Such a picture is small on the wire and huge once decoded: a 7000x7000 transparent PNG is ~300 KB and
196 MB of RGBA pixels. Before the decoder worked block by block it cost ~0.9 GB (full-size RGBA copy,
white background, composite, RGB conversion) and a single upload got the encoder OOM-killed under the
dev overlay's 1 GiB; every call in flight on it failed with it.

Every answer must be a 200 or a clear 4xx (the encoder refuses, with a 400 saying why, a picture whose
decoder alone needs more memory than its decoding budget: a 7000x7000 WebP or AVIF); never a 5xx. The
container must never be OOM-killed nor restarted, and a normal search works afterwards. The encoder's peak
memory (cgroup v1 `memory.max_usage_in_bytes`) is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import yaml
from heic_files import deep_heic, heic
from image_support import ServiceContainer, Stack, StackOptions, running_stack
from PIL import Image

from tests.deploy.deploy_support import K8S, OVERLAYS, kubectl, named, render

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("images")]

MAX_IMAGE_PIXELS = 50_000_000  # the gateway's and the encoder's default (services/gateway/config.py)
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
SIDE = 7000  # 49,000,000 pixels: just under the limit
MIB = 2**20


# ------------------------------------------------------------------------------------ the memory limit


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes memory quantity ("1Gi", "1536Mi", "512M", "2G", "1073741824") in bytes."""
    found = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?)?", quantity)
    assert found, f"not a memory quantity: {quantity!r}"
    number, unit = float(found.group(1)), found.group(2) or ""
    powers = {"K": 1, "M": 2, "G": 3, "T": 4}
    scale = 1 if not unit else (1024 if unit.endswith("i") else 1000) ** powers[unit[0]]
    return int(number * scale)


def encoder_memory_limits() -> dict[str, int]:
    """The encoder container's memory limit in the rendered base and each overlay (`kubectl kustomize`),
    in bytes; without kubectl, every limit the manifests and patches under deploy/k8s set for it."""
    if kubectl() is None:
        return _encoder_limits_in_yaml()
    limits = {}
    for name, folder in {"base": K8S / "base", **OVERLAYS}.items():
        limits[name] = _encoder_limit(named(render(folder), "Deployment", "encoder"))
    return limits


def _encoder_limit(deployment: dict[str, Any]) -> int:
    (container,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "encoder"]
    return quantity_bytes(container["resources"]["limits"]["memory"])


def _encoder_limits_in_yaml() -> dict[str, int]:
    limits = {}
    for path in sorted(K8S.rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if (
                isinstance(doc, dict)
                and doc.get("kind") == "Deployment"
                and doc["metadata"]["name"] == "encoder"
            ):
                with contextlib.suppress(KeyError, ValueError):
                    limits[str(path.relative_to(K8S))] = _encoder_limit(doc)
    return limits


def test_the_smallest_manifest_limit_is_read_from_the_rendered_kustomizations():
    limits = encoder_memory_limits()
    if kubectl() is not None:
        assert set(limits) == {"base", "dev", "prod"}
        assert limits["dev"] <= limits["base"]  # the dev overlay's laptop-sized limits: 1Gi at present
    # The rendered limits and those the YAML files set (the base, the overlays' patches) agree.
    assert min(limits.values()) == min(_encoder_limits_in_yaml().values())
    assert quantity_bytes("1536Mi") == 1536 * MIB and quantity_bytes("2G") == 2 * 10**9


# ------------------------------------------------------------------------------------ the worst pictures


def _png(width: int, height: int, row: bytes, *, colour_type: int, bit_depth: int) -> bytes:
    """A PNG whose every row is `row` (filter byte included), compressed as it is written: a 49 Mpx picture
    in a few hundred KB and a fraction of a second, without its pixels ever in memory here."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    compressor = zlib.compressobj(6)
    body = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def rgba_png(side: int = SIDE) -> bytes:
    """Transparent at the left, a translucent red in the middle, opaque blue at the right."""
    pixels = np.zeros((side, 4), dtype=np.uint8)
    pixels[side // 3 : 2 * side // 3] = (200, 30, 30, 128)
    pixels[2 * side // 3 :] = (20, 40, 220, 255)
    return _png(side, side, b"\x00" + pixels.tobytes(), colour_type=6, bit_depth=8)


def rgba16_png() -> bytes:
    pixels = np.zeros((SIDE, 4), dtype=">u2")
    pixels[SIDE // 2 :] = (50000, 10000, 30000, 40000)
    return _png(SIDE, SIDE, b"\x00" + pixels.tobytes(), colour_type=6, bit_depth=16)


def grey16_png() -> bytes:
    ramp = np.linspace(0, 65535, SIDE).astype(">u2")
    return _png(SIDE, SIDE, b"\x00" + ramp.tobytes(), colour_type=0, bit_depth=16)


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def palette_gif() -> bytes:
    image = Image.new("P", (SIDE, SIDE), 0)
    image.putpalette([255, 255, 255, 180, 20, 20, 20, 20, 180] + [0] * 759)
    image.paste(1, (0, 0, SIDE // 2, SIDE // 2))
    image.paste(2, (SIDE // 2, SIDE // 2, SIDE, SIDE))
    return saved(image, "GIF", transparency=0)


def float_tiff() -> bytes:
    """32-bit float greyscale (mode F), deflate-compressed: rows of one value each."""
    values = np.repeat(np.linspace(0, 1, SIDE, dtype=np.float32)[:, None], SIDE, axis=1)
    return saved(Image.fromarray(values), "TIFF", compression="tiff_adobe_deflate")


def rle8_bmp() -> bytes:
    """An 8-bit BMP with run-length encoding (BI_RLE8): 49 Mpx in ~400 KB."""
    runs = []
    for start in range(0, SIDE, 255):
        runs.append(bytes((min(255, SIDE - start), 1 + (start // 255) % 3)))
    row = b"".join(runs) + b"\x00\x00"  # end of line
    pixels = row * SIDE + b"\x00\x01"  # end of bitmap
    palette = bytes([255, 255, 255, 0, 30, 30, 200, 0, 30, 160, 30, 0, 200, 30, 30, 0]) + bytes(4 * 252)
    offset = 14 + 40 + len(palette)
    info = struct.pack("<IiiHHIIiiII", 40, SIDE, SIDE, 1, 8, 1, len(pixels), 2835, 2835, 256, 0)
    return b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + info + palette + pixels


def wide_jpeg() -> bytes:
    """65,000 x 760 pixels (49.4 Mpx): the widest a JPEG may be; libjpeg's scaling only halves it."""
    image = Image.new("RGB", (65_000, 760), (120, 90, 60))
    return saved(image, "JPEG", quality=80)


def progressive_jpeg(subsampling: int) -> bytes:
    """A progressive JPEG is decoded from a buffer of every coefficient of the full-size picture."""
    image = Image.new("RGB", (SIDE, SIDE), (60, 120, 200))
    image.paste((200, 60, 60), (0, 0, SIDE // 2, SIDE // 2))
    return saved(image, "JPEG", quality=80, progressive=True, subsampling=subsampling)


def rgba_webp(side: int) -> bytes:
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    image.paste((30, 160, 30, 255), (0, 0, side // 2, side // 2))
    return saved(image, "WEBP", lossless=True, method=0, quality=0)


def rgba_avif(side: int) -> bytes:
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    image.paste((160, 30, 160, 255), (0, 0, side // 2, side // 2))
    return saved(image, "AVIF", quality=30, speed=10)


def phone_heic() -> bytes:
    """A 24-megapixel phone photo (an iPhone's default since the 15): 8 bits, 4:2:0."""
    image = Image.new("RGB", (5712, 4284), (60, 120, 200))
    image.paste((200, 60, 60), (0, 0, 2856, 2142))
    return heic(image, quality=50)


def deep_rgba_heic(side: int) -> bytes:
    """libheif's costliest kind: 10 bits, chroma at full resolution, alpha."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    image.paste((30, 30, 160, 255), (0, 0, side // 2, side // 2))
    return deep_heic(image, chroma=444, quality=30)


# name -> (how to make it, what the gateway must answer)
ACCEPTED = 200
TOO_HUNGRY = 400  # the encoder's decoding budget: the client is told how many pixels of that format pass
WORST: dict[str, tuple[Callable[[], bytes], int]] = {
    "png-rgba-7000x7000": (rgba_png, ACCEPTED),
    "png-rgba-16bit-7000x7000": (rgba16_png, ACCEPTED),
    "png-grey-16bit-7000x7000": (grey16_png, ACCEPTED),
    "gif-transparent-7000x7000": (palette_gif, ACCEPTED),
    "tiff-float-7000x7000": (float_tiff, ACCEPTED),
    "bmp-rle8-7000x7000": (rle8_bmp, ACCEPTED),
    "jpeg-65000x760": (wide_jpeg, ACCEPTED),
    "jpeg-progressive-420-7000x7000": (lambda: progressive_jpeg(2), ACCEPTED),
    "jpeg-progressive-444-7000x7000": (lambda: progressive_jpeg(0), TOO_HUNGRY),
    "webp-rgba-3500x3500": (lambda: rgba_webp(3500), ACCEPTED),
    "webp-rgba-7000x7000": (lambda: rgba_webp(SIDE), TOO_HUNGRY),
    "avif-rgba-3500x3500": (lambda: rgba_avif(3500), ACCEPTED),
    "avif-rgba-7000x7000": (lambda: rgba_avif(SIDE), TOO_HUNGRY),
    "heic-phone-5712x4284": (phone_heic, ACCEPTED),
    "heic-rgba-10bit-444-4000x4000": (lambda: deep_rgba_heic(4000), TOO_HUNGRY),
}


@pytest.fixture(scope="module")
def worst() -> dict[str, bytes]:
    pictures = {name: make() for name, (make, _) in WORST.items()}
    for name, data in pictures.items():
        assert len(data) < MAX_UPLOAD_BYTES, name
        with Image.open(io.BytesIO(data)) as opened:
            width, height = opened.size
        assert 0.24 * MAX_IMAGE_PIXELS < width * height <= MAX_IMAGE_PIXELS, name
    return pictures


# ----------------------------------------------------------------------------------------- the stack


@pytest.fixture(scope="module")
def memory_limit() -> int:
    return min(encoder_memory_limits().values())


@pytest.fixture(scope="module")
def stack(catalogues: Path, memory_limit: int) -> Iterator[Stack]:
    options = StackOptions(encoder_mem_limit=str(memory_limit))
    with running_stack(catalogues, options) as running:
        yield running


def cgroup_memory(container: ServiceContainer, name: str) -> int:
    """A cgroup v1 memory counter of the container (memory.max_usage_in_bytes: its peak so far)."""
    result = container.docker_container().exec_run(["cat", f"/sys/fs/cgroup/memory/memory.{name}"])
    assert result.exit_code == 0, result.output
    return int(result.output.decode().strip())


def never_oom_killed(container: ServiceContainer, restarts: int) -> None:
    state = container.state()
    assert not state["OOMKilled"], f"the encoder was OOM-killed:\n{container.logs()[-2000:]}"
    assert state["Running"] and container.restart_count() == restarts, state


async def search_all(url: str, pictures: list[tuple[str, bytes]]) -> list[tuple[str, int, str, float]]:
    """The pictures sent at once: (name, status, error body, seconds) for each."""

    async def one(client: httpx.AsyncClient, name: str, data: bytes) -> tuple[str, int, str, float]:
        started = time.monotonic()
        reply = await client.post("/v1/search", params={"k": 3}, files={"image": data})
        detail = "" if reply.status_code == 200 else reply.text[:300]
        return name, reply.status_code, detail, time.monotonic() - started

    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        return await asyncio.gather(*(one(client, name, data) for name, data in pictures))


def test_the_encoder_runs_under_the_manifests_memory_limit(stack: Stack, memory_limit: int):
    encoder = stack.one("encoder").docker_container()
    encoder.reload()
    assert encoder.attrs["HostConfig"]["Memory"] == memory_limit
    assert cgroup_memory(stack.one("encoder"), "limit_in_bytes") == memory_limit
    peak, now = (cgroup_memory(stack.one("encoder"), f"{name}_in_bytes") for name in ("max_usage", "usage"))
    print(f"the encoder after ingesting the catalogue: {now / MIB:.0f} MiB, peak {peak / MIB:.0f} MiB")


@pytest.mark.parametrize("name", list(WORST))
def test_each_worst_picture_is_answered_200_or_a_clear_4xx_and_the_encoder_survives(
    stack: Stack, worst: dict[str, bytes], name: str
):
    encoder = stack.one("encoder")
    restarts = encoder.restart_count()
    ((_, status, detail, seconds),) = asyncio.run(search_all(stack.gateway_url, [(name, worst[name])]))
    peak = cgroup_memory(encoder, "max_usage_in_bytes")
    print(f"{name}: {status} in {seconds:.1f} s; the encoder's peak so far {peak / MIB:.0f} MiB")
    never_oom_killed(encoder, restarts)
    assert status < 500, f"{name}: {status} {detail}"
    assert status == WORST[name][1], f"{name}: {status} {detail}"
    if status == TOO_HUNGRY:
        # The reason comes through: what the picture needs, and how many pixels of its format would pass.
        assert "needs about" in detail and "send at most" in detail, detail


def test_a_few_worst_pictures_at_once_are_decoded_within_the_budget(stack: Stack, worst: dict[str, bytes]):
    encoder = stack.one("encoder")
    restarts = encoder.restart_count()
    names = [
        "png-rgba-7000x7000",
        "png-rgba-16bit-7000x7000",
        "tiff-float-7000x7000",
        "png-grey-16bit-7000x7000",
    ]
    for _ in range(2):
        answers = asyncio.run(search_all(stack.gateway_url, [(name, worst[name]) for name in names]))
        print(
            "at once:",
            ", ".join(f"{name} {status} in {seconds:.1f} s" for name, status, _, seconds in answers),
        )
        never_oom_killed(encoder, restarts)
        assert [(name, status) for name, status, _, _ in answers] == [(name, 200) for name in names], answers


def test_over_the_pixel_limit_is_a_413_from_the_gateway(stack: Stack):
    reply = httpx.post(f"{stack.gateway_url}/v1/search", files={"image": rgba_png(7100)}, timeout=30)
    assert reply.status_code == 413, reply.text
    assert reply.json()["error"]["code"] == "too_many_pixels"


def test_afterwards_a_normal_search_works_and_the_peak_stayed_well_under_the_limit(
    stack: Stack, catalogues: Path, memory_limit: int
):
    encoder = stack.one("encoder")
    never_oom_killed(encoder, 0)
    painting = catalogues / "gcompris" / "hokusai-the-great-wave-off-kanagawa.jpg"
    reply = httpx.post(
        f"{stack.gateway_url}/v1/search", params={"k": 3}, files={"image": painting.read_bytes()}, timeout=30
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["results"][0]["id"] == "hokusai-the-great-wave-off-kanagawa"
    peak = cgroup_memory(encoder, "max_usage_in_bytes")
    print(f"encoder peak memory {peak / MIB:.0f} MiB of its {memory_limit / MIB:.0f} MiB limit")
    assert peak < 0.8 * memory_limit
