"""Loads a catalogue folder through the encoder into the search and influence services."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from artsearch.catalogue.folder import Catalogue, CatalogueEntry
from artsearch.grpc_client import open_channel
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


@dataclass(frozen=True)
class IngestTargets:
    encoder_addr: str
    search_addr: str
    influence_addr: str
    collection: str = ""
    batch_size: int = 16
    # Batches in flight at once: the encoder batches internally, this keeps it and search busy together.
    concurrency: int = 2
    timeout_s: float = 120.0


@dataclass
class IngestReport:
    catalogue: str
    added: int = 0
    rejected: list[tuple[str, str]] = field(default_factory=list)
    artists_added: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        lines = [
            f"catalogue {self.catalogue}: {self.added} artworks stored, {len(self.rejected)} rejected, "
            f"{self.artists_added} new artists, {self.seconds:.1f} s"
        ]
        lines += [f"  rejected {item}: {reason}" for item, reason in self.rejected]
        return "\n".join(lines)


def _artwork(catalogue: Catalogue, entry: CatalogueEntry) -> common_pb2.Artwork:
    return common_pb2.Artwork(
        id=entry.id,
        title=entry.title,
        artist=entry.artist,
        style=entry.style,
        genre=entry.genre,
        year=entry.year or 0,
        image_uri=entry.filename,
        catalogue=catalogue.name,
        extra=entry.extra,
    )


class _Ingestor:
    def __init__(
        self, catalogue: Catalogue, targets: IngestTargets, channels: dict[str, grpc.aio.Channel]
    ) -> None:
        self.catalogue = catalogue
        self.targets = targets
        self.encoder = encoder_pb2_grpc.EncoderServiceStub(channels["encoder"])
        self.search = search_pb2_grpc.SearchServiceStub(channels["search"])
        self.influence = influence_pb2_grpc.InfluenceServiceStub(channels["influence"])
        self.report = IngestReport(
            catalogue.name, rejected=[(p.filename or f"row {p.row}", p.reason) for p in catalogue.problems]
        )

    async def run(self, progress: Callable[[int, int], None] | None) -> IngestReport:
        started = time.perf_counter()
        entries = self.catalogue.entries
        batches = [
            entries[i : i + self.targets.batch_size] for i in range(0, len(entries), self.targets.batch_size)
        ]
        limit = asyncio.Semaphore(self.targets.concurrency)
        done = 0

        async def one(batch: Sequence[CatalogueEntry]) -> None:
            nonlocal done
            async with limit:
                await self._store_batch(batch)
            done += len(batch)
            if progress:
                progress(done, len(entries))

        artists = asyncio.create_task(self._add_artists(entries))
        await asyncio.gather(*(one(batch) for batch in batches))
        await artists
        self.report.seconds = time.perf_counter() - started
        return self.report

    async def _store_batch(self, batch: Sequence[CatalogueEntry]) -> None:
        images = await asyncio.to_thread(self._read_images, batch)
        readable = [(entry, data) for entry, data in zip(batch, images, strict=True) if data is not None]
        encoded = await self._encode(readable)
        items = [
            search_pb2.IndexedArtwork(artwork=_artwork(self.catalogue, entry), embedding=embedding)
            for entry, embedding in encoded
        ]
        if items:
            reply = await self.search.Upsert(
                search_pb2.UpsertRequest(collection=self.targets.collection, items=items),
                timeout=self.targets.timeout_s,
            )
            self.report.added += reply.upserted

    def _read_images(self, batch: Sequence[CatalogueEntry]) -> list[bytes | None]:
        images: list[bytes | None] = []
        for entry in batch:
            try:
                images.append((self.catalogue.root / entry.filename).read_bytes())
            except OSError as error:
                self.report.rejected.append((entry.id, f"cannot read {entry.filename}: {error.strerror}"))
                images.append(None)
        return images

    async def _encode(
        self, readable: list[tuple[CatalogueEntry, bytes]]
    ) -> list[tuple[CatalogueEntry, common_pb2.Embedding]]:
        """Encodes a batch; when the encoder rejects an image, encodes one by one to reject only that one."""
        if not readable:
            return []
        try:
            reply = await self.encoder.Encode(
                encoder_pb2.EncodeRequest(images=[data for _, data in readable]),
                timeout=self.targets.timeout_s,
            )
            return [(entry, emb) for (entry, _), emb in zip(readable, reply.embeddings, strict=True)]
        except grpc.aio.AioRpcError as error:
            if error.code() != grpc.StatusCode.INVALID_ARGUMENT:
                raise
            if len(readable) == 1:
                self.report.rejected.append((readable[0][0].id, error.details() or "rejected by the encoder"))
                return []
        encoded = await asyncio.gather(*(self._encode([pair]) for pair in readable))
        return [pair for pairs in encoded for pair in pairs]

    async def _add_artists(self, entries: Sequence[CatalogueEntry]) -> None:
        names = sorted({entry.artist for entry in entries if entry.artist})
        if not names:
            return
        reply = await self.influence.AddArtists(
            influence_pb2.AddArtistsRequest(artists=[influence_pb2.Artist(name=name) for name in names]),
            timeout=self.targets.timeout_s,
        )
        self.report.artists_added = reply.artists_added


async def ingest_catalogue(
    catalogue: Catalogue,
    targets: IngestTargets,
    progress: Callable[[int, int], None] | None = None,
) -> IngestReport:
    """Encodes every artwork, upserts it (idempotent ids) and registers its artist. Bad files are
    reported, never fatal."""
    channels = {
        "encoder": open_channel(targets.encoder_addr),
        "search": open_channel(targets.search_addr),
        "influence": open_channel(targets.influence_addr),
    }
    try:
        return await _Ingestor(catalogue, targets, channels).run(progress)
    finally:
        await asyncio.gather(*(channel.close() for channel in channels.values()))


def catalogue_path(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"catalogue folder {folder} does not exist")
    return folder
