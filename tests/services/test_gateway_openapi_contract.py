"""The gateway's OpenAPI document as the contract of its answers (issue 15): every 2xx answer of every route
has a schema (a response model, or a declared non-JSON media type), every response model has descriptions
and an example that is itself a valid answer, and the real answers of every route, from the real encoder,
search and influence services in-process over a few demo-catalogue paintings, are exactly what their
declared model describes: field for field, so a field renamed, added or dropped without the model fails.

`AnswerContract` is also hooked into the search API tests' client (test_gateway_api.py), so every 2xx
answer those tests get (search variants, filters, URL bodies, photos) is held to its model too."""

from __future__ import annotations

import copy
import hashlib
import io
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from gateway_support import (
    catalogue_subset,
    gateway_client,
    gateway_config,
    ingested_services,
)
from PIL import Image
from pydantic import BaseModel, ValidationError
from starlette.routing import Match

from artsearch_tools.catalogue.folder import Catalogue
from services.gateway.app import create_app
from services.gateway.schemas.search import SearchAnswer

pytestmark = pytest.mark.slow

IDS = ["van-gogh-bedroom-in-arles", "van-gogh-cafe-terrace-at-night", "hokusai-the-great-wave-off-kanagawa",
       "hokusai-poppies", "gauguin-arearea", "degas-the-dance-class"]  # fmt: skip
BEDROOM = IDS[0]
KEY = "openapi-contract-key"
AUTH = {"X-API-Key": KEY}


# --- the contract check ---------------------------------------------------------------------------------
class ContractError(AssertionError):
    pass


def differences(expected: Any, got: Any, where: str = "") -> list[str]:
    """Where two JSON values differ (key paths), for a readable failure."""
    if isinstance(expected, dict) and isinstance(got, dict):
        found = [f"{where}.{k}: only in the answer" for k in got.keys() - expected.keys()]
        found += [f"{where}.{k}: only in the model's reading" for k in expected.keys() - got.keys()]
        for key in expected.keys() & got.keys():
            found += differences(expected[key], got[key], f"{where}.{key}")
        return found
    if isinstance(expected, list) and isinstance(got, list) and len(expected) == len(got):
        return [
            d
            for i, (e, g) in enumerate(zip(expected, got, strict=True))
            for d in differences(e, g, f"{where}[{i}]")
        ]
    return [] if expected == got else [f"{where}: {got!r} read as {expected!r}"]


def check_against(model: type[BaseModel], body: Any) -> None:
    """`body` is exactly an instance of `model`: it validates (types, required fields) and the model reads
    back every field of it and nothing else (a field the model does not declare is dropped by the reading,
    a declared field the answer lacks is missing from it, so either shows as a difference)."""
    try:
        parsed = model.model_validate(body)
    except ValidationError as error:
        raise ContractError(f"answer is not a {model.__name__}: {error}") from None
    read_back = parsed.model_dump(mode="json", exclude_unset=True)
    if problems := differences(read_back, body):
        raise ContractError(f"answer differs from its model {model.__name__}: {problems[:10]}")


def _declared_model(route: APIRoute, status: int) -> type[BaseModel] | None:
    declared = route.responses.get(status, {}).get("model")
    if declared is None and status == (route.status_code or 200):
        declared = route.response_model
    return declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None


def _declared_media_types(spec: dict[str, Any], route: APIRoute, method: str, status: int) -> set[str]:
    operation = spec["paths"][route.path_format][method.lower()]
    return set(operation["responses"].get(str(status), {}).get("content", {}))


