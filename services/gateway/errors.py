"""A client-facing failure: raised anywhere on a request path, answered as {"error": {"code", "message"}};
and that answer's OpenAPI declaration, shared by every route (`error_responses`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import grpc
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field


class ApiError(Exception):
    """An HTTP error with a stable machine-readable `code` and a `message` naming the problem."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The answer for an error: {"error": {"code", "message"}} with that status."""
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status, headers=headers)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "too_large", "message": "..."}]})
    code: str = Field(description="Stable machine-readable reason, e.g. invalid_request, too_large")
    message: str = Field(description="What was wrong, for people")


class ErrorBody(BaseModel):
    """The body of every error answer of the gateway."""

    error: ErrorDetail


# What each status means on this API; a route may say more precisely (error_responses' `notes`).
ERROR_STATUSES: dict[int, str] = {
    400: "Bad input: an unreadable image, invalid metadata or parameter value",
    401: "No admin API key, or an unknown one (X-API-Key or Authorization: Bearer)",
    403: "The admin API is disabled: no ADMIN_API_KEYS are configured",
    404: "Not found",
    409: "Already exists",
    410: "Gone: what the request refers to is no longer kept",
    413: "Request body or image too large (bytes or pixels)",
    415: "Unsupported media type or image format",
    422: "Invalid request: a parameter or body field is missing, malformed or out of bounds",
    429: "Too many requests: retry after Retry-After seconds",
    503: "A required service is unavailable: retry after Retry-After seconds",
}
# gRPC failures of a downstream service, as the HTTP status the client should see (502 for any other).
HTTP_STATUS_FOR_GRPC = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}
# Every error answer with one of these statuses carries Retry-After (whole seconds).
RETRY_STATUSES = frozenset({429, 503})
RETRY_AFTER_S = "2"  # when nothing more precise is known (a downstream service is unavailable or busy)
_RETRY_AFTER_HEADER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying",
        "required": True,
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
}
_ERROR_BODY_REF = "#/components/schemas/ErrorBody"
_FASTAPI_VALIDATION_REF = "#/components/schemas/HTTPValidationError"
# The statuses every admin-guarded route may answer before its own work starts.
ADMIN_STATUSES = (401, 403, 429)


def error_responses(
    *statuses: int, notes: Mapping[int, str] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for these error statuses: each the ErrorBody schema (Retry-After on 429/503)."""
    notes = notes or {}
    return {status: error_doc(status, notes.get(status)) for status in sorted(set(statuses))}


def error_doc(
    status: int, description: str | None = None, example: tuple[str, str] | None = None
) -> dict[str, Any]:
    """One error status's OpenAPI response: the ErrorBody schema, an example (code, message) when given,
    and Retry-After on 429/503."""
    response: dict[str, Any] = {"model": ErrorBody, "description": description or ERROR_STATUSES[status]}
    if example is not None:
        code, message = example
        response["content"] = {"application/json": {"example": {"error": {"code": code, "message": message}}}}
    if status in RETRY_STATUSES:
        response["headers"] = _RETRY_AFTER_HEADER
    return response


def with_error_body(openapi: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with FastAPI's default 422 (HTTPValidationError, which this API never answers:
    its handler answers ErrorBody `invalid_request`) replaced by ErrorBody wherever a route declared no
    422 of its own, and Retry-After declared on every error answer with a 429 or 503 status."""
    schemas = openapi.setdefault("components", {}).setdefault("schemas", {})
    for path_item in openapi.get("paths", {}).values():
        for operation in path_item.values():
            for status, response in operation.get("responses", {}).items():
                _conform(status, response)
    if _FASTAPI_VALIDATION_REF not in json.dumps(openapi):
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
    if "ErrorBody" not in schemas:
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas |= body.pop("$defs", {}) | {"ErrorBody": body}
    return openapi


def _conform(status: str, response: dict[str, Any]) -> None:
    media = response.get("content", {}).get("application/json", {})
    schema = media.get("schema", {})
    if schema.get("$ref") == _FASTAPI_VALIDATION_REF:
        media["schema"] = {"$ref": _ERROR_BODY_REF}
        response["description"] = ERROR_STATUSES[422]
        schema = media["schema"]
    is_error_body = schema.get("$ref") == _ERROR_BODY_REF or "error" in schema.get("properties", {})
    if status.isdigit() and int(status) in RETRY_STATUSES and is_error_body:
        response["headers"] = {**_RETRY_AFTER_HEADER, **response.get("headers", {})}
