"""Each API operation as a `Call`: the HTTP request to send and how to read its answer. The sync and async
clients send the same calls; only the waiting differs."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Generic, Literal, TypedDict, TypeVar
from urllib.parse import quote

import httpx

from artsearch_client import models

R = TypeVar("R")
# A picture: its bytes, a file path, or a binary file object (read whole, so a retry can send it again).
ImageSource = bytes | str | os.PathLike[str] | IO[bytes]
FileField = tuple[str, tuple[str, bytes]]


class ArtworkEdit(TypedDict, total=False):
    """The fields `edit_artwork` may change; None (or "") clears one, the title excepted. `extra` is
    merged key by key (a key set to None is removed)."""

    title: str
    artist: str | None
    style: str | None
    genre: str | None
    year: int | None
    extra: Mapping[str, str | None]


class SearchParams(TypedDict, total=False):
    """The search parameters of `POST /v1/search` and `GET /v1/artworks/{id}/similar` (docs/gateway.md)."""

    k: int
    offset: int
    pool: int
    rerank: bool
    influence_weight: float
    source_artist: str
    source_inference: Literal["vote", "nearest"]
    source_top: int
    source_temperature: float
    source_min_confidence: float
    w_content: float
    w_style: float
    w_colour: float
    filter_artist: str | Sequence[str]
    filter_style: str | Sequence[str]
    filter_genre: str | Sequence[str]
    year_min: int
    year_max: int
    exclude_same_artist: bool
    locate: Literal["auto", "off"]
    grey: Literal["auto", "off"]
    regions: Literal["auto", "off"]


_SEARCH_PARAM_NAMES = frozenset(SearchParams.__annotations__)
_LIST_PARAMS = frozenset({"filter_artist", "filter_style", "filter_genre"})


@dataclass(frozen=True)
class NewArtwork:
    """An artwork to add: its picture and metadata (`id` defaults to catalogue + the image's hash)."""

    image: ImageSource
    title: str
    id: str | None = None
    artist: str | None = None
    style: str | None = None
    genre: str | None = None
    year: int | None = None
    catalogue: str | None = None
    extra: Mapping[str, str] | None = None
    # The upload's file name, which matches the image to its metadata in a batch (default: the path's name).
    filename: str | None = None


@dataclass(frozen=True)
class NewArtist:
    name: str
    birth_year: int | None = None
    death_year: int | None = None
    movement: str = ""


@dataclass(frozen=True)
class NewInfluence:
    """`influencer` influenced `influenced` (`relation` "influenced" or "teacher")."""

    influencer: str
    influenced: str
    relation: Literal["influenced", "teacher"] = "influenced"
    source: str = ""


@dataclass(frozen=True)
class BatchQuery:
    """One query of `search_batch`: exactly one of a picture (`image`), a picture URL (`url`), a picture
    searched a moment ago (`picture_id`, from its answer: not sent again) or an artwork of the catalogue
    (`artwork_id`, as `similar`); `params` are this query's own search parameters (not for uploads: the
    uploads of a batch share the call's)."""

    image: ImageSource | None = None
    url: str | None = None
    artwork_id: str | None = None
    picture_id: str | None = None
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if sum(x is not None for x in (self.image, self.url, self.artwork_id, self.picture_id)) != 1:
            raise ValueError("a BatchQuery has exactly one of image, url, artwork_id and picture_id")
        if self.image is not None and self.params:
            raise ValueError(
                "the uploads of a batch share the call's parameters; params are for the other queries"
            )

    def subject(self) -> dict[str, str]:
        """The JSON body's field naming what this (not uploaded) query searches."""
        named = {"url": self.url, "artwork_id": self.artwork_id, "picture_id": self.picture_id}
        return {name: value for name, value in named.items() if value is not None}


@dataclass(frozen=True)
class Call(Generic[R]):
    method: str
    path: str
    parse: Callable[[httpx.Response], R]
    # Safe to send twice (reads, searches, edits, deletions): also retried on 503 and on a lost answer.
    idempotent: bool
    params: list[tuple[str, str]] = field(default_factory=list)
    json: Any = None
    files: list[FileField] | None = None
    data: dict[str, str] | None = None
    admin: bool = False
    # Non-2xx statuses that are an answer rather than an error (GET /readyz answers 503 when not ready).
    accepted: frozenset[int] = frozenset()

    def headers(self, api_key: str | None, request_id: str) -> dict[str, str]:
        """An attempt's headers: the call's request id, and the API key on admin routes only (a key is not
        sent where it is not needed)."""
        headers = {"X-Request-ID": request_id}
        if self.admin and api_key:
            headers["X-API-Key"] = api_key
        return headers


def _json(response: httpx.Response) -> Any:
    return response.json()


def _parsed(kind: Callable[[models.JsonObject], R]) -> Callable[[httpx.Response], R]:
    return lambda response: kind(models._object(response.json()))


def segment(value: str) -> str:
    """One path segment: ids and names may hold '/', '?', '#', spaces."""
    if not value:
        raise ValueError("an id or name cannot be empty")
    return quote(value, safe="")


def read_image(image: ImageSource) -> tuple[str, bytes]:
    """(file name, bytes) of a picture."""
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    data = image.read()
    if not isinstance(data, bytes):
        raise TypeError("an image file object must be opened in binary mode")
    return Path(str(getattr(image, "name", "image"))).name or "image", data


def query_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def search_query(params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The search parameters as query pairs: lists repeated, booleans as true/false, None left out."""
    unknown = sorted(set(params) - _SEARCH_PARAM_NAMES)
    if unknown:
        raise TypeError(f"unknown search parameters {unknown}; known: {sorted(_SEARCH_PARAM_NAMES)}")
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        values = [value] if name not in _LIST_PARAMS or isinstance(value, str) else list(value)
        pairs += [(name, query_value(v)) for v in values]
    return pairs


def _search_body(picture: Mapping[str, str], params: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of a search: the picture (`url` or `picture_id`) and the parameters."""
    search_query(params)  # the same check of the names
    body: dict[str, Any] = dict(picture)
    for name, value in params.items():
        if value is not None:
            body[name] = [value] if name in _LIST_PARAMS and isinstance(value, str) else value
    return body


# ---- public reads ------------------------------------------------------------------------------------


def health() -> Call[dict[str, Any]]:
    return Call("GET", "/healthz", _json, idempotent=True)


def readiness() -> Call[models.Readiness]:
    return Call("GET", "/readyz", _parsed(models.Readiness.from_json), True, accepted=frozenset({503}))


def search(image: ImageSource, params: Mapping[str, Any]) -> Call[models.SearchResponse]:
    # A search only reads: repeating it is safe, so it retries like a GET.
    return Call(
        "POST",
        "/v1/search",
        _parsed(models.SearchResponse.from_json),
        idempotent=True,
        params=search_query(params),
        files=[("image", read_image(image))],
    )


def search_url(url: str, params: Mapping[str, Any]) -> Call[models.SearchResponse]:
    body = _search_body({"url": url}, params)
    return Call("POST", "/v1/search", _parsed(models.SearchResponse.from_json), True, json=body)


def search_picture_id(picture_id: str, params: Mapping[str, Any]) -> Call[models.SearchResponse]:
    """A search from the descriptors the gateway kept for a picture (a previous answer's `picture_id`)."""
    if not picture_id:
        raise ValueError("a picture_id cannot be empty")
    body = _search_body({"picture_id": picture_id}, params)
    return Call("POST", "/v1/search", _parsed(models.SearchResponse.from_json), True, json=body)


def similar(artwork_id: str, params: Mapping[str, Any]) -> Call[models.SearchResponse]:
    path = f"/v1/artworks/{segment(artwork_id)}/similar"
    return Call("GET", path, _parsed(models.SearchResponse.from_json), True, params=search_query(params))


def search_page(cursor: str) -> Call[models.SearchResponse]:
    """The page a search answer's `next_cursor` points to (any search: picture, URL or similar)."""
    if not cursor:
        raise ValueError("a cursor cannot be empty")
    params = [("cursor", cursor)]
    return Call("GET", "/v1/search", _parsed(models.SearchResponse.from_json), True, params=params)


def search_batch(
    queries: Sequence[BatchQuery], params: Mapping[str, Any]
) -> Call[models.BatchSearchResponse]:
    """`POST /v1/search/batch`: uploads as a multipart body (the parameters in the query string), URL and
    artwork queries as JSON (shared parameters at the top, each query's own beside it). The gateway takes
    one kind per request, so a batch mixing uploads with URL or artwork queries is refused here."""
    if not queries:
        raise ValueError("a batch needs at least one query")
    parse = _parsed(models.BatchSearchResponse.from_json)
    uploads = [q.image for q in queries if q.image is not None]
    if uploads:
        if len(uploads) != len(queries):
            raise ValueError("a batch holds uploads or URL / picture id / artwork queries, not both")
        files = [("image", read_image(image)) for image in uploads]
        return Call("POST", "/v1/search/batch", parse, True, params=search_query(params), files=files)
    body = _body_params(params)
    body["queries"] = [{**q.subject(), **_body_params(q.params)} for q in queries]
    return Call("POST", "/v1/search/batch", parse, True, json=body)


def _body_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """Search parameters as JSON body fields (lists as lists, None left out), their names checked."""
    search_query(params)
    return {
        name: [value] if name in _LIST_PARAMS and isinstance(value, str) else value
        for name, value in params.items()
        if value is not None
    }


def artwork(artwork_id: str) -> Call[models.Artwork]:
    return Call("GET", f"/v1/artworks/{segment(artwork_id)}", _parsed(models.Artwork.from_json), True)


def artwork_image(artwork_id: str) -> Call[bytes]:
    return Call("GET", f"/v1/artworks/{segment(artwork_id)}/image", lambda r: r.content, True)


def thumbnail(artwork_id: str, size: int | None) -> Call[bytes]:
    params = [] if size is None else [("size", str(size))]
    path = f"/v1/artworks/{segment(artwork_id)}/thumbnail"
    return Call("GET", path, lambda r: r.content, True, params=params)


def predict_style(image: ImageSource) -> Call[models.StyleResponse]:
    files = [("image", read_image(image))]
    return Call("POST", "/v1/predict-style", _parsed(models.StyleResponse.from_json), True, files=files)


def artists(prefix: str, limit: int | None, cursor: str | None) -> Call[models.ArtistPage]:
    params = [("prefix", prefix)] if prefix else []
    params += [("limit", str(limit))] if limit is not None else []
    params += [("cursor", cursor)] if cursor else []
    return Call("GET", "/v1/artists", _parsed(models.ArtistPage.from_json), True, params=params)


def artist_neighbours(name: str) -> Call[models.ArtistNeighbours]:
    path = f"/v1/artists/{segment(name)}/neighbours"
    return Call("GET", path, _parsed(models.ArtistNeighbours.from_json), True)


def artist_path(from_artist: str, to_artist: str, max_hops: int | None) -> Call[models.InfluencePath]:
    params = [("from", from_artist), ("to", to_artist)]
    params += [("max_hops", str(max_hops))] if max_hops is not None else []
    return Call("GET", "/v1/artists/path", _parsed(models.InfluencePath.from_json), True, params=params)


def clusters(n: int | None) -> Call[models.Clustering]:
    params = [("n", str(n))] if n is not None else []
    return Call("GET", "/v1/clusters", _parsed(models.Clustering.from_json), True, params=params)


def cluster_members(
    cluster: int, n: int | None, offset: int | None, limit: int | None, cursor: str | None = None
) -> Call[models.ClusterMembers]:
    given = {"n": n, "offset": offset, "limit": limit, "cursor": cursor}
    params = [(name, str(value)) for name, value in given.items() if value is not None]
    path = f"/v1/clusters/{int(cluster)}"
    return Call("GET", path, _parsed(models.ClusterMembers.from_json), True, params=params)


# ---- admin (an API key) ------------------------------------------------------------------------------


def list_artworks(limit: int | None, cursor: str | None) -> Call[models.ArtworkPage]:
    params = [("limit", str(limit))] if limit is not None else []
    params += [("cursor", cursor)] if cursor else []
    parse = _parsed(models.ArtworkPage.from_json)
    return Call("GET", "/v1/artworks", parse, True, params=params, admin=True)


def _metadata(artwork: NewArtwork) -> dict[str, Any]:
    fields = {
        "id": artwork.id,
        "artist": artwork.artist,
        "style": artwork.style,
        "genre": artwork.genre,
        "year": artwork.year,
        "catalogue": artwork.catalogue,
        "extra": dict(artwork.extra) if artwork.extra is not None else None,
    }
    return {"title": artwork.title} | {name: value for name, value in fields.items() if value is not None}


def add_artwork(artwork: NewArtwork, replace: bool) -> Call[models.ArtworkChange]:
    name, data = read_image(artwork.image)
    form = {
        key: json.dumps(value) if key == "extra" else str(value) for key, value in _metadata(artwork).items()
    }
    return Call(
        "POST",
        "/v1/artworks",
        _parsed(models.ArtworkChange.from_json),
        idempotent=False,
        params=[("replace", "true")] if replace else [],
        files=[("image", (artwork.filename or name, data))],
        data=form,
        admin=True,
    )


def add_artworks(artworks: Sequence[NewArtwork], replace: bool) -> Call[models.BatchResult]:
    files: list[FileField] = []
    metadata = []
    for number, item in enumerate(artworks):
        name, data = read_image(item.image)
        filename = item.filename or (name if name != "image" else f"image-{number}")
        files.append(("images", (filename, data)))
        metadata.append({"filename": filename, **_metadata(item)})
    names = [name for _, (name, _) in files]
    if len(set(names)) != len(names):
        raise ValueError(f"each image of a batch needs its own file name, got {names}")
    return Call(
        "POST",
        "/v1/artworks/batch",
        _parsed(models.BatchResult.from_json),
        idempotent=False,
        params=[("replace", "true")] if replace else [],
        files=files,
        data={"metadata": json.dumps(metadata)},
        admin=True,
    )


def edit_artwork(artwork_id: str, changes: Mapping[str, Any]) -> Call[models.ArtworkChange]:
    unknown = sorted(set(changes) - set(ArtworkEdit.__annotations__))
    if unknown:
        raise TypeError(
            f"fields that cannot be edited: {unknown}; editable: {sorted(ArtworkEdit.__annotations__)}"
        )
    # The same edit twice leaves the same record: safe to retry.
    path = f"/v1/artworks/{segment(artwork_id)}"
    parse = _parsed(models.ArtworkChange.from_json)
    body = {name: dict(value) if name == "extra" else value for name, value in changes.items()}
    return Call("PATCH", path, parse, idempotent=True, json=body, admin=True)


def delete_artwork(artwork_id: str) -> Call[None]:
    path = f"/v1/artworks/{segment(artwork_id)}"
    return Call("DELETE", path, lambda _: None, idempotent=True, admin=True)


def _artist_json(artist: NewArtist) -> dict[str, Any]:
    body: dict[str, Any] = {"name": artist.name, "movement": artist.movement}
    body |= {"birth_year": artist.birth_year} if artist.birth_year is not None else {}
    return body | ({"death_year": artist.death_year} if artist.death_year is not None else {})


def _influence_json(influence: NewInfluence) -> dict[str, Any]:
    return {
        "influencer": influence.influencer,
        "influenced": influence.influenced,
        "relation": influence.relation,
        "source": influence.source,
    }


def add_artists(
    new_artists: Sequence[NewArtist], influences: Sequence[NewInfluence]
) -> Call[models.ArtistAdditions]:
    body = {
        "artists": [_artist_json(a) for a in new_artists],
        "influences": [_influence_json(i) for i in influences],
    }
    parse = _parsed(models.ArtistAdditions.from_json)
    return Call("POST", "/v1/artists", parse, idempotent=False, json=body, admin=True)


def add_influences(influences: Sequence[NewInfluence]) -> Call[models.ArtistAdditions]:
    body = {"influences": [_influence_json(i) for i in influences]}
    parse = _parsed(models.ArtistAdditions.from_json)
    return Call("POST", "/v1/influences", parse, idempotent=False, json=body, admin=True)
