"""The gateway's gRPC clients of the encoder, search and influence services, each call with a deadline."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import grpc

from artsearch.grpc_client import is_serving, open_channel
from artsearch.v1 import (
    common_pb2,
    encoder_pb2,
    encoder_pb2_grpc,
    influence_pb2,
    influence_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from services.gateway.config import GatewayConfig
from services.gateway.telemetry import downstream_call

ENCODER = "encoder"
SEARCH = "search"
INFLUENCE = "influence"


class DownstreamError(Exception):
    """A downstream call failed; `service` names which one, `status` is the gRPC status."""

    def __init__(self, service: str, status: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}: {status.name}: {details}")
        self.service = service
        self.status = status
        self.details = details


class Downstream:
    """Long-lived channels to the three services (one HTTP/2 connection each, reused by every request)."""

    def __init__(self, config: GatewayConfig) -> None:
        self._config = config
        self._channels = {
            ENCODER: open_channel(config.encoder_addr),
            SEARCH: open_channel(config.search_addr),
            INFLUENCE: open_channel(config.influence_addr),
        }
        self._encoder = encoder_pb2_grpc.EncoderServiceStub(self._channels[ENCODER])
        self._search = search_pb2_grpc.SearchServiceStub(self._channels[SEARCH])
        self._influence = influence_pb2_grpc.InfluenceServiceStub(self._channels[INFLUENCE])
        self._model_info: encoder_pb2.ModelInfo | None = None

    async def encode(self, image: bytes, request_id: str = "") -> encoder_pb2.EncodeResponse:
        request = encoder_pb2.EncodeRequest(images=[image])
        response = await self.call(
            ENCODER, self._encoder.Encode, request, self._config.encode_timeout_s, request_id
        )
        self.remember_model(response.model)
        return response

    async def search(
        self,
        query: common_pb2.Embedding,
        limit: int,
        search_filter: search_pb2.Filter | None = None,
        request_id: str = "",
        offset: int = 0,
        parts: Sequence[tuple[int, int]] = (),
        part_query: common_pb2.Embedding | None = None,
    ) -> search_pb2.SearchResponse:
        """The nearest artworks; with `parts`, each hit also carries its part projections (search.proto)."""
        request = search_pb2.SearchRequest(
            collection=self._config.collection,
            query=query,
            limit=limit,
            offset=offset,
            filter=search_filter,
            parts=[search_pb2.VectorPart(offset=o, length=n) for o, n in parts],
            part_query=part_query,
        )
        return await self.call(
            SEARCH, self._search.Search, request, self._config.search_timeout_s, request_id
        )

    async def distances(
        self,
        source_artist: str,
        candidate_artists: Sequence[str],
        request_id: str = "",
        *,
        with_paths: bool = False,
    ) -> influence_pb2.DistancesResponse:
        request = influence_pb2.DistancesRequest(
            source_artist=source_artist, candidate_artists=list(candidate_artists), with_paths=with_paths
        )
        return await self.call(
            INFLUENCE, self._influence.Distances, request, self._config.influence_timeout_s, request_id
        )

    async def get_artworks(
        self, ids: Sequence[str], with_embeddings: bool = False, request_id: str = ""
    ) -> search_pb2.GetResponse:
        request = search_pb2.GetRequest(
            collection=self._config.collection, ids=list(ids), with_embeddings=with_embeddings
        )
        return await self.call(SEARCH, self._search.Get, request, self._config.search_timeout_s, request_id)

    async def model_info(self, request_id: str = "") -> encoder_pb2.ModelInfo:
        """The encoder's model and descriptor layout: asked once, then kept (every Encode answer refreshes
        it, so a redeployed encoder with another model is noticed on the next search)."""
        if self._model_info is None:
            self._model_info = await self.call(
                ENCODER,
                self._encoder.GetModelInfo,
                encoder_pb2.GetModelInfoRequest(),
                self._config.encode_timeout_s,
                request_id,
            )
        return self._model_info

    def remember_model(self, info: encoder_pb2.ModelInfo) -> None:
        if info.dimension:
            self._model_info = info

    def channel(self, service: str) -> grpc.aio.Channel:
        """The shared channel to one service, for stubs of RPCs this class does not wrap."""
        return self._channels[service]

    async def readiness(self, timeout: float = 1.0) -> dict[str, bool]:
        """Health of every service, checked concurrently."""
        names = list(self._channels)
        states = await asyncio.gather(*(is_serving(self._channels[n], timeout=timeout) for n in names))
        return dict(zip(names, states, strict=True))

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))

    @staticmethod
    async def call(service: str, method, request, timeout: float, request_id: str):  # noqa: ANN001
        # Metadata: the request id and the trace context; records latency, failures and a client span.
        with downstream_call(service, method, request_id) as metadata:
            try:
                return await method(request, timeout=timeout, metadata=metadata)
            except grpc.aio.AioRpcError as error:
                raise DownstreamError(service, error.code(), error.details() or "") from error
