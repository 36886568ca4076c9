"""Schema-driven fuzzing of the whole HTTP API: schemathesis reads the gateway's /openapi.json and sends
generated requests (valid and invalid) to every operation of a real stack (four processes, the demo
catalogue ingested), with an admin API key so write routes are exercised past their key check.

Checks: no 5xx; every answer's status is one the schema declares for its operation (errors included: each
route declares the statuses it can answer), its content type and body match the declaration (errors: the
shared ErrorBody, {"error": {"code", "message"}}), and declared headers are there (Retry-After on 429 and
503). Afterwards every process is still running and the stack is ready. Bounded and reproducible:
MAX_EXAMPLES per operation, derandomized (the same requests on every run), no example database."""

from __future__ import annotations

import hashlib
import io
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.core.file_samples import FILE_SAMPLES
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from stack_support import catalogue_stack

from artsearch.config import Env
from artsearch_tools.catalogue.folder import load_catalogue
from artsearch_tools.launcher import ServiceStack
from services.gateway.app import create_app
from services.gateway.config import GatewayConfig

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 30
REQUEST_TIMEOUT_S = 30
ADMIN_KEY = "fuzzing-admin-key-not-a-secret-0123456789"
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stack(
    model_path: Path, gcompris_catalogue: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceStack]:
    catalogue = load_catalogue(gcompris_catalogue)
    state_dir = tmp_path_factory.mktemp("fuzz")
    image_root = state_dir / "images"  # admin uploads are written here: a copy keeps the repo clean
    (image_root / catalogue.name).mkdir(parents=True)
    for entry in catalogue.entries:
        target = image_root / catalogue.name / entry.filename
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((catalogue.root / entry.filename).read_bytes())
    extra_env = {
        "ADMIN_API_KEYS": f"fuzzer:{hashlib.sha256(ADMIN_KEY.encode()).hexdigest()}",
        # The fuzzer is one client sending hundreds of writes: the rate limit is not under test here.
        "ADMIN_RATE_LIMIT_PER_MIN": "1000000",
        "ADMIN_RATE_LIMIT_BURST": "100000",
    }
    with catalogue_stack(model_path, catalogue, state_dir, extra_env, image_root) as running:
        CATALOGUE_IDS[:] = sorted(entry.id for entry in catalogue.entries)
        yield running


def gateway_openapi() -> dict:
    """The gateway's OpenAPI document, built in-process so that pytest can make one test per operation
    at collection time (the stack starts later); the first test checks that the running gateway
    serves the same document."""
    addresses = {name: "127.0.0.1:1" for name in ("ENCODER_ADDR", "SEARCH_ADDR", "INFLUENCE_ADDR")}
    return create_app(GatewayConfig.from_env(Env(addresses))).openapi()


OPENAPI = gateway_openapi()
schema = schemathesis.openapi.from_dict(OPENAPI)
# Ids of the ingested artworks, filled in by the `stack` fixture before any request is generated.
CATALOGUE_IDS: list[str] = []


def real_pictures(catalogue_dir: Path) -> list[bytes]:
    """A few catalogue paintings, small, as JPEG, PNG and WebP: uploads that get past image checks."""
    pictures = []
    for path, kind in zip(sorted(catalogue_dir.rglob("*.jpg"))[:3], ("JPEG", "PNG", "WEBP"), strict=False):
        with Image.open(path) as image:
            image.thumbnail((160, 160))
            out = io.BytesIO()
            image.convert("RGB").save(out, kind)
            pictures.append(out.getvalue())
    return pictures


def register_picture_strategy() -> None:
    """Binary fields (the uploaded pictures) get real paintings half of the time, besides schemathesis's
    own samples and random bytes, so the search paths behind the image checks are fuzzed too."""
    catalogue_dir = Path(os.environ.get("ARTSEARCH_GCOMPRIS_DIR", REPO_ROOT / "data/catalogues/gcompris"))
    pictures = real_pictures(catalogue_dir) if catalogue_dir.is_dir() else []
    if pictures:
        default = st.one_of(st.sampled_from(list(FILE_SAMPLES.values())), st.binary(max_size=4096))
        schemathesis.openapi.format("binary", st.one_of(st.sampled_from(pictures), default))


register_picture_strategy()


@schema.hook
def map_path_parameters(context: object, path_parameters: dict[str, Any] | None) -> dict[str, Any] | None:
    """Half of the generated artwork ids become ids that exist, so the routes get past their 404."""
    generated = (path_parameters or {}).get("artwork_id")
    if isinstance(generated, str) and CATALOGUE_IDS and zlib.crc32(generated.encode()) % 2 == 0:
        chosen = CATALOGUE_IDS[zlib.crc32(generated.encode()) % len(CATALOGUE_IDS)]
        return {**path_parameters, "artwork_id": chosen}
    return path_parameters


def test_the_running_gateway_serves_the_fuzzed_schema(stack: ServiceStack) -> None:
    served = httpx.get(f"{stack.settings.gateway_url}/openapi.json", timeout=10).json()
    assert served == OPENAPI


CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_answer_matches_the_schema(
    case: schemathesis.Case, stack: ServiceStack
) -> None:
    case.call_and_validate(
        base_url=stack.settings.gateway_url,
        headers={"X-API-Key": ADMIN_KEY},
        checks=[not_a_server_error, *CONFORMANCE],
        timeout=REQUEST_TIMEOUT_S,
    )


def test_answers_given_before_a_route_runs_match_the_schema_too(stack: ServiceStack) -> None:
    """The fuzzer sends a valid key and small bodies; these are the middlewares' answers: 401 for every
    key-guarded operation without a key or with a wrong one, 413 for a body over the upload limit."""
    guarded = [
        (path, method.upper())
        for path, operations in OPENAPI["paths"].items()
        for method, operation in operations.items()
        if "401" in operation["responses"]
    ]
    assert len(guarded) >= 7
    for path, method in guarded:
        parameters = {"artwork_id": "x"} if "{artwork_id}" in path else None
        case = schema[path][method].Case(path_parameters=parameters)
        for headers in ({}, {"X-API-Key": "wrong"}):
            response = case.call(
                base_url=stack.settings.gateway_url, headers=headers, timeout=REQUEST_TIMEOUT_S
            )
            assert response.status_code == 401, (method, path, response.text)
            case.validate_response(response, checks=CONFORMANCE)
    too_large = b"\0" * (20 * 1024 * 1024 + 64 * 1024 + 1)  # MAX_UPLOAD_BYTES (default) + margin + 1
    for path in ("/v1/search", "/v1/predict-style"):
        response = httpx.post(
            f"{stack.settings.gateway_url}{path}",
            content=too_large,
            headers={"Content-Type": "multipart/form-data; boundary=x"},
            timeout=REQUEST_TIMEOUT_S,
        )
        assert response.status_code == 413, response.text
        schema[path]["POST"].Case().validate_response(response, checks=CONFORMANCE)


def test_every_service_is_still_up_after_fuzzing(stack: ServiceStack) -> None:
    for service, process in stack.processes.items():
        assert process.poll() is None, f"{service} exited\n{stack.log_tail(service)}"
    with httpx.Client(base_url=stack.settings.gateway_url, timeout=10) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.get("/readyz").status_code == 200
