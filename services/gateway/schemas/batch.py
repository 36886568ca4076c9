"""The answer of POST /v1/search/batch: one search answer, or one error, per query, in request order."""

from typing import Any

from pydantic import Field

from services.gateway.errors import ErrorDetail
from services.gateway.schemas import ResponseModel, example
from services.gateway.schemas.search import SearchAnswer

_SEARCH_EXAMPLE: dict[str, Any] = SearchAnswer.model_config["json_schema_extra"]["examples"][0]  # type: ignore[index]
_FAILED = {
    "index": 1,
    "status": 400,
    "error": {"code": "invalid_image", "message": "the image could not be decoded"},
}


class BatchSearchItem(ResponseModel):
    """One query's outcome: its answer (status 200), or its error (the status it would have had alone)."""

    model_config = example({"index": 0, "status": 200, "answer": _SEARCH_EXAMPLE})
    index: int = Field(description="The query's position in the request (0 for the first)")
    status: int = Field(description="200 when answered; else the HTTP status of the query's error (4xx)")
    answer: SearchAnswer | None = Field(
        default=None,
        description="The query's answer, as POST /v1/search (or similar) gives it; absent on error",
    )
    error: ErrorDetail | None = Field(default=None, description="Why the query failed; absent when answered")


class BatchSearchAnswer(ResponseModel):
    """POST /v1/search/batch: each query's answer or error, in the order of the queries."""

    model_config = example(
        {
            "queries": 2,
            "answered": 1,
            "failed": 1,
            "results": [{"index": 0, "status": 200, "answer": _SEARCH_EXAMPLE}, _FAILED],
        }
    )
    queries: int = Field(description="Queries in the request")
    answered: int = Field(description="Queries answered (status 200)")
    failed: int = Field(description="Queries that failed on their own input (each with its error)")
    results: list[BatchSearchItem] = Field(description="One outcome per query, in request order")
