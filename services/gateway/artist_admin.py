"""Artists and influences in the influence graph: list, neighbours and path (public reads); adding artists
and influences (needs an admin key). The routes: services/gateway/routes/artists.py."""

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from artsearch.v1 import influence_pb2
from services.gateway.admin_calls import Services
from services.gateway.artwork_records import YEAR_RANGE, clean_artist, clean_text
from services.gateway.downstream import INFLUENCE
from services.gateway.errors import ApiError

MAX_NAME_CHARS = 500
MAX_ADDITIONS = 1000
MAX_LIST_LIMIT = 1000
MAX_HOPS = 50


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


async def artist_page(services: Services, prefix: str, limit: int, cursor: str) -> dict[str, object]:
    """One page of the influence graph's artists in key order."""
    message = influence_pb2.ListArtistsRequest(
        prefix=clean_text(prefix, "prefix"), limit=limit, cursor=clean_text(cursor, "cursor")
    )
    reply = await services.call(INFLUENCE, "ListArtists", message)
    return {"artists": [artist_json(a) for a in reply.artists], "next_cursor": reply.next_cursor or None}


async def influence_path(
    services: Services, from_artist: str, to_artist: str, max_hops: int | None
) -> dict[str, object]:
    """A shortest chain of influence between two artists (edges in their true direction)."""
    message = influence_pb2.PathRequest(
        from_artist=clean_text(from_artist, "from"),
        to_artist=clean_text(to_artist, "to"),
        max_hops=max_hops or 0,
    )
    reply = await services.call(INFLUENCE, "Path", message)
    return {
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


async def artist_neighbours(services: Services, name: str) -> dict[str, object]:
    """Who influenced an artist and whom the artist influenced (404 when not in the graph)."""
    message = influence_pb2.NeighboursRequest(artist=clean_text(name, "name"))
    reply = await services.call(INFLUENCE, "Neighbours", message)
    return {
        "artist": artist_json(reply.artist),
        "influencers": [_neighbour_json(n) for n in reply.influencers],
        "influenced": [_neighbour_json(n) for n in reply.influenced],
    }


async def add_artists(services: Services, body: NewArtists) -> dict[str, object]:
    """Adds artists and influences; artists already known are left as they are."""
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
    return await _add(services, message)


async def add_influences(services: Services, body: NewInfluences) -> dict[str, object]:
    """Adds influence edges; unknown artists named by them are added."""
    message = influence_pb2.AddArtistsRequest(influences=[_influence_message(i) for i in body.influences])
    return await _add(services, message)


async def _add(services: Services, message: influence_pb2.AddArtistsRequest) -> dict[str, object]:
    reply = await services.call(INFLUENCE, "AddArtists", message)
    return {"artists_added": reply.artists_added, "influences_added": reply.influences_added}
