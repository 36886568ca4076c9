"""The influence graph's routes: GET /v1/artists, /v1/artists/path, /v1/artists/{name}/neighbours (public
reads); POST /v1/artists and /v1/influences (need an admin key)."""

from typing import Annotated

from fastapi import Depends, Path, Query, Request
from fastapi.responses import JSONResponse

from services.gateway import artist_admin
from services.gateway.admin import require_admin
from services.gateway.admin_calls import Services
from services.gateway.artist_admin import MAX_HOPS, MAX_LIST_LIMIT, MAX_NAME_CHARS, NewArtists, NewInfluences
from services.gateway.errors import ADMIN_STATUSES, error_responses
from services.gateway.routes import api_router
from services.gateway.schemas.artists import ArtistNeighbours, ArtistPage, ArtistPath, ArtistsAdded

router = api_router(tags=["artists"])
Admin = Annotated[str, Depends(require_admin)]
_WRITE_ERRORS = error_responses(*ADMIN_STATUSES, 400, 413, 422, 503)


@router.get(
    "/v1/artists",
    response_model=ArtistPage,
    response_description="One page of artists",
    responses=error_responses(400, 422, 503),
)
async def list_artists(
    request: Request,
    prefix: Annotated[
        str, Query(max_length=200, description="Start of a word of the name (or an alias); any case")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST_LIMIT)] = 100,
    cursor: Annotated[str, Query(max_length=MAX_NAME_CHARS, description="The previous next_cursor")] = "",
) -> JSONResponse:
    """Artists of the influence graph in key order, page by page."""
    return JSONResponse(await artist_admin.artist_page(Services(request), prefix, limit, cursor))


@router.get(
    "/v1/artists/path",
    response_model=ArtistPath,
    response_description="The chain, or found: false",
    responses=error_responses(400, 404, 422, 503),
)
async def artist_path(
    request: Request,
    from_artist: Annotated[str, Query(alias="from", min_length=1, max_length=MAX_NAME_CHARS)],
    to_artist: Annotated[str, Query(alias="to", min_length=1, max_length=MAX_NAME_CHARS)],
    max_hops: Annotated[int | None, Query(ge=1, le=MAX_HOPS, description="Default: the service's")] = None,
) -> JSONResponse:
    """A shortest chain of influence between two artists (edges in their true direction)."""
    path = await artist_admin.influence_path(Services(request), from_artist, to_artist, max_hops)
    return JSONResponse(path)


@router.get(
    "/v1/artists/{name}/neighbours",
    response_model=ArtistNeighbours,
    response_description="The artist's neighbours",
    responses=error_responses(400, 404, 422, 503),
)
async def artist_neighbours(
    request: Request, name: Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
) -> JSONResponse:
    """Who influenced an artist and whom the artist influenced (404 when not in the graph)."""
    return JSONResponse(await artist_admin.artist_neighbours(Services(request), name))


@router.post(
    "/v1/artists",
    response_model=ArtistsAdded,
    response_description="What the graph gained",
    responses=_WRITE_ERRORS,
)
async def add_artists(request: Request, _: Admin, body: NewArtists) -> JSONResponse:
    """Adds artists and influences; artists already known are left as they are (needs an admin key)."""
    return JSONResponse(await artist_admin.add_artists(Services(request), body))


@router.post(
    "/v1/influences",
    response_model=ArtistsAdded,
    response_description="What the graph gained",
    responses=_WRITE_ERRORS,
)
async def add_influences(request: Request, _: Admin, body: NewInfluences) -> JSONResponse:
    """Adds influence edges; unknown artists named by them are added (needs an admin key)."""
    return JSONResponse(await artist_admin.add_influences(Services(request), body))
