"""bench/heic_decode.py in miniature (the measurement itself is a benchmark run): both formats decoded, the
result file written with the keys docs/gateway.md quotes."""

from __future__ import annotations

import json
from pathlib import Path

from bench.heic_decode import main


def test_the_bench_decodes_both_formats_and_writes_its_result(tmp_path: Path, gcompris_catalogue: Path):
    output = tmp_path / "heic_decode.json"
    painting = sorted(gcompris_catalogue.glob("*.jpg"))[0]
    arguments = [
        "--painting",
        str(painting),
        "--megapixels",
        "0.3",
        "--repeats",
        "1",
        "--output",
        str(output),
    ]
    assert main(arguments) == 0
    result = json.loads(output.read_text())
    width, height = result["size"]
    assert abs(width * height - 300_000) < 2_000 and width * 3 == height * 4
    heic, jpeg = result["formats"]["heic"], result["formats"]["jpeg"]
    assert heic["decode_ms"] > 0 and jpeg["decode_ms"] > 0 and result["heic_over_jpeg"] > 0
    # libheif's buffers besides Pillow's picture: at least 8 bytes a pixel in the estimate.
    assert heic["estimate_mb"] * 1e6 >= 8 * width * height