class AnswerContract:
    """An httpx response hook: every 2xx answer of a documented route is checked against what
    /openapi.json declares for its status (a JSON answer against its response model, exactly; any other
    answer's content type against the declared media types). Records the operations it checked."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.spec = app.openapi()
        self.checked: dict[str, int] = {}

    def route_of(self, method: str, path: str) -> APIRoute | None:
        scope = {"type": "http", "path": path, "method": method}
        for route in self.app.routes:
            if (
                isinstance(route, APIRoute)
                and route.include_in_schema
                and route.matches(scope)[0] == Match.FULL
            ):
                return route
        return None

    async def __call__(self, response: httpx.Response) -> None:
        if not 200 <= response.status_code < 300 or response.status_code == 204:
            return
        route = self.route_of(response.request.method, response.request.url.path)
        if route is None:  # /openapi.json, /docs, /metrics, the web UI: not operations of the API
            return
        await response.aread()
        media_type = response.headers.get("content-type", "").split(";")[0].strip()
        declared = _declared_media_types(self.spec, route, response.request.method, response.status_code)
        if media_type not in declared:
            raise ContractError(f"{route.name}: answered {media_type!r}, declared {sorted(declared)}")
        if media_type == "application/json":
            model = _declared_model(route, response.status_code)
            if model is None:
                raise ContractError(f"{route.name}: no response model for {response.status_code}")
            check_against(model, response.json())
        self.checked[route.name] = self.checked.get(route.name, 0) + 1


def contract_client(http: httpx.AsyncClient, app: FastAPI) -> AnswerContract:
    """Hooks an AnswerContract of `app` into `http`; returns it (its `checked` says what it saw)."""
    contract = AnswerContract(app)
    http.event_hooks["response"].append(contract)
    return contract


# --- the document ---------------------------------------------------------------------------------------


def _openapi_of_a_bare_gateway() -> dict[str, Any]:
    """/openapi.json needs no running service: the document of a gateway configured with every feature."""
    config = gateway_config(
        {"ENCODER_ADDR": "127.0.0.1:1", "SEARCH_ADDR": "127.0.0.1:1", "INFLUENCE_ADDR": "127.0.0.1:1"}
    )
    return create_app(config).openapi()


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def _success_answers(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (f"{method.upper()} {path}", status, response)
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        for status, response in operation["responses"].items()
        if status.startswith("2")
    ]


def test_every_success_answer_has_a_schema_or_a_media_type():
    spec = _openapi_of_a_bare_gateway()
    answers = _success_answers(spec)
    assert len(answers) >= 22  # every operation answers some 2xx
    for operation, status, response in answers:
        assert response["description"] != "Successful Response", f"{operation} {status}: say what it is"
        content = response.get("content", {})
        if status == "204":
            assert not content, operation  # No Content
            continue
        assert content, f"{operation} {status}: no media type declared"
        for media_type, body in content.items():
            schema = body.get("schema", {})
            if media_type == "application/json":
                assert "$ref" in schema, f"{operation} {status}: JSON answer without a response model"
                assert body.get("example"), f"{operation} {status}: no example"
            else:
                assert media_type.startswith("image/"), (operation, media_type)
                assert schema == {"type": "string", "format": "binary"}, (operation, media_type)


def _response_components(spec: dict[str, Any]) -> set[str]:
    """Names of the component schemas reachable from the 2xx answers."""
    names: set[str] = set()
    pending = [
        body.get("schema", {})
        for _, _, response in _success_answers(spec)
        for body in response.get("content", {}).values()
    ]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if (ref := node.get("$ref")) and (name := ref.rsplit("/", 1)[-1]) not in names:
                names.add(name)
                pending.append(spec["components"]["schemas"][name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return names


def test_every_response_model_describes_its_fields():
    spec = _openapi_of_a_bare_gateway()
    names = _response_components(spec)
    assert {"SearchAnswer", "SearchResult", "Scores", "StyleAnswer", "Artwork", "ArtworkPage", "BatchAnswer",
            "ArtistPath", "ClusterList", "EvaluationPictures", "Health", "Readiness"} <= names  # fmt: skip
    for name in names:
        for field, schema in spec["components"]["schemas"][name].get("properties", {}).items():
            assert schema.get("description"), f"{name}.{field} has no description"


def _models_declared(app: FastAPI) -> set[type[BaseModel]]:
    """Every response model of the app's routes, and the models inside them."""
    found: set[type[BaseModel]] = set()
    pending = [
        model
        for route in app.routes
        if isinstance(route, APIRoute)
        for model in [route.response_model, *(r.get("model") for r in route.responses.values())]
        if isinstance(model, type) and issubclass(model, BaseModel)
    ]
    while pending:
        model = pending.pop()
        if model in found or model.__module__.startswith("services.gateway.errors"):
            continue
        found.add(model)
        for field in model.model_fields.values():
            pending += [t for t in _model_types(field.annotation) if t not in found]
    return found


