"""The gateway's response models: the schema of every JSON answer in /openapi.json, one module per resource.

They document the answers; no handler builds or re-validates them per request. The handlers build their
JSON as before and return a JSONResponse, and the model is declared on the route (`response_model`, which
FastAPI only documents when the handler returns a Response; the hot routes, search, similar and
predict-style, through `responses={200: {"model": ...}}`), so the contract costs nothing at run time.
tests/services/test_gateway_openapi_contract.py holds real answers of every route to their declared model
(field for field: nothing added, renamed or missing) and every model to its example."""

from typing import Any

from pydantic import BaseModel, ConfigDict


class ResponseModel(BaseModel):
    """A response body. Undeclared fields are ignored when validating, so a client built on this schema keeps
    working when an answer gains a field (contracts are extended, never renamed); the contract test compares
    real answers field for field."""

    model_config = ConfigDict(extra="ignore")


def example(value: dict[str, Any]) -> ConfigDict:
    """A model's configuration with `value` as its OpenAPI example (checked against the model by a test)."""
    return ConfigDict(extra="ignore", json_schema_extra={"examples": [value]})


def with_answer_examples(spec: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with each 2xx JSON answer's example beside its schema (the media type's
    `example`, which /docs shows with the answer): its response model's first example."""
    components = spec.get("components", {}).get("schemas", {})
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                body = response.get("content", {}).get("application/json")
                if not status.startswith("2") or body is None or "example" in body:
                    continue
                model = components.get(body.get("schema", {}).get("$ref", "").rsplit("/", 1)[-1], {})
                if model.get("examples"):
                    body["example"] = model["examples"][0]
    return spec
