"""The InfluenceService gRPC servicer: validates requests, asks the graph, converts the answers."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterable

import grpc

from artsearch.artists import ArtistRecord
from artsearch.grpc_server import ServiceRegistration
from artsearch.v1 import influence_pb2, influence_pb2_grpc
from services.influence.graph import (
    MAX_PAGE_SIZE,
    RELATION_INFLUENCED,
    GraphStorageFull,
    GraphUnavailable,
    InfluenceGraph,
    InvalidGraphInput,
    NeighbourEdge,
    Neighbourhood,
    NewInfluence,
    PathResult,
)

log = logging.getLogger(__name__)

SERVICE_NAME = influence_pb2.DESCRIPTOR.services_by_name["InfluenceService"].full_name
MAX_CANDIDATES = 1000
MAX_NAMES = 1000
MAX_ADDITIONS = 10_000
MAX_NAME_CHARS = 500
DEFAULT_PAGE_SIZE = 100


class _BadRequest(Exception):
    """Raised by the request checks; answered as INVALID_ARGUMENT with its message."""


def _check_names(names: Iterable[str], what: str) -> None:
    for name in names:
        if len(name) > MAX_NAME_CHARS:
            raise _BadRequest(f"{what} {name[:40]!r}... is longer than {MAX_NAME_CHARS} characters")


def _check_max_hops(max_hops: int) -> None:
    if max_hops < 0:
        raise _BadRequest(f"max_hops must be >= 0 (0 means the service default), got {max_hops}")


def _artist_message(artist: ArtistRecord) -> influence_pb2.Artist:
    return influence_pb2.Artist(
        key=artist.key,
        name=artist.name,
        birth_year=artist.birth_year,
        death_year=artist.death_year,
        movement=artist.movement,
    )


def _path_message(path: PathResult | None) -> influence_pb2.PathResponse:
    if path is None:
        return influence_pb2.PathResponse(found=False)
    return influence_pb2.PathResponse(
        found=True,
        artists=[_artist_message(artist) for artist in path.artists],
        edges=[
            influence_pb2.InfluenceEdge(
                from_key=edge.influencer, to_key=edge.influenced, source=edge.source, relation=edge.relation
            )
            for edge in path.edges
        ],
    )


def _neighbour_message(edge: NeighbourEdge) -> influence_pb2.Neighbour:
    return influence_pb2.Neighbour(
        artist=_artist_message(edge.artist), relation=edge.relation, source=edge.source
    )


def _neighbours_message(found: Neighbourhood) -> influence_pb2.NeighboursResponse:
    return influence_pb2.NeighboursResponse(
        artist=_artist_message(found.artist),
        influencers=[_neighbour_message(edge) for edge in found.influencers],
        influenced=[_neighbour_message(edge) for edge in found.influenced],
    )


def _page_size(requested: int) -> int:
    if requested == 0:
        return DEFAULT_PAGE_SIZE
    if not 1 <= requested <= MAX_PAGE_SIZE:
        raise _BadRequest(f"limit must be between 1 and {MAX_PAGE_SIZE} (0 means {DEFAULT_PAGE_SIZE})")
    return requested


class InfluenceServicer(influence_pb2_grpc.InfluenceServiceServicer):
    def __init__(self, graph: InfluenceGraph, default_max_hops: int) -> None:
        self._graph = graph
        self._default_max_hops = default_max_hops

    def _max_hops(self, requested: int) -> int:
        _check_max_hops(requested)
        return requested or self._default_max_hops

    @contextlib.asynccontextmanager
    async def _answering(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """Bad input -> INVALID_ARGUMENT with its message; storage out of room -> RESOURCE_EXHAUSTED, out of
        reach or too slow -> UNAVAILABLE (both transient: the caller may retry); anything else -> INTERNAL,
        logged, so no exception ever escapes a handler."""
        try:
            yield
        except (_BadRequest, InvalidGraphInput) as error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
        except GraphStorageFull as error:
            log.warning("graph storage full", extra={"reason": str(error)})
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, str(error))
        except GraphUnavailable as error:
            log.warning("graph storage unavailable", extra={"reason": str(error)})
            await context.abort(grpc.StatusCode.UNAVAILABLE, str(error))
        except Exception:
            log.exception("influence request failed")
            await context.abort(grpc.StatusCode.INTERNAL, "the influence graph failed; see the service log")

    async def Distances(
        self, request: influence_pb2.DistancesRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.DistancesResponse:
        async with self._answering(context):
            if len(request.candidate_artists) > MAX_CANDIDATES:
                count = len(request.candidate_artists)
                raise _BadRequest(f"{count} candidate artists; at most {MAX_CANDIDATES} per request")
            _check_names([request.source_artist], "source_artist")
            _check_names(request.candidate_artists, "candidate artist")
            result = await self._graph.distances(
                request.source_artist,
                list(request.candidate_artists),
                self._max_hops(request.max_hops),
                request.with_paths,
            )
            return influence_pb2.DistancesResponse(
                source=_artist_message(result.source) if result.source is not None else None,
                source_known=result.source_known,
                source_inferred=result.source_inferred,
                distances=[
                    influence_pb2.ArtistDistance(
                        artist=d.artist, key=d.key, known=d.known, hops=d.hops, path=d.path
                    )
                    for d in result.distances
                ],
            )

    async def Path(
        self, request: influence_pb2.PathRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.PathResponse:
        async with self._answering(context):
            if not request.from_artist.strip() or not request.to_artist.strip():
                raise _BadRequest("a path needs both from_artist and to_artist")
            _check_names([request.from_artist, request.to_artist], "artist name")
            path = await self._graph.path(
                request.from_artist, request.to_artist, self._max_hops(request.max_hops)
            )
            return _path_message(path)

    async def GetArtists(
        self, request: influence_pb2.GetArtistsRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.GetArtistsResponse:
        async with self._answering(context):
            if len(request.names) > MAX_NAMES:
                raise _BadRequest(f"{len(request.names)} names; at most {MAX_NAMES} per request")
            _check_names(request.names, "artist name")
            lookup = await self._graph.get_artists(list(request.names))
            return influence_pb2.GetArtistsResponse(
                artists=[_artist_message(artist) for artist in lookup.found], missing=lookup.missing
            )

    async def AddArtists(
        self, request: influence_pb2.AddArtistsRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.AddArtistsResponse:
        async with self._answering(context):
            if len(request.artists) > MAX_ADDITIONS or len(request.influences) > MAX_ADDITIONS:
                raise _BadRequest(
                    f"at most {MAX_ADDITIONS} artists and {MAX_ADDITIONS} influences per request"
                )
            if any(not (a.name.strip() or a.key.strip()) for a in request.artists):
                raise _BadRequest("every artist to add needs a name")
            _check_names([a.name or a.key for a in request.artists], "artist name")
            _check_names([n for i in request.influences for n in (i.influencer, i.influenced)], "artist name")
            added = await self._graph.add(
                [
                    ArtistRecord.named(
                        a.name or a.key,
                        birth_year=a.birth_year,
                        death_year=a.death_year,
                        movement=a.movement,
                    )
                    for a in request.artists
                ],
                [
                    NewInfluence(
                        i.influencer,
                        i.influenced,
                        source=i.source,
                        relation=i.relation or RELATION_INFLUENCED,
                    )
                    for i in request.influences
                ],
            )
            return influence_pb2.AddArtistsResponse(
                artists_added=added.artists_added, influences_added=added.influences_added
            )

    async def ListArtists(
        self, request: influence_pb2.ListArtistsRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.ListArtistsResponse:
        async with self._answering(context):
            _check_names([request.prefix], "prefix")
            _check_names([request.cursor], "cursor")
            page = await self._graph.list_artists(request.prefix, _page_size(request.limit), request.cursor)
            return influence_pb2.ListArtistsResponse(
                artists=[_artist_message(artist) for artist in page.artists], next_cursor=page.next_cursor
            )

    async def Neighbours(
        self, request: influence_pb2.NeighboursRequest, context: grpc.aio.ServicerContext
    ) -> influence_pb2.NeighboursResponse:
        async with self._answering(context):
            if not request.artist.strip():
                raise _BadRequest("neighbours needs an artist name")
            _check_names([request.artist], "artist name")
            found = await self._graph.neighbours(request.artist)
            if found is not None:
                return _neighbours_message(found)
        await context.abort(grpc.StatusCode.NOT_FOUND, f"artist {request.artist!r} is not in the graph")


def registration(servicer: InfluenceServicer) -> ServiceRegistration:
    return ServiceRegistration(
        SERVICE_NAME,
        lambda server: influence_pb2_grpc.add_InfluenceServiceServicer_to_server(servicer, server),
    )
