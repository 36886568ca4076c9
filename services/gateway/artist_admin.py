"""Artist and influence routes: list, neighbours and path are public reads; adding artists and influences
needs an admin key.

No `from __future__ import annotations`: FastAPI reads these route signatures at run time."""

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from artsearch.v1 import influence_pb2
from services.gateway.admin_calls import Services
from services.gateway.artwork_records import YEAR_RANGE, clean_artist, clean_text
from services.gateway.downstream import INFLUENCE
from services.gateway.errors import ADMIN_STATUSES, ApiError, error_responses
from services.gateway.schemas.artists import ArtistNeighbours, ArtistPage, ArtistPath, ArtistsAdded

MAX_NAME_CHARS = 500
MAX_ADDITIONS = 1000
MAX_LIST_LIMIT = 1000
MAX_HOPS = 50
_WRITE_ERRORS = error_responses(*ADMIN_STATUSES, 400, 413, 422, 503)

RequireAdmin = Callable[[Request], Awaitable[str]]


def _name(value: str) -> str:
    """An artist name: letters or digits required, valid Unicode, no control characters."""
    try:
        name = clean_artist(value, "artist name")
    except ApiError as error:
        raise ValueError(error.message) from None
    if not name:
        raise ValueError("an artist name cannot be empty")
    return name


def _text(value: str) -> str:
    try:
        return clean_text(value, "text", 2000)
    except ApiError as error:
        raise ValueError(error.message) from None


ArtistName = Annotated[str, Field(max_length=MAX_NAME_CHARS), AfterValidator(_name)]
Year = Annotated[int | None, Field(ge=YEAR_RANGE[0], le=YEAR_RANGE[1])]


class NewArtist(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: ArtistName
    birth_year: Year = None
    death_year: Year = None
    movement: Annotated[str, Field(max_length=200), AfterValidator(_text)] = ""


class NewInfluence(BaseModel):
    """`influencer` influenced `influenced`; artists not yet in the graph are added."""

    model_config = ConfigDict(extra="forbid")
    influencer: ArtistName
    influenced: ArtistName
    relation: Literal["influenced", "teacher"] = "influenced"
    source: Annotated[str, Field(max_length=2000), AfterValidator(_text)] = ""


class NewArtists(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "artists": [{"name": "Hilma af Klint", "birth_year": 1862, "death_year": 1944}],
                    "influences": [{"influencer": "Rudolf Steiner", "influenced": "Hilma af Klint"}],
                }
            ]
        },
    )
    artists: Annotated[list[NewArtist], Field(max_length=MAX_ADDITIONS)] = []
    influences: Annotated[list[NewInfluence], Field(max_length=MAX_ADDITIONS)] = []


class NewInfluences(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "influences": [
                        {"influencer": "Hokusai", "influenced": "Van Gogh", "source": "Van Gogh Museum"}
                    ]
                }
            ]
        },
    )
    influences: Annotated[list[NewInfluence], Field(min_length=1, max_length=MAX_ADDITIONS)]


def artist_json(artist: influence_pb2.Artist) -> dict[str, object]:
    return {
        "key": artist.key,
        "name": artist.name,
        "birth_year": artist.birth_year or None,
        "death_year": artist.death_year or None,
        "movement": artist.movement or None,
    }


def _neighbour_json(neighbour: influence_pb2.Neighbour) -> dict[str, object]:
    return {
        "artist": artist_json(neighbour.artist),
        "relation": neighbour.relation,
        "source": neighbour.source or None,
    }


def _influence_message(influence: NewInfluence) -> influence_pb2.NewInfluence:
    return influence_pb2.NewInfluence(
        influencer=influence.influencer,
        influenced=influence.influenced,
        relation=influence.relation,
        source=influence.source,
    )


async def _add(request: Request, message: influence_pb2.AddArtistsRequest) -> JSONResponse:
    reply = await Services(request).call(INFLUENCE, "AddArtists", message)
    return JSONResponse({"artists_added": reply.artists_added, "influences_added": reply.influences_added})


