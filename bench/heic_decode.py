"""What a phone's HEIC costs the encoder to decode, against the same photo as a JPEG (the yardstick, measured
in the same run): the decode an analysed photo gets (`open_image(..., work_side=ANALYSIS_WORK_SIDE)`,
network input and working copy), median of several, one thread, with the decoding-memory estimate of each.

HEVC has no reduced-scale decoding: the whole picture is decoded, where libjpeg decodes a large JPEG at 1/2,
1/4 or 1/8 scale. The photos are one painting of the demo catalogue resized to a phone's 12 megapixels,
saved as HEIC (pillow-heif, the test extra, quality 80) and as JPEG (quality 90).

    .venv/bin/python -m bench.heic_decode [--megapixels 12] [--repeats 5] [--output FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import pillow_heif
from PIL import Image

from services.encoder.images import open_image
from services.encoder.server import ANALYSIS_WORK_SIDE

ROOT = Path(__file__).resolve().parents[1]
MAX_PIXELS = 50_000_000


def phone_sized(painting: Path, megapixels: float) -> Image.Image:
    """The painting at a phone camera's 4:3 size of `megapixels`."""
    height = round((megapixels * 1e6 * 3 / 4) ** 0.5)
    return Image.open(painting).convert("RGB").resize((height * 4 // 3, height), Image.Resampling.BICUBIC)


def encoded(picture: Image.Image) -> dict[str, bytes]:
    heic, jpeg = io.BytesIO(), io.BytesIO()
    pillow_heif.from_pillow(picture).save(heic, quality=80)
    picture.save(jpeg, "JPEG", quality=90)
    return {"heic": heic.getvalue(), "jpeg": jpeg.getvalue()}


def decode_ms(data: bytes, repeats: int) -> tuple[float, int]:
    """Median milliseconds of the analysed decode, and its memory estimate (bytes)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        opened = open_image(data, size=224, max_pixels=MAX_PIXELS, work_side=ANALYSIS_WORK_SIDE)
        opened.decode_with_working_copy()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), opened.decode_bytes


def run(args: argparse.Namespace) -> dict[str, object]:
    picture = phone_sized(args.painting, args.megapixels)
    formats = {}
    for name, data in encoded(picture).items():
        median_ms, estimate = decode_ms(data, args.repeats)
        formats[name] = {
            "bytes": len(data),
            "decode_ms": round(median_ms, 1),
            "estimate_mb": round(estimate / 1e6, 1),
        }
    return {
        "what": "analysed decode of a phone-sized photo, HEIC vs the same photo as JPEG (median, 1 thread)",
        "size": list(picture.size),
        "repeats": args.repeats,
        "formats": formats,
        "heic_over_jpeg": round(formats["heic"]["decode_ms"] / formats["jpeg"]["decode_ms"], 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default_painting = ROOT / "data/catalogues/gcompris/hokusai-the-great-wave-off-kanagawa.jpg"
    parser.add_argument("--painting", type=Path, default=default_painting)
    parser.add_argument("--megapixels", type=float, default=12.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench/results/heic_decode.json")
    args = parser.parse_args(argv)
    result = run(args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["formats"]), f"HEIC / JPEG: {result['heic_over_jpeg']}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
