"""The remote calls ingest makes, each with a deadline and retries on transient failures.

A call that still fails after its retries raises `ServiceFailed`: the run stops (progress is saved) instead
of rejecting good artworks because a service was briefly away.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from artsearch.grpc_client import open_channel
from artsearch.model_aliases import alias_map, model_alias, resolved
from artsearch.v1 import (
    common_pb2,
    encoder_pb2,
    encoder_pb2_grpc,
    influence_pb2,
    influence_pb2_grpc,
    search_pb2,
    search_pb2_grpc,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
# The encoder names rejected images as "image <index>: <reason>", joined by "; ".
_IMAGE_REASON = re.compile(r"image (\d+): (.*?)(?=; image \d+: |$)")
# Encoder requests stay under the gRPC message limit (64 MiB) and the encoder's batch limit.
MAX_ENCODE_IMAGES = 64
MAX_ENCODE_BYTES = 32 * 1024 * 1024


# The influence service takes at most 1000 names per call (services/influence/server.py MAX_NAMES).
ARTISTS_PER_CALL = 1000


class ServiceFailed(RuntimeError):
    """A service kept failing (or refused a request it should take); ingest cannot go on."""


@dataclass(frozen=True)
class Encoded:
    index: int  # position in the images given to `encode_all`
    embedding: common_pb2.Embedding | None
    reason: str = ""  # why the encoder rejected the image, when embedding is None


class IngestServices:
    """gRPC stubs of the encoder, search and influence services for one ingest run."""

    def __init__(
        self, addresses: dict[str, str], collection: str, timeout_s: float, retries: int = 3
    ) -> None:
        self.collection = collection
        self.timeout_s = timeout_s
        self.retries = retries
        self._channels = {service: open_channel(address) for service, address in addresses.items()}
        self.encoder = encoder_pb2_grpc.EncoderServiceStub(self._channels["encoder"])
        self.search = search_pb2_grpc.SearchServiceStub(self._channels["search"])
        self.influence = influence_pb2_grpc.InfluenceServiceStub(self._channels["influence"])
        self.model_versions: set[str] = set()  # of every Encode answer: the model(s) this run encoded with

    async def close(self) -> None:
        await asyncio.gather(*(channel.close() for channel in self._channels.values()))

    async def _call(self, what: str, call: Callable[[], Awaitable[T]]) -> T:
        delay = 0.5
        for attempt in range(self.retries + 1):
            try:
                return await call()
            except grpc.aio.AioRpcError as error:
                if error.code() not in TRANSIENT or attempt == self.retries:
                    raise ServiceFailed(f"{what} failed: {error.code().name}: {error.details()}") from None
                log.warning("%s failed (%s), retrying in %.1f s", what, error.code().name, delay)
                await asyncio.sleep(delay)
                delay *= 2
        raise AssertionError("unreachable")

    async def stored(self, ids: Sequence[str]) -> dict[str, common_pb2.Artwork]:
        """The records the search service holds for `ids` (without vectors)."""
        if not ids:
            return {}
        request = search_pb2.GetRequest(collection=self.collection, ids=list(ids))
        reply = await self._call("search Get", lambda: self.search.Get(request, timeout=self.timeout_s))
        return {item.artwork.id: item.artwork for item in reply.items}

    async def count(self) -> int:
        request = search_pb2.CountRequest(collection=self.collection)
        reply = await self._call("search Count", lambda: self.search.Count(request, timeout=self.timeout_s))
        return reply.count

    async def upsert(self, items: Sequence[search_pb2.IndexedArtwork]) -> int:
        if not items:
            return 0
        request = search_pb2.UpsertRequest(collection=self.collection, items=list(items))
        reply = await self._call("search Upsert", lambda: self.search.Upsert(request, timeout=self.timeout_s))
        return reply.upserted

    async def record_model(self, collection_name: str, model_version: str) -> str:
        """Points `<collection_name>__<model_version>` (artsearch.model_aliases) at the collection the name
        stands for (through its alias, if it is one), unless that model alias exists already. Returns the
        model alias set, or "" when it was there."""
        listed = await self._call(
            "search ListAliases",
            lambda: self.search.ListAliases(search_pb2.ListAliasesRequest(), timeout=self.timeout_s),
        )
        aliases = alias_map(listed)
        name = model_alias(collection_name, model_version)
        if name in aliases:
            return ""
        request = search_pb2.SetAliasRequest(alias=name, collection=resolved(aliases, collection_name))
        await self._call("search SetAlias", lambda: self.search.SetAlias(request, timeout=self.timeout_s))
        return name

    async def add_artists(self, names: Sequence[str]) -> int:
        """Adds the artists the graph does not know yet; how many those were. Counted from a lookup first,
        not from AddArtists' answer: a call retried after a lost answer would find them already added."""
        added = 0
        for start in range(0, len(names), ARTISTS_PER_CALL):
            added += await self._add_new_artists(names[start : start + ARTISTS_PER_CALL])
        return added

    async def _add_new_artists(self, names: Sequence[str]) -> int:
        lookup = influence_pb2.GetArtistsRequest(names=list(names))
        known = await self._call(
            "influence GetArtists", lambda: self.influence.GetArtists(lookup, timeout=self.timeout_s)
        )
        if not known.missing:
            return 0
        request = influence_pb2.AddArtistsRequest(
            artists=[influence_pb2.Artist(name=n) for n in known.missing]
        )
        await self._call(
            "influence AddArtists", lambda: self.influence.AddArtists(request, timeout=self.timeout_s)
        )
        return len(known.missing)

    async def encode_all(self, images: Sequence[bytes]) -> list[Encoded]:
        """Every image encoded or rejected with the encoder's reason, in requests within the limits."""
        results: list[Encoded] = []
        for chunk in encode_chunks([len(data) for data in images]):
            results += await self._encode([(index, images[index]) for index in chunk])
        return sorted(results, key=lambda encoded: encoded.index)

    async def _encode(self, images: list[tuple[int, bytes]]) -> list[Encoded]:
        """One request; when the encoder rejects some images, those are dropped (by the indices its message
        names, else by encoding one at a time) and the rest encoded again."""
        if not images:
            return []
        request = encoder_pb2.EncodeRequest(images=[data for _, data in images])
        try:
            reply = await self._call("encoder Encode", lambda: self._encode_call(request))
        except _Rejected as rejected:
            return await self._encode_without(images, rejected.reasons)
        if reply.model.version:
            self.model_versions.add(reply.model.version)
        return [Encoded(index, emb) for (index, _), emb in zip(images, reply.embeddings, strict=True)]

    async def _encode_call(self, request: encoder_pb2.EncodeRequest) -> encoder_pb2.EncodeResponse:
        try:
            return await self.encoder.Encode(request, timeout=self.timeout_s)
        except grpc.aio.AioRpcError as error:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                raise _Rejected(rejection_reasons(error.details() or "")) from None
            raise

    async def _encode_without(
        self, images: list[tuple[int, bytes]], reasons: dict[int, str]
    ) -> list[Encoded]:
        if len(images) == 1:
            reason = next(iter(reasons.values()), "rejected by the encoder")
            return [Encoded(images[0][0], None, reason)]
        named = {position for position in reasons if position < len(images)}
        if not named:
            singles = await asyncio.gather(*(self._encode([image]) for image in images))
            return [encoded for results in singles for encoded in results]
        rejected = [Encoded(images[p][0], None, reasons[p]) for p in sorted(named)]
        rest = [image for position, image in enumerate(images) if position not in named]
        return rejected + await self._encode(rest)


class _Rejected(Exception):
    def __init__(self, reasons: dict[int, str]) -> None:
        super().__init__(reasons)
        self.reasons = reasons


def rejection_reasons(details: str) -> dict[int, str]:
    """{image index: reason} from the encoder's INVALID_ARGUMENT message."""
    return {int(match.group(1)): match.group(2).strip() for match in _IMAGE_REASON.finditer(details)}


def encode_chunks(
    sizes: Sequence[int], max_images: int = MAX_ENCODE_IMAGES, max_bytes: int = MAX_ENCODE_BYTES
) -> list[list[int]]:
    """Indices of `sizes` grouped into requests of at most `max_images` images and `max_bytes` bytes
    (an image larger than `max_bytes` goes alone)."""
    chunks: list[list[int]] = []
    current: list[int] = []
    current_bytes = 0
    for index, size in enumerate(sizes):
        if current and (len(current) == max_images or current_bytes + size > max_bytes):
            chunks.append(current)
            current, current_bytes = [], 0
        current.append(index)
        current_bytes += size
    if current:
        chunks.append(current)
    return chunks
