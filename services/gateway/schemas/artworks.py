"""One artwork as the public and admin routes show it."""

from pydantic import Field

from services.gateway.schemas import ResponseModel, example

_ID = "van-gogh-the-night-cafe"
EXAMPLE_METADATA: dict[str, object] = {
    "id": _ID,
    "title": "The Night Café",
    "artist": "Vincent van Gogh",
    "style": "Post-Impressionism",
    "genre": "interior",
    "year": 1888,
    "image_uri": f"{_ID}.jpg",
    "image_url": f"/v1/artworks/{_ID}/image",
    "thumbnail_url": f"/v1/artworks/{_ID}/thumbnail",
}
EXAMPLE_ARTWORK = {**EXAMPLE_METADATA, "catalogue": "gcompris"}


class ArtworkMetadata(ResponseModel):
    """An artwork's public metadata and the routes serving its image (a search result's fields)."""

    model_config = example(EXAMPLE_METADATA)
    id: str = Field(description="Artwork id, unique in its collection")
    title: str = Field(description="Title")
    artist: str | None = Field(description="Artist's name; null when unknown")
    style: str | None = Field(description="Style label (e.g. an art movement); null when unknown")
    genre: str | None = Field(description="Genre label; null when unknown")
    year: int | None = Field(description="Year of creation; null when unknown")
    image_uri: str | None = Field(
        description="Where the catalogue keeps the image (a path under the image root, or a URL)"
    )
    image_url: str = Field(description="This gateway's route serving the full image")
    thumbnail_url: str = Field(description="This gateway's route serving a JPEG thumbnail")


class Artwork(ArtworkMetadata):
    """GET /v1/artworks/{artwork_id}: an artwork's public metadata."""

    model_config = example(EXAMPLE_ARTWORK)
    catalogue: str | None = Field(description="The catalogue the artwork came from")


class StoredArtwork(Artwork):
    """An artwork record as the admin routes show it: the public metadata and the record's extra fields."""

    model_config = example({**EXAMPLE_ARTWORK, "extra": {"added_by": "curator", "museum": "Yale"}})
    extra: dict[str, str] = Field(
        description="The record's extra fields by key (added_by and added_at for artworks added through the "
        "API)"
    )