def install_artist_routes(app: FastAPI, require_admin: RequireAdmin) -> None:
    admin = Annotated[str, Depends(require_admin)]

    @app.get(
        "/v1/artists",
        tags=["artists"],
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
        message = influence_pb2.ListArtistsRequest(
            prefix=clean_text(prefix, "prefix"), limit=limit, cursor=clean_text(cursor, "cursor")
        )
        reply = await Services(request).call(INFLUENCE, "ListArtists", message)
        return JSONResponse(
            {"artists": [artist_json(a) for a in reply.artists], "next_cursor": reply.next_cursor or None}
        )

    @app.get(
        "/v1/artists/path",
        tags=["artists"],
        response_model=ArtistPath,
        response_description="The chain, or found: false",
        responses=error_responses(400, 404, 422, 503),
    )
    async def artist_path(
        request: Request,
        from_artist: Annotated[str, Query(alias="from", min_length=1, max_length=MAX_NAME_CHARS)],
        to_artist: Annotated[str, Query(alias="to", min_length=1, max_length=MAX_NAME_CHARS)],
        max_hops: Annotated[
            int | None, Query(ge=1, le=MAX_HOPS, description="Default: the service's")
        ] = None,
    ) -> JSONResponse:
        """A shortest chain of influence between two artists (edges in their true direction)."""
        message = influence_pb2.PathRequest(
            from_artist=clean_text(from_artist, "from"),
            to_artist=clean_text(to_artist, "to"),
            max_hops=max_hops or 0,
        )
        reply = await Services(request).call(INFLUENCE, "Path", message)
        return JSONResponse(
            {
                "found": reply.found,
                "hops": len(reply.edges) if reply.found else None,
                "artists": [artist_json(a) for a in reply.artists],
                "edges": [
                    {
                        "influencer": e.from_key,
                        "influenced": e.to_key,
                        "relation": e.relation or "influenced",
                        "source": e.source or None,
                    }
                    for e in reply.edges
                ],
            }
        )

    @app.get(
        "/v1/artists/{name}/neighbours",
        tags=["artists"],
        response_model=ArtistNeighbours,
        response_description="The artist's neighbours",
        responses=error_responses(400, 404, 422, 503),
    )
    async def artist_neighbours(
        request: Request, name: Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
    ) -> JSONResponse:
        """Who influenced an artist and whom the artist influenced (404 when not in the graph)."""
        message = influence_pb2.NeighboursRequest(artist=clean_text(name, "name"))
        reply = await Services(request).call(INFLUENCE, "Neighbours", message)
        return JSONResponse(
            {
                "artist": artist_json(reply.artist),
                "influencers": [_neighbour_json(n) for n in reply.influencers],
                "influenced": [_neighbour_json(n) for n in reply.influenced],
            }
        )

    @app.post(
        "/v1/artists",
        tags=["artists"],
        response_model=ArtistsAdded,
        response_description="What the graph gained",
        responses=_WRITE_ERRORS,
    )
    async def add_artists(request: Request, _: admin, body: NewArtists) -> JSONResponse:
        """Adds artists and influences; artists already known are left as they are (needs an admin key)."""
        message = influence_pb2.AddArtistsRequest(
            artists=[
                influence_pb2.Artist(
                    name=a.name,
                    birth_year=a.birth_year or 0,
                    death_year=a.death_year or 0,
                    movement=a.movement,
                )
                for a in body.artists
            ],
            influences=[_influence_message(i) for i in body.influences],
        )
        return await _add(request, message)

    @app.post(
        "/v1/influences",
        tags=["artists"],
        response_model=ArtistsAdded,
        response_description="What the graph gained",
        responses=_WRITE_ERRORS,
    )
    async def add_influences(request: Request, _: admin, body: NewInfluences) -> JSONResponse:
        """Adds influence edges; unknown artists named by them are added (needs an admin key)."""
        message = influence_pb2.AddArtistsRequest(influences=[_influence_message(i) for i in body.influences])
        return await _add(request, message)
