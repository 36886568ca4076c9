"""`AsyncArtsearchClient`: the gateway's HTTP API for asyncio, call for call the API of `ArtsearchClient`
(client.py; keep the two in step, tests/test_package.py compares them)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeVar, Unpack

import httpx

from artsearch_client import _calls, models
from artsearch_client._attempts import Attempts
from artsearch_client._calls import (
    ArtworkEdit,
    BatchQuery,
    Call,
    ImageSource,
    NewArtist,
    NewArtwork,
    NewInfluence,
    SearchParams,
)
from artsearch_client.client import DEFAULT_BASE_URL, DEFAULT_TIMEOUT_S, USER_AGENT
from artsearch_client.errors import PictureExpired
from artsearch_client.retry import RetryPolicy

R = TypeVar("R")


class AsyncArtsearchClient:
    """A client of one gateway. `api_key` is needed for the admin calls only; `timeout` (seconds, or an
    httpx.Timeout) bounds each attempt, `retry` the attempts and their total time. Use it as a context
    manager, or call close()."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        *,
        api_key: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._api_key = api_key
        self._timeout = timeout if isinstance(timeout, httpx.Timeout) else httpx.Timeout(timeout)
        self._retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            transport=transport,
        )

    async def __aenter__(self) -> AsyncArtsearchClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._http.aclose()

    async def _run(self, call: Call[R]) -> R:
        attempts = Attempts(self._retry, call.idempotent)
        while True:
            timeout = attempts.start(self._timeout)
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=tuple(call.params),  # a tuple: httpx types it covariantly
                    json=call.json,
                    files=call.files,
                    data=call.data,
                    headers=call.headers(self._api_key, attempts.request_id),
                    timeout=timeout,
                )
            except httpx.TransportError as error:
                wait = attempts.after_transport_error(error)
            else:
                if response.is_success or response.status_code in call.accepted:
                    return call.parse(response)
                wait = attempts.after_answer(response)
            await asyncio.sleep(wait)

    # ---- operations and health -----------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """`GET /healthz`: the gateway process answers."""
        return await self._run(_calls.health())

    async def readiness(self) -> models.Readiness:
        """`GET /readyz`: whether the gateway can serve searches (not ready is an answer, not an error)."""
        return await self._run(_calls.readiness())

    # ---- search ----------------------------------------------------------------------------------------

    async def search(self, image: ImageSource, **params: Unpack[SearchParams]) -> models.SearchResponse:
        """Related artworks for a picture (bytes, a file path or a binary file), best first."""
        return await self._run(_calls.search(image, params))

    async def search_url(self, url: str, **params: Unpack[SearchParams]) -> models.SearchResponse:
        """Related artworks for a picture the gateway fetches from `url`."""
        return await self._run(_calls.search_url(url, params))

    async def search_by_picture_id(
        self, picture_id: str, **params: Unpack[SearchParams]
    ) -> models.SearchResponse:
        """A picture searched again with other parameters by the `picture_id` of its previous answer: the
        gateway re-ranks from the descriptors it kept (no upload, no encode). Raises `PictureExpired` once
        it no longer keeps them: then search with the picture again (`search_or_resend` does both)."""
        return await self._run(_calls.search_picture_id(picture_id, params))

    async def search_or_resend(
        self, picture_id: str | None, image: ImageSource, **params: Unpack[SearchParams]
    ) -> models.SearchResponse:
        """`search_by_picture_id` while the gateway keeps the picture, else `search` with the picture."""
        if picture_id:
            try:
                return await self.search_by_picture_id(picture_id, **params)
            except PictureExpired:
                pass
        return await self.search(image, **params)

    async def similar(self, artwork_id: str, **params: Unpack[SearchParams]) -> models.SearchResponse:
        """Related artworks for an artwork of the catalogue (its stored descriptor; itself left out)."""
        return await self._run(_calls.similar(artwork_id, params))

    async def search_page(self, cursor: str) -> models.SearchResponse:
        """`GET /v1/search?cursor=`: the next page of a search's same ranked result (no re-upload); raises
        `Gone` once the gateway no longer keeps it."""
        return await self._run(_calls.search_page(cursor))

    async def next_page(self, answer: models.SearchResponse) -> models.SearchResponse | None:
        """The page after `answer` (by its `next_cursor`), or None when `answer` is the last page."""
        return None if answer.next_cursor is None else await self.search_page(answer.next_cursor)

    async def search_batch(
        self, queries: Sequence[BatchQuery], **params: Unpack[SearchParams]
    ) -> models.BatchSearchResponse:
        """Several searches in one request (`POST /v1/search/batch`): one answer or error per query, in
        order (`BatchSearchResponse.results`); `params` apply to every query. Either uploaded pictures
        (`BatchQuery(image=...)`) or URL / artwork queries, not both, at most the gateway's
        SEARCH_BATCH_MAX_QUERIES (16 by default; more: PayloadTooLarge)."""
        return await self._run(_calls.search_batch(queries, params))

    async def predict_style(self, image: ImageSource) -> models.StyleResponse:
        """The style of a picture, voted by its nearest catalogue artworks."""
        return await self._run(_calls.predict_style(image))

    # ---- artworks ----------------------------------------------------------------------------------------

    async def artwork(self, artwork_id: str) -> models.Artwork:
        """Public metadata of one artwork (NotFound when unknown)."""
        return await self._run(_calls.artwork(artwork_id))

    async def artwork_image(self, artwork_id: str) -> bytes:
        return await self._run(_calls.artwork_image(artwork_id))

    async def thumbnail(self, artwork_id: str, size: int | None = None) -> bytes:
        """A JPEG thumbnail, its longest side `size` (64, 128, 256 or 512; the gateway's default 256)."""
        return await self._run(_calls.thumbnail(artwork_id, size))

    # ---- artists and influences (reads need no key) ------------------------------------------------------

    async def artists(
        self, prefix: str = "", *, limit: int | None = None, cursor: str | None = None
    ) -> models.ArtistPage:
        """One page of the influence graph's artists in key order (`prefix`: a word of the name)."""
        return await self._run(_calls.artists(prefix, limit, cursor))

    async def artist_neighbours(self, name: str) -> models.ArtistNeighbours:
        """Who influenced an artist and whom the artist influenced (NotFound when not in the graph)."""
        return await self._run(_calls.artist_neighbours(name))

    async def artist_path(
        self, from_artist: str, to_artist: str, *, max_hops: int | None = None
    ) -> models.InfluencePath:
        """A shortest chain of influence between two artists."""
        return await self._run(_calls.artist_path(from_artist, to_artist, max_hops))

    # ---- browsing by cluster ---------------------------------------------------------------------------

    async def clusters(self, n: int | None = None) -> models.Clustering:
        """The catalogue in `n` clusters of similar-looking artworks (the gateway's default 12)."""
        return await self._run(_calls.clusters(n))

    async def cluster_members(
        self,
        cluster: int,
        *,
        n: int | None = None,
        offset: int | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.ClusterMembers:
        """One page of a cluster's artworks (pass the `n` the cluster id came from), or the page a previous
        page's `next_cursor` points to."""
        return await self._run(_calls.cluster_members(cluster, n, offset, limit, cursor))

    # ---- admin: the API key --------------------------------------------------------------------------------

    async def list_artworks(
        self, *, limit: int | None = None, cursor: str | None = None
    ) -> models.ArtworkPage:
        """One page of the catalogue in storage order."""
        return await self._run(_calls.list_artworks(limit, cursor))

    async def iter_artworks(self, *, page_size: int = 100) -> AsyncIterator[models.Artwork]:
        """Every artwork of the catalogue once, page after page."""
        cursor: str | None = None
        while True:
            page = await self.list_artworks(limit=page_size, cursor=cursor)
            for artwork in page.artworks:
                yield artwork
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def add_artwork(
        self,
        image: ImageSource,
        title: str,
        *,
        id: str | None = None,
        artist: str | None = None,
        style: str | None = None,
        genre: str | None = None,
        year: int | None = None,
        catalogue: str | None = None,
        extra: Mapping[str, str] | None = None,
        replace: bool = False,
    ) -> models.ArtworkChange:
        """Adds one artwork (encoded and indexed); Conflict when its id exists, unless `replace`."""
        artwork = NewArtwork(image, title, id, artist, style, genre, year, catalogue, extra)
        return await self._run(_calls.add_artwork(artwork, replace))

    async def add_artworks(
        self, artworks: Sequence[NewArtwork], *, replace: bool = False
    ) -> models.BatchResult:
        """Adds several artworks in one request; each is added or rejected on its own, with its reason."""
        return await self._run(_calls.add_artworks(artworks, replace))

    async def edit_artwork(self, artwork_id: str, **changes: Unpack[ArtworkEdit]) -> models.ArtworkChange:
        """Changes an artwork's metadata in place (nothing is re-encoded); NotFound when unknown."""
        return await self._run(_calls.edit_artwork(artwork_id, changes))

    async def delete_artwork(self, artwork_id: str) -> None:
        """Deletes an artwork (NotFound when unknown)."""
        return await self._run(_calls.delete_artwork(artwork_id))

    async def add_artists(
        self, artists: Sequence[NewArtist] = (), influences: Sequence[NewInfluence] = ()
    ) -> models.ArtistAdditions:
        """Adds artists and influences to the graph; known artists are left as they are."""
        return await self._run(_calls.add_artists(artists, influences))

    async def add_influences(self, influences: Sequence[NewInfluence]) -> models.ArtistAdditions:
        """Adds influence edges; artists they name that are not in the graph yet are added."""
        return await self._run(_calls.add_influences(influences))