def _model_types(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [t for arg in getattr(annotation, "__args__", ()) for t in _model_types(arg)]


def test_every_example_is_a_valid_answer():
    """The examples /docs shows are answers the models describe exactly; every top-level model has one."""
    app = create_app(
        gateway_config(
            {"ENCODER_ADDR": "127.0.0.1:1", "SEARCH_ADDR": "127.0.0.1:1", "INFLUENCE_ADDR": "127.0.0.1:1"}
        )
    )
    models = _models_declared(app)
    top_level = {
        m
        for route in app.routes
        if isinstance(route, APIRoute)
        for m in [_declared_model(route, route.status_code or 200)]
        if m
    }
    assert len(top_level) >= 14
    for model in models:
        examples = (model.model_config.get("json_schema_extra") or {}).get("examples", [])
        assert examples or model not in top_level, f"{model.__name__} has no example"
        for value in examples:
            check_against(model, value)


def test_the_check_fails_on_a_renamed_added_or_missing_field():
    """The contract check is strict: an answer that drifts from its model in any way fails it."""
    answer = SearchAnswer.model_json_schema()["examples"][0]
    check_against(SearchAnswer, answer)
    renamed = copy.deepcopy(answer)
    renamed["results"][0]["name"] = renamed["results"][0].pop("title")
    added = copy.deepcopy(answer) | {"next_page": "abc"}
    missing = copy.deepcopy(answer)
    del missing["results"][0]["scores"]["final"]
    retyped = copy.deepcopy(answer)
    retyped["source_artist"]["how"] = "guessed"
    for drifted in (renamed, added, missing, retyped):
        with pytest.raises(ContractError):
            check_against(SearchAnswer, drifted)
    with_new_aspect = copy.deepcopy(answer)  # the scores carry one similarity per aspect of the layout
    with_new_aspect["results"][0]["scores"]["texture"] = 0.5
    check_against(SearchAnswer, with_new_aspect)


# --- real answers of every route ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalogue(gcompris_catalogue: Path) -> Catalogue:
    return catalogue_subset(gcompris_catalogue, IDS)


def _picture(colour: tuple[int, int, int], fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 72), colour).save(buffer, fmt)
    return buffer.getvalue()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    model_path: Path, catalogue: Catalogue, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[httpx.AsyncClient, AnswerContract]]:
    """The gateway over the three real services, the paintings ingested, with an admin key, an image root
    and an evaluation folder holding one PNG; its client checks every 2xx answer against the contract."""
    folder = tmp_path_factory.mktemp("openapi")
    evaluation = folder / "evaluation"
    evaluation.mkdir()
    (evaluation / "pr_curves.png").write_bytes(_picture((20, 40, 60)))
    images = folder / "images" / catalogue.name  # IMAGE_ROOT/<catalogue>/<image_uri>
    images.mkdir(parents=True)
    for entry in catalogue.entries:
        (images / entry.filename).write_bytes(catalogue.path_of(entry).read_bytes())
    async with ingested_services(model_path, catalogue, folder) as addresses:
        config = gateway_config(
            addresses,
            ADMIN_API_KEYS=f"curator:{hashlib.sha256(KEY.encode()).hexdigest()}",
            IMAGE_ROOT=str(folder / "images"),
            EVALUATION_DIR=str(evaluation),
        )
        app = create_app(config)
        async with gateway_client(app) as http:
            yield http, contract_client(http, app)


def ok(reply: httpx.Response, status: int = 200) -> Any:
    assert reply.status_code == status, reply.text
    return reply.json() if reply.headers.get("content-type", "").startswith("application/json") else None


