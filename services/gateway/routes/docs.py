"""OpenAPI fragments several route modules share: answer models, error lists, parameter descriptions."""

from typing import Annotated

from fastapi import Path

from services.gateway.errors import error_responses
from services.gateway.schemas.search import SearchAnswer

# The OpenAPI schema of a file answer: its bytes.
BINARY = {"type": "string", "format": "binary"}
ARTWORK_ID = Annotated[str, Path(min_length=1, max_length=256, description="Artwork id")]
CURSOR_DOC = (
    "The next_cursor of a previous answer: its next page of the same ranked result (kept SEARCH_CURSOR_TTL_S "
    "seconds; the other search parameters are not read). 410 cursor_expired when no longer kept"
)

# The hot routes declare their answer's model here rather than as response_model, so that nobody is
# tempted to return the dict and have FastAPI re-validate ~25 results per query (issue 16 counts the
# gateway's CPU per query): the handlers send the JSON they build, and the model is documentation that
# tests/services/test_gateway_openapi_contract.py holds to the real answers.
SEARCH_ANSWER = {"model": SearchAnswer, "description": "Related artworks, best first, each explained"}
IMAGE_ROUTE_ERRORS = error_responses(
    400,
    413,
    415,
    422,
    429,
    503,
    notes={
        400: "Bad image (empty, unreadable) or an image URL that is refused or cannot be fetched",
        413: "Request body or image too large (bytes or pixels)",
        415: "Not multipart/form-data nor JSON, or not an image in an accepted format",
        429: "This client is over its rate or concurrency limit (rate_limited), or the encoder is busy "
        "(encoder_busy): retry after Retry-After seconds",
    },
)
STORED_ROUTE_ERRORS = error_responses(404, 422, 503, notes={404: "Unknown artwork"})
CURSOR_ERRORS = error_responses(
    400,
    410,
    422,
    notes={
        400: "A malformed cursor, or one of another query (invalid_cursor)",
        410: "The cursor's result is no longer kept: expired, or the catalogue changed (cursor_expired); "
        "search again",
    },
)
