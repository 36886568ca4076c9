"""The catalogue's admin routes: GET/POST /v1/artworks, POST /v1/artworks/batch, PATCH/DELETE
/v1/artworks/{artwork_id}; all need an admin key (the `require_admin` dependency, which admin.py's middleware
also checks before a body is read)."""

from typing import Annotated

from fastapi import Depends, File, Form, Query, Request, UploadFile
from fastapi.responses import JSONResponse, Response

from services.gateway import catalogue_admin
from services.gateway.admin import require_admin
from services.gateway.admin_calls import Services
from services.gateway.catalogue_admin import (
    BATCH_ROUTE,
    MAX_CURSOR_CHARS,
    MAX_LIST_LIMIT,
    ArtworkPatch,
    upload_limits,
)
from services.gateway.errors import ADMIN_STATUSES, error_responses
from services.gateway.routes import api_router
from services.gateway.schemas.catalogue import ArtworkChange, ArtworkPage, BatchAnswer

router = api_router(tags=["admin"])
Admin = Annotated[str, Depends(require_admin)]


@router.get(
    "/v1/artworks",
    response_model=ArtworkPage,
    response_description="One page of artworks",
    responses=error_responses(*ADMIN_STATUSES, 400, 422, 503),
)
async def list_artworks(
    request: Request,
    _: Admin,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT, description="Artworks per page")] = 50,
    cursor: Annotated[
        str, Query(max_length=MAX_CURSOR_CHARS, description="The previous page's next_cursor")
    ] = "",
) -> JSONResponse:
    """Every artwork of the catalogue, page by page in storage order (needs an admin key)."""
    return JSONResponse(await catalogue_admin.artwork_page(Services(request), limit, cursor))


@router.post(
    "/v1/artworks",
    status_code=201,
    response_model=ArtworkChange,
    response_description="Added: the artwork as stored",
    responses=error_responses(*ADMIN_STATUSES, 400, 409, 413, 415, 422, 503),
)
async def add_artwork(
    request: Request,
    owner: Admin,
    image: Annotated[UploadFile, File(description="The artwork picture (JPEG, PNG, WebP, ...)")],
    title: Annotated[str, Form(max_length=500)],
    artwork_id: Annotated[
        str | None, Form(alias="id", max_length=128, description="Default: catalogue + image hash")
    ] = None,
    artist: Annotated[str | None, Form(max_length=500)] = None,
    style: Annotated[str | None, Form(max_length=500)] = None,
    genre: Annotated[str | None, Form(max_length=500)] = None,
    year: Annotated[str | None, Form(max_length=10, description="Year of creation")] = None,
    catalogue: Annotated[str | None, Form(max_length=64, description="Default: the configured one")] = None,
    extra: Annotated[str | None, Form(max_length=65_536, description="JSON object of strings")] = None,
    replace: Annotated[bool, Query(description="Replace an artwork that has this id")] = False,
) -> JSONResponse:
    """Adds one artwork: the image is checked, encoded and indexed with its metadata, kept under
    IMAGE_ROOT/<catalogue>/<id>.<ext>, and its artist joins the influence graph (needs an admin key).
    409 when the id exists, unless `replace`."""
    config = request.app.state.config
    fields: dict[str, object] = {
        "id": artwork_id,
        "title": title,
        "artist": artist,
        "style": style,
        "genre": genre,
        "year": year,
        "catalogue": catalogue,
        "extra": extra,
    }
    added = await catalogue_admin.add_artwork(
        Services(request), config.admin, upload_limits(config), owner, image, fields, replace
    )
    return JSONResponse(added, status_code=201)


@router.post(
    BATCH_ROUTE,
    response_model=BatchAnswer,
    response_description="What became of each image",
    responses=error_responses(*ADMIN_STATUSES, 400, 413, 422, 503),
)
async def add_artworks(
    request: Request,
    owner: Admin,
    images: Annotated[list[UploadFile], File(description="The pictures; each matched by its filename")],
    metadata: Annotated[
        str,
        Form(
            description='JSON list: [{"filename": "a.jpg", "title": "...", "artist": "...", '
            '"style": "...", "genre": "...", "year": 1889, "id": "...", "catalogue": "...", '
            '"extra": {...}}, ...]'
        ),
    ],
    replace: Annotated[bool, Query(description="Replace artworks whose ids exist")] = False,
) -> JSONResponse:
    """Adds several artworks; each one is added or rejected with its reason, on its own (needs an admin
    key)."""
    config = request.app.state.config
    answer = await catalogue_admin.add_artworks(
        Services(request), config.admin, upload_limits(config), owner, images, metadata, replace
    )
    return JSONResponse(answer)


@router.patch(
    "/v1/artworks/{artwork_id}",
    response_model=ArtworkChange,
    response_description="The artwork as now stored",
    responses=error_responses(*ADMIN_STATUSES, 400, 404, 413, 422, 503),
)
async def edit_artwork(request: Request, _: Admin, artwork_id: str, patch: ArtworkPatch) -> JSONResponse:
    """Changes an artwork's metadata; its descriptor is kept as stored, nothing is re-encoded (needs
    an admin key). The search service changes only the fields sent, in place: an edit never brings
    back an artwork deleted meanwhile (404), and edits of different fields never undo each other."""
    return JSONResponse(await catalogue_admin.edit_artwork(Services(request), artwork_id, patch))


@router.delete(
    "/v1/artworks/{artwork_id}",
    status_code=204,
    response_description="Deleted",
    responses=error_responses(*ADMIN_STATUSES, 400, 404, 422, 503),
)
async def delete_artwork(request: Request, _: Admin, artwork_id: str) -> Response:
    """Deletes an artwork, and its image when it was added through this API (needs an admin key)."""
    await catalogue_admin.delete_artwork(Services(request), request.app.state.config.admin, artwork_id)
    return Response(status_code=204)
