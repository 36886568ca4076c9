"""The encoder image carries the int8 model version beside fp32
(artsearch_tools/model_export/quantize_onnx.py): one setting, MODEL_PATH, serves it,
and a catalogue ingested under it is searched with it end to end."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from image_support import Stack, StackOptions, running_stack
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("images")]

INT8_MODEL_PATH = "/models/efficientnet-lite0-int8/model.onnx"


@pytest.fixture(scope="module")
def stack(catalogues: Path) -> Iterator[Stack]:
    options = StackOptions(extra_env={"encoder": {"MODEL_PATH": INT8_MODEL_PATH}})
    with running_stack(catalogues, options) as running:
        yield running


def visitor_photo(path: Path) -> bytes:
    """A crop of the painting, smaller and re-encoded: not the ingested file."""
    with Image.open(path) as opened:
        picture = opened.convert("RGB")
    width, height = picture.size
    picture = picture.crop((width // 8, height // 8, width, height)).resize((width // 2, height // 2))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=75)
    return out.getvalue()


def test_the_int8_model_serves_and_finds_the_painting_through_the_gateway(
    stack: Stack, catalogues: Path, int8_model_path: Path
):
    version = json.loads(int8_model_path.with_name("model.json").read_text())["version"]
    painting = catalogues / "gcompris" / "hokusai-the-great-wave-off-kanagawa.jpg"
    reply = httpx.post(
        f"{stack.gateway_url}/v1/search",
        params={"k": 5},
        files={"image": visitor_photo(painting)},
        timeout=30,
    )
    assert reply.status_code == 200, reply.text
    answer = reply.json()
    assert answer["results"][0]["id"] == "hokusai-the-great-wave-off-kanagawa"
    assert answer["model"]["version"].startswith(version + "-")
    assert not answer.get("degraded")
