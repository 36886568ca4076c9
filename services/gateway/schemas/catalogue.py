"""The answers of the admin routes over the artwork catalogue (/v1/artworks, /v1/artworks/batch)."""

from typing import Literal

from pydantic import Field

from services.gateway.schemas import ResponseModel, example
from services.gateway.schemas.artworks import EXAMPLE_ARTWORK, StoredArtwork

_STORED = {**EXAMPLE_ARTWORK, "extra": {"added_by": "curator", "added_at": "2025-01-01T12:00:00+00:00"}}
_DEGRADED_DOC = (
    'Best-effort steps that failed: "influence" when the artist could not be added to the influence graph '
    "(the artwork is stored)"
)


class ArtworkPage(ResponseModel):
    """GET /v1/artworks: one page of the catalogue in storage order."""

    model_config = example({"artworks": [_STORED], "next_cursor": "eyJvZmZzZXQiOiA1MH0", "limit": 50})
    artworks: list[StoredArtwork] = Field(description="This page's artwork records")
    next_cursor: str | None = Field(description="The `cursor` of the next page; null after the last")
    limit: int = Field(description="Artworks per page asked for")


class ArtworkChange(ResponseModel):
    """POST /v1/artworks (201) and PATCH /v1/artworks/{artwork_id}: the artwork as now stored."""

    model_config = example({"artwork": _STORED, "degraded": []})
    artwork: StoredArtwork = Field(description="The record as stored")
    degraded: list[str] = Field(description=_DEGRADED_DOC)


class BatchItem(ResponseModel):
    """What became of one uploaded image (or of a metadata entry no image matched)."""

    filename: str | None = Field(description="The upload's file name (null when it had none)")
    status: Literal["added", "rejected"] = Field(description="Whether the artwork was added")
    reason: str | None = Field(default=None, description="Rejected only: why")
    artwork: StoredArtwork | None = Field(default=None, description="Added only: the record as stored")


class BatchAnswer(ResponseModel):
    """POST /v1/artworks/batch: each artwork added or rejected with its reason, on its own."""

    model_config = example(
        {
            "added": 1,
            "rejected": 1,
            "results": [
                {"filename": "night-cafe.jpg", "status": "added", "artwork": _STORED},
                {"filename": "notes.txt", "status": "rejected", "reason": "not a picture"},
            ],
            "degraded": [],
        }
    )
    added: int = Field(description="Artworks added")
    rejected: int = Field(description="Uploads or metadata entries rejected")
    results: list[BatchItem] = Field(description="One per upload, in upload order, then unmatched entries")
    degraded: list[str] = Field(description=_DEGRADED_DOC)
