"""The gateway's gRPC clients of the encoder, search and influence services, each call with a deadline.

A query the encoder made with model V searches the model alias `<SEARCH_COLLECTION>__V` when the search
service has it (artsearch/model_aliases.py; `artsearch ingest` and `artsearch reindex` set them), else
SEARCH_COLLECTION: while the encoder pods roll from one model to another, each query meets the collection its
own model encoded. Which aliases exist is asked with ListAliases and kept MODEL_ALIAS_TTL_S seconds."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from artsearch.grpc_client import is_serving, open_channel
from artsearch.model_aliases import alias_map, model_alias
from artsearch.v1 import (
    common_pb2,
    encoder_pb2,
    encoder_pb2_grpc,
    influence_pb2,
    influence_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)
from services.gateway.alias_cache import AliasCache
from services.gateway.config import GatewayConfig
from services.gateway.telemetry import downstream_call, record_downstream_health

log = logging.getLogger(__name__)

ENCODER = "encoder"
SEARCH = "search"
INFLUENCE = "influence"
# Without these no search can be answered; without influence the answers are degraded, not refused.
REQUIRED_SERVICES = (ENCODER, SEARCH)


class DownstreamError(Exception):
    """A downstream call failed; `service` names which one, `status` is the gRPC status."""

    def __init__(self, service: str, status: grpc.StatusCode, details: str) -> None:
        super().__init__(f"{service}: {status.name}: {details}")
        self.service = service
        self.status = status
        self.details = details


@dataclass(frozen=True)
class ServiceStubs:
    """What the gateway calls each service through: gRPC stubs, or -- for the load test's in-process
    yardstick (bench/in_process.py) -- objects with the same methods that call the servicers directly."""

    encoder: Any
    search: Any
    influence: Any


class Downstream:
    """Long-lived channels to the three services (one HTTP/2 connection each, reused by every request)."""

    def __init__(self, config: GatewayConfig, stubs: ServiceStubs | None = None) -> None:
        self._config = config
        self._channels: dict[str, grpc.aio.Channel] = {}
        if stubs is None:
            self._channels = {
                ENCODER: open_channel(config.encoder_addr),
                SEARCH: open_channel(config.search_addr),
                INFLUENCE: open_channel(config.influence_addr),
            }
            stubs = ServiceStubs(
                encoder_pb2_grpc.EncoderServiceStub(self._channels[ENCODER]),
                search_pb2_grpc.SearchServiceStub(self._channels[SEARCH]),
                influence_pb2_grpc.InfluenceServiceStub(self._channels[INFLUENCE]),
            )
        self._encoder, self._search, self._influence = stubs.encoder, stubs.search, stubs.influence
        self._model_info: encoder_pb2.ModelInfo | None = None
        self._aliases = AliasCache(self._list_aliases, config.model_alias_ttl_s)

    async def encode(
        self, image: bytes, request_id: str = "", *, analyse: bool = False
    ) -> encoder_pb2.EncodeResponse:
        """The picture's descriptor; with `analyse`, also the painting located in it (its crop's descriptor,
        in the same call) and whether it is grey-scale (encoder.proto, ImageAnalysis)."""
        request = encoder_pb2.EncodeRequest(images=[image], analyse=analyse)
        response = await self.call(
            ENCODER, self._encoder.Encode, request, self._config.encode_timeout_s, request_id
        )
        self.remember_model(response.model)
        return response

    async def encode_in_stages(
        self, image: bytes, request_id: str = ""
    ) -> tuple[encoder_pb2.EncodeResponse, asyncio.Future[encoder_pb2.EncodeResponse]]:
        """The analysed picture in two stages (encoder.proto, EncodeInStages): the whole photo's descriptor,
        returned as soon as it comes, and the analysis to come (a task reading the rest of the call, under
        the same deadline). DownstreamError as `encode`, from this call or from the task."""
        whole: asyncio.Future[encoder_pb2.EncodeResponse] = asyncio.get_running_loop().create_future()
        reading = asyncio.ensure_future(self._read_stages(image, request_id, whole))
        try:
            await asyncio.wait((whole, reading), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            reading.cancel()
            raise
        if not whole.done():
            await reading  # the call failed before its first message: raises its DownstreamError
            raise DownstreamError(ENCODER, grpc.StatusCode.INTERNAL, "the encoder sent no descriptor")
        return whole.result(), reading

    async def _read_stages(
        self, image: bytes, request_id: str, whole: asyncio.Future[encoder_pb2.EncodeResponse]
    ) -> encoder_pb2.EncodeResponse:
        request = encoder_pb2.EncodeRequest(images=[image], analyse=True)
        method = self._encoder.EncodeInStages
        with downstream_call(ENCODER, method, request_id) as metadata:
            try:
                messages = aiter(method(request, timeout=self._config.encode_timeout_s, metadata=metadata))
                first = await anext(messages)
                self.remember_model(first.model)
                whole.set_result(first)
                return await anext(messages)
            except grpc.aio.AioRpcError as error:
                raise DownstreamError(ENCODER, error.code(), error.details() or "") from error
            except StopAsyncIteration:
                raise DownstreamError(
                    ENCODER, grpc.StatusCode.INTERNAL, "the encoder's answer ended before the analysis"
                ) from None

    async def search(
        self,
        query: common_pb2.Embedding,
        limit: int,
        search_filter: search_pb2.Filter | None = None,
        request_id: str = "",
        offset: int = 0,
        parts: Sequence[tuple[int, int]] = (),
        part_query: common_pb2.Embedding | None = None,
        collection: str = "",
        match_regions: bool = False,
    ) -> search_pb2.SearchResponse:
        """The nearest artworks in `collection` (default: the configured one); with `parts`, each hit also
        carries its part projections; with `match_regions`, artworks also match by their regions
        (search.proto)."""
        request = search_pb2.SearchRequest(
            collection=collection or self._config.collection,
            query=query,
            limit=limit,
            offset=offset,
            filter=search_filter,
            parts=[search_pb2.VectorPart(offset=o, length=n) for o, n in parts],
            part_query=part_query,
            match_regions=match_regions,
        )
        return await self.call(
            SEARCH, self._search.Search, request, self._config.search_timeout_s, request_id
        )

    async def model_collection(self, model_version: str, request_id: str = "") -> str:
        """Where a query made by `model_version` searches: its model alias when the search service has it,
        else the configured collection (also when the aliases cannot be listed)."""
        try:
            name = model_alias(self._config.collection, model_version)
        except ValueError:  # no version, or a configured name model aliases cannot be made of
            return self._config.collection
        aliases = await self._aliases.get(request_id)
        return name if aliases is not None and name in aliases else self._config.collection

    async def in_model_collection(
        self,
        model_version: str,
        run: Callable[[str], Awaitable[search_pb2.SearchResponse]],
        request_id: str = "",
    ) -> tuple[str, search_pb2.SearchResponse]:
        """`run(collection)` (a search) on the collection of `model_version` (`model_collection`), and that
        collection. A model alias removed since the aliases were listed answers as an unknown collection (no
        hits; NOT_FOUND on an engine that says so): then the aliases are listed again and, when the model
        alias is gone, `run` runs once more on the configured collection."""
        collection = await self.model_collection(model_version, request_id)
        found: search_pb2.SearchResponse | None = None
        try:
            found = await run(collection)
        except DownstreamError as error:
            if collection == self._config.collection or error.status != grpc.StatusCode.NOT_FOUND:
                raise
        if found is not None and (found.hits or collection == self._config.collection):
            return collection, found
        self._aliases.expire()
        again = await self.model_collection(model_version, request_id)
        if again == collection and found is not None:
            return collection, found  # the model alias is still there: its collection found nothing
        return again, await run(again)

    async def _list_aliases(self, request_id: str) -> dict[str, str]:
        reply = await self.call(
            SEARCH,
            self._search.ListAliases,
            search_pb2.ListAliasesRequest(),
            self._config.search_timeout_s,
            request_id,
        )
        return alias_map(reply)

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

    def known_model_version(self) -> str | None:
        """The version of the encoder's model as last seen (None: not asked yet)."""
        return None if self._model_info is None else self._model_info.version

    def channel(self, service: str) -> grpc.aio.Channel:
        """The shared channel to one service, for stubs of RPCs this class does not wrap."""
        return self._channels[service]

    async def readiness(self, timeout: float = 1.0) -> dict[str, bool]:
        """Health of every service, checked concurrently (each within `timeout`); also exported as the
        `artsearch_downstream_up` gauge."""
        names = list(self._channels)
        states = await asyncio.gather(*(is_serving(self._channels[n], timeout=timeout) for n in names))
        health = dict(zip(names, states, strict=True))
        record_downstream_health(health)
        return health

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