async def test_the_real_answers_of_every_route_are_their_declared_models(gateway, catalogue):
    http, contract = gateway
    image = catalogue.path_of(next(e for e in catalogue.entries if e.id == BEDROOM)).read_bytes()
    files = {"image": ("query.jpg", image, "image/jpeg")}
    ok(await http.get("/healthz"))
    ok(await http.get("/readyz"))
    photo = ok(await http.post("/v1/search", params={"k": 3}, files=files))
    assert photo["query"]["locate"] == "auto"  # the photo's analysis, absent from the next two
    ok(await http.get("/v1/search", params={"cursor": photo["next_cursor"]}))  # its page 2
    batch = ok(
        await http.post(
            "/v1/search/batch",
            params={"k": 2},
            files=[("image", ("a.jpg", image)), ("image", ("b.txt", b"text"))],
        )
    )
    assert [item["status"] for item in batch["results"]] == [200, 415]  # an answer and an error, both checked
    plain = ok(
        await http.post(
            "/v1/search",
            params={"k": 3, "locate": "off", "grey": "off", "source_artist": "Hokusai"},
            files=files,
        )
    )
    assert "query" not in plain and plain["source_artist"]["how"] == "explicit"
    assert "query" not in ok(await http.get(f"/v1/artworks/{BEDROOM}/similar", params={"k": 3}))
    ok(await http.get(f"/v1/artworks/{BEDROOM}"))
    ok(await http.post("/v1/predict-style", files=files))
    ok(await http.get(f"/v1/artworks/{BEDROOM}/image"))
    ok(await http.get(f"/v1/artworks/{BEDROOM}/thumbnail"))
    ok(await http.get("/v1/clusters", params={"n": 2}))
    ok(await http.get("/v1/clusters/0", params={"n": 2, "limit": 2}))
    ok(await http.get("/v1/evaluation/pictures"))
    ok(await http.get("/v1/evaluation/pictures/pr_curves.png"))

    await _admin_answers(http)
    await _artist_answers(http)

    json_operations = {
        route.name
        for route in contract.app.routes
        if isinstance(route, APIRoute) and route.include_in_schema and route.status_code != 204
    }
    assert json_operations - contract.checked.keys() == set(), "routes whose real answer was not checked"


async def _admin_answers(http: httpx.AsyncClient) -> None:
    metadata = [
        {"filename": "blue.png", "id": "contract-blue", "title": "Blue"},
        {"filename": "gone.png", "title": "Gone"},
    ]
    added = ok(
        await http.post(
            "/v1/artworks",
            headers=AUTH,
            data={
                "id": "contract-red",
                "title": "Red",
                "artist": "Contract Painter",
                "year": "1901",
                "extra": '{"museum": "Here"}',
            },
            files={"image": ("red.png", _picture((200, 30, 30)), "image/png")},
        ),
        201,
    )
    assert added["artwork"]["extra"]["museum"] == "Here"
    batch = ok(
        await http.post(
            "/v1/artworks/batch",
            headers=AUTH,
            data={"metadata": json.dumps(metadata)},
            files=[("images", ("blue.png", _picture((30, 30, 200)), "image/png"))],
        )
    )
    assert [r["status"] for r in batch["results"]] == ["added", "rejected"]
    ok(await http.patch("/v1/artworks/contract-red", headers=AUTH, json={"title": "Crimson", "genre": None}))
    ok(await http.patch("/v1/artworks/contract-red", headers=AUTH, json={"extra": {}}))  # nothing to change
    page = ok(await http.get("/v1/artworks", headers=AUTH, params={"limit": 3}))
    assert page["next_cursor"]
    ok(await http.delete("/v1/artworks/contract-blue", headers=AUTH), 204)


async def _artist_answers(http: httpx.AsyncClient) -> None:
    ok(
        await http.post(
            "/v1/artists",
            headers=AUTH,
            json={
                "artists": [
                    {"name": "Contract Master", "birth_year": 1850, "movement": "Realism"},
                    {"name": "Contract Loner"},
                ]
            },
        )
    )
    ok(
        await http.post(
            "/v1/influences",
            headers=AUTH,
            json={
                "influences": [
                    {
                        "influencer": "Contract Master",
                        "influenced": "Contract Pupil",
                        "relation": "teacher",
                        "source": "a letter",
                    }
                ]
            },
        )
    )
    ok(await http.get("/v1/artists", params={"prefix": "contract", "limit": 1}))
    path = ok(await http.get("/v1/artists/path", params={"from": "Contract Master", "to": "Contract Pupil"}))
    assert path["found"] and path["hops"] == 1
    unconnected = ok(
        await http.get("/v1/artists/path", params={"from": "Contract Master", "to": "Contract Loner"})
    )
    assert not unconnected["found"] and unconnected["hops"] is None
    neighbours = ok(await http.get("/v1/artists/Contract Pupil/neighbours"))
    assert neighbours["influencers"][0]["relation"] == "teacher"
