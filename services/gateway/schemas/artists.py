"""The answers of the artist and influence routes (/v1/artists..., /v1/influences)."""

from typing import Literal

from pydantic import Field

from services.gateway.schemas import ResponseModel, example

_VAN_GOGH = {
    "key": "vincent van gogh",
    "name": "Vincent van Gogh",
    "birth_year": 1853,
    "death_year": 1890,
    "movement": "Post-Impressionism",
}
_HOKUSAI = {
    "key": "katsushika hokusai",
    "name": "Katsushika Hokusai",
    "birth_year": 1760,
    "death_year": 1849,
    "movement": "Ukiyo-e",
}
_RELATION_DOC = 'How: "influenced" or "teacher"'
_SOURCE_DOC = "Where the relation comes from (a citation); null when not given"


class ArtistInfo(ResponseModel):
    """An artist of the influence graph."""

    model_config = example(_VAN_GOGH)
    key: str = Field(description="The artist's key in the graph (its normalised name)")
    name: str = Field(description="The artist's name")
    birth_year: int | None = Field(description="Year of birth; null when unknown")
    death_year: int | None = Field(description="Year of death; null when unknown")
    movement: str | None = Field(description="Art movement; null when unknown")


class ArtistPage(ResponseModel):
    """GET /v1/artists: one page of the graph's artists in key order."""

    model_config = example({"artists": [_HOKUSAI, _VAN_GOGH], "next_cursor": "vincent van gogh"})
    artists: list[ArtistInfo] = Field(description="This page's artists")
    next_cursor: str | None = Field(description="The `cursor` of the next page; null after the last")


class InfluenceEdge(ResponseModel):
    influencer: str = Field(description="Key of the artist who influenced")
    influenced: str = Field(description="Key of the artist influenced")
    relation: Literal["influenced", "teacher"] = Field(description=_RELATION_DOC)
    source: str | None = Field(description=_SOURCE_DOC)


class ArtistPath(ResponseModel):
    """GET /v1/artists/path: a shortest chain of influence between two artists."""

    model_config = example(
        {
            "found": True,
            "hops": 1,
            "artists": [_HOKUSAI, _VAN_GOGH],
            "edges": [
                {
                    "influencer": "katsushika hokusai",
                    "influenced": "vincent van gogh",
                    "relation": "influenced",
                    "source": None,
                }
            ],
        }
    )
    found: bool = Field(description="Whether the artists are connected within max_hops")
    hops: int | None = Field(description="Length of the chain; null when not found")
    artists: list[ArtistInfo] = Field(description="The artists of the chain, from `from` to `to`")
    edges: list[InfluenceEdge] = Field(description="The chain's edges, each in its true direction")


class Neighbour(ResponseModel):
    artist: ArtistInfo = Field(description="The neighbouring artist")
    relation: Literal["influenced", "teacher"] = Field(description=_RELATION_DOC)
    source: str | None = Field(description=_SOURCE_DOC)


class ArtistNeighbours(ResponseModel):
    """GET /v1/artists/{name}/neighbours: who influenced an artist, and whom the artist influenced."""

    model_config = example(
        {
            "artist": _VAN_GOGH,
            "influencers": [{"artist": _HOKUSAI, "relation": "influenced", "source": None}],
            "influenced": [],
        }
    )
    artist: ArtistInfo = Field(description="The artist asked for")
    influencers: list[Neighbour] = Field(description="Artists who influenced this one")
    influenced: list[Neighbour] = Field(description="Artists this one influenced")


class ArtistsAdded(ResponseModel):
    """POST /v1/artists and POST /v1/influences: what the graph gained."""

    model_config = example({"artists_added": 1, "influences_added": 1})
    artists_added: int = Field(description="Artists new to the graph (known ones are left as they are)")
    influences_added: int = Field(description="Influence edges new to the graph")
