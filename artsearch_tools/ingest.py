"""Loads a catalogue (a folder or a URL manifest) through the encoder into the search and influence services.

For each batch of artworks: ask the search service which are stored already (Get), skip those whose record
and image are unchanged (no encoding), read or download the others, encode them (bad images are rejected
one by one, never the batch), upsert them (ids are idempotent), record them in the state file (fsync'd),
and register their artists with the influence service. Batches run `concurrency` at a time. Stopping
(`request_stop`, the first Ctrl-C of the CLI) lets the batches in flight finish; their progress is saved
and a re-run resumes where this one stopped.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from artsearch.style_vote import ART, STYLE_LABELS_KEY
from artsearch.v1 import common_pb2, search_pb2
from artsearch_tools.catalogue.folder import Catalogue, CatalogueEntry
from artsearch_tools.catalogue.manifest import is_url
from artsearch_tools.ingest_download import Downloader, DownloadLimits, DownloadRejected
from artsearch_tools.ingest_regions import RegionCropFailed, region_crops
from artsearch_tools.ingest_report import IngestReport
from artsearch_tools.ingest_services import IngestServices, ServiceFailed
from artsearch_tools.ingest_state import IngestState, Shard, fingerprint
from artsearch_tools.regions import DEFAULT_REGION_GRID, RegionGrid

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_SHA256_KEY",
    "IngestOptions",
    "IngestReport",
    "IngestRun",
    "IngestTargets",
    "ServiceFailed",
    "catalogue_path",
    "ingest_catalogue",
]

# Below the gRPC message limit (64 MiB) with room for the rest of the request.
DEFAULT_MAX_IMAGE_BYTES = 48 * 1024 * 1024
# The `extra` key ingest stores the SHA-256 of an artwork's image bytes under. The stored record then
# says which picture its vector was made from, so any later run (another machine, no state file) can
# tell a changed image from an unchanged one; a metadata column of this name is overwritten.
IMAGE_SHA256_KEY = "image_sha256"
# The `extra` key ingest stores the region grid under (artsearch_tools.regions, e.g. "2x2@0.5,4x4@0.3"),
# when it stored region descriptors with the artwork: a later run with another grid (or regions off)
# re-encodes.
REGION_GRID_KEY = "region_grid"
# The keys only ingest writes: never taken from a catalogue, left out when comparing metadata.
INGEST_KEYS = (IMAGE_SHA256_KEY, REGION_GRID_KEY)


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
    # The name `collection=""` stands for (the search service's SEARCH_COLLECTION): model aliases are named
    # after it (artsearch.model_aliases).
    default_collection: str = "artworks"


@dataclass(frozen=True)
class IngestOptions:
    # Where the state file lives; None: no state file (the search service alone says what is stored).
    state_dir: Path | None = None
    shard: Shard = field(default_factory=Shard)
    max_rate: float | None = None  # artworks per second at most (spares a production encoder)
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    download: DownloadLimits = field(default_factory=DownloadLimits)
    retries: int = 3  # per remote call, on transient failures
    reencode: bool = False  # encode and store every artwork again, stored or not (e.g. after a model change)
    # Windows encoded beside the whole picture (a detail photo finds the artwork); None: no regions.
    regions: RegionGrid | None = DEFAULT_REGION_GRID


def artwork_record(catalogue: Catalogue, entry: CatalogueEntry) -> common_pb2.Artwork:
    return common_pb2.Artwork(
        id=entry.id,
        title=entry.title,
        artist=entry.artist,
        style=entry.style,
        genre=entry.genre,
        year=entry.year or 0,
        image_uri=entry.filename,
        catalogue=catalogue.name,
        # The image hash and region grid are ingest's to write (`with_image_hash`), never the catalogue's.
        extra={
            **{key: value for key, value in entry.extra.items() if key not in INGEST_KEYS},
            # What the catalogue's style labels are (art styles unless it declares otherwise): only art
            # styles vote in a style prediction (artsearch.style_vote).
            STYLE_LABELS_KEY: catalogue.style_labels or ART,
        },
    )


def without_image_hash(artwork: common_pb2.Artwork) -> common_pb2.Artwork:
    """The record's metadata alone: what the catalogue says, to compare with what is stored (without the
    image hash and region grid ingest adds)."""
    if not any(key in artwork.extra for key in INGEST_KEYS):
        return artwork
    metadata = common_pb2.Artwork()
    metadata.CopyFrom(artwork)
    for key in INGEST_KEYS:
        if key in metadata.extra:
            del metadata.extra[key]
    return metadata


def with_image_hash(
    artwork: common_pb2.Artwork, image_sha256: str, region_grid: str = ""
) -> common_pb2.Artwork:
    """The record to store: the metadata, the hash of the image its vector is made from and, when region
    descriptors go with it, their grid."""
    record = common_pb2.Artwork()
    record.CopyFrom(artwork)
    record.extra[IMAGE_SHA256_KEY] = image_sha256
    if region_grid:
        record.extra[REGION_GRID_KEY] = region_grid
    return record


@dataclass(eq=False)  # compared by identity
class _Item:
    entry: CatalogueEntry
    artwork: common_pb2.Artwork
    stored: common_pb2.Artwork | None = None
    data: bytes | None = None
    fingerprint: str = ""
    image_sha256: str = ""  # of `data`, once read or downloaded

    @property
    def record(self) -> bytes:
        return self.artwork.SerializeToString(deterministic=True)


class _Pacer:
    """At most `rate` artworks per second over the run."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._next = time.monotonic()

    async def wait(self, count: int) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        start = max(now, self._next)
        self._next = start + count / self.rate
        await asyncio.sleep(start - now)


class IngestRun:
    """One ingest of one catalogue (one shard of it)."""

    def __init__(self, catalogue: Catalogue, targets: IngestTargets, options: IngestOptions) -> None:
        self.catalogue = catalogue
        self.targets = targets
        self.options = options
        self.entries = [e for e in catalogue.entries if options.shard.owns(e.id)]
        self.report = IngestReport(
            catalogue.name,
            collection=targets.collection,
            shard=f"{options.shard.index}/{options.shard.count}",
            total=len(self.entries),
        )
        for problem in catalogue.problems:
            item = problem.filename or f"row {problem.row}"
            if options.shard.owns(item):
                self.report.total += 1
                self.report.reject(item, problem.reason)
        self.state: IngestState | None = None
        if options.state_dir is not None:
            self.state = IngestState(options.state_dir, catalogue.name, targets.collection, options.shard)
            self.report.state_file = str(self.state.path)
        self._stop = asyncio.Event()
        self._pacer = _Pacer(options.max_rate)
        self._artists_sent: set[str] = set()
        self._downloader: Downloader | None = None
        self.model_alias = ""  # the model alias this run set ("" when none)
        self._region_grid = str(options.regions) if options.regions is not None else ""

    def request_stop(self) -> None:
        """Take no new batch; the ones in flight finish and are saved."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run(self, progress: Callable[[int, int], None] | None = None) -> IngestReport:
        started = time.perf_counter()
        if self.state is not None:
            await asyncio.to_thread(self.state.load)
        services = IngestServices(
            {
                "encoder": self.targets.encoder_addr,
                "search": self.targets.search_addr,
                "influence": self.targets.influence_addr,
            },
            self.targets.collection,
            self.targets.timeout_s,
            self.options.retries,
        )
        if any(is_url(entry.filename) for entry in self.entries):
            self._downloader = Downloader(self.options.download)
        try:
            await self._run_batches(services, progress)
            if not (self.stopping and self.report.processed < self.report.total):  # not interrupted
                await self._record_model(services)
        finally:
            self.report.interrupted = self.stopping and self.report.processed < self.report.total
            self.report.seconds = time.perf_counter() - started
            if self.state is not None:
                self.state.close()
            if self._downloader is not None:
                await self._downloader.close()
            await services.close()
        return self.report

    async def _run_batches(
        self, services: IngestServices, progress: Callable[[int, int], None] | None
    ) -> None:
        batches = self._batches()

        async def worker() -> None:
            for batch in batches:
                await self._pacer.wait(len(batch))
                await self._process(services, batch)
                if progress:
                    progress(self.report.processed, self.report.total)
                if self.stopping:
                    return

        if progress:
            progress(self.report.processed, self.report.total)
        workers = [asyncio.create_task(worker()) for _ in range(max(1, self.targets.concurrency))]
        try:
            await asyncio.gather(*workers)
        finally:
            for task in workers:
                task.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    def _batches(self) -> Iterator[list[CatalogueEntry]]:
        size = max(1, self.targets.batch_size)
        for start in range(0, len(self.entries), size):
            if self.stopping:
                return
            yield self.entries[start : start + size]

    async def _process(self, services: IngestServices, batch: Sequence[CatalogueEntry]) -> None:
        items = [_Item(entry, artwork_record(self.catalogue, entry)) for entry in batch]
        stored = await services.stored([item.entry.id for item in items])
        for item in items:
            item.stored = stored.get(item.entry.id)
        remote = [item for item in items if is_url(item.entry.filename)]
        local = [item for item in items if not is_url(item.entry.filename)]
        # A URL's fingerprint is its record's (URL included): a stored, unchanged URL is not downloaded again.
        for item in remote:
            item.fingerprint = fingerprint(item.record)
        unchanged = [item for item in remote if self._is_unchanged(item)]
        await asyncio.gather(*(self._download(item) for item in remote if item not in unchanged))
        await asyncio.to_thread(self._read_files, local)
        unchanged += [item for item in local if item.data is not None and self._is_unchanged(item)]
        self.report.skipped += len(unchanged)
        to_encode = [item for item in items if item.data is not None and item not in unchanged]
        written = await self._encode_and_store(services, to_encode)
        if self.state is not None:
            rows = [(item.entry.id, item.fingerprint) for item in unchanged + written]
            await asyncio.to_thread(
                self.state.record, [row for row in rows if self.state.fingerprint_of(row[0]) != row[1]]
            )
        await self._add_artists(services, unchanged + written)

    def _is_unchanged(self, item: _Item) -> bool:
        """Stored with the same metadata and made from the same image bytes: the hash stored with the
        record says so, whether or not a state file exists. A URL not downloaded (no bytes to hash) is
        judged by its record (URL included) and the state file's fingerprint when there is one."""
        if self.options.reencode or item.stored is None:
            return False
        if without_image_hash(item.stored) != item.artwork:
            return False
        if item.stored.extra.get(REGION_GRID_KEY, "") != self._region_grid:
            return False  # regions turned on or off, or another grid: encode again
        recorded = self.state.fingerprint_of(item.entry.id) if self.state is not None else None
        if item.data is None:
            return recorded is None or recorded == item.fingerprint
        stored_hash = item.stored.extra.get(IMAGE_SHA256_KEY)
        if stored_hash:
            return stored_hash == item.image_sha256
        # Stored by an ingest that kept no image hash: only the state file can vouch for the image.
        return recorded == item.fingerprint

    def _read_files(self, items: Sequence[_Item]) -> None:
        for item in items:
            path = self.catalogue.root / item.entry.filename
            try:
                size = path.stat().st_size
                if size > self.options.max_image_bytes:
                    reason = f"{item.entry.filename} is {size:,} bytes, over the limit"
                    self.report.reject(item.entry.id, reason)
                    continue
                item.data = path.read_bytes()
            except OSError as error:
                self.report.reject(item.entry.id, f"cannot read {item.entry.filename}: {error.strerror}")
                continue
            item.fingerprint = fingerprint(item.record, item.data)
            item.image_sha256 = hashlib.sha256(item.data).hexdigest()

    async def _download(self, item: _Item) -> None:
        assert self._downloader is not None
        try:
            item.data = await self._downloader.fetch(item.entry.filename)
        except DownloadRejected as rejection:
            self.report.reject(item.entry.id, f"{item.entry.filename}: {rejection.reason}")
            return
        item.image_sha256 = hashlib.sha256(item.data).hexdigest()

    async def _encode_and_store(self, services: IngestServices, items: list[_Item]) -> list[_Item]:
        if not items:
            return []
        self.report.encoded += len(items)
        encoded = await services.encode_all([item.data or b"" for item in items])
        ready: list[_Item] = []
        embeddings: list[common_pb2.Embedding] = []
        for result in encoded:
            item = items[result.index]
            if result.embedding is None:
                self.report.reject(item.entry.id, f"{_short(item.entry.filename)}: {result.reason}")
                continue
            ready.append(item)
            embeddings.append(result.embedding)
        regions = await self._encode_regions(services, ready)
        records = [
            search_pb2.IndexedArtwork(
                artwork=with_image_hash(item.artwork, item.image_sha256, self._region_grid if own else ""),
                embedding=embedding,
                regions=own,
            )
            for item, embedding, own in zip(ready, embeddings, regions, strict=True)
        ]
        await services.upsert(records)
        for item in ready:
            if item.stored is None:
                self.report.added += 1
            else:
                self.report.updated += 1
        return ready

    async def _encode_regions(
        self, services: IngestServices, items: list[_Item]
    ) -> list[list[common_pb2.Embedding]]:
        """Per item, the descriptors of its picture's region crops (empty without a grid, or when the
        picture cannot be cut: it is stored with its whole descriptor alone, and the reason logged)."""
        grid = self.options.regions
        if grid is None or not items:
            return [[] for _ in items]
        crops = await asyncio.to_thread(_all_region_crops, items, grid)
        flat = [crop for item_crops in crops for crop in item_crops]
        self.report.regions_encoded += len(flat)
        encoded = await services.encode_all(flat)
        per_item: list[list[common_pb2.Embedding]] = []
        start = 0
        for item_crops in crops:
            results = encoded[start : start + len(item_crops)]
            start += len(item_crops)
            # All or nothing: an artwork's regions come from one grid (REGION_GRID_KEY says which).
            complete = all(result.embedding is not None for result in results)
            per_item.append([result.embedding for result in results] if complete and results else [])
        return per_item

    async def _record_model(self, services: IngestServices) -> None:
        """After a complete run: `<collection>__<model version>` names the collection (for the gateway's
        per-model routing and `artsearch reindex`), unless set already. Only when every artwork encoded by
        this run came from one model; a failure here is logged, the ingest itself succeeded."""
        versions = services.model_versions
        if len(versions) != 1:
            if versions:
                log.warning("the encoder changed models during the ingest %s: no model alias set", versions)
            return
        collection = self.targets.collection or self.targets.default_collection
        try:
            self.model_alias = await services.record_model(collection, next(iter(versions)))
        except (ServiceFailed, ValueError) as error:
            log.warning("model alias of %r not set: %s", collection, error)
            return
        if self.model_alias:
            log.info("model alias %s set for collection %s", self.model_alias, collection)

    async def _add_artists(self, services: IngestServices, items: Sequence[_Item]) -> None:
        names = sorted({item.entry.artist for item in items if item.entry.artist} - self._artists_sent)
        if names:
            self._artists_sent.update(names)
            # Awaited first, then added: `report.x += await ...` reads the count before the await and
            # would lose a concurrent worker's update.
            added = await services.add_artists(names)
            self.report.artists_added += added


def _all_region_crops(items: Sequence[_Item], grid: RegionGrid) -> list[list[bytes]]:
    crops: list[list[bytes]] = []
    for item in items:
        try:
            crops.append(region_crops(item.data or b"", grid))
        except RegionCropFailed as failure:
            log.warning("%s stored without regions: %s", item.entry.id, failure)
            crops.append([])
    return crops


def _short(filename: str, limit: int = 120) -> str:
    return filename if len(filename) <= limit else filename[: limit - 1] + "…"


async def ingest_catalogue(
    catalogue: Catalogue,
    targets: IngestTargets,
    progress: Callable[[int, int], None] | None = None,
    options: IngestOptions | None = None,
) -> IngestReport:
    """Encodes every artwork not stored yet, upserts it (idempotent ids) and registers its artist. Bad
    files are reported, never fatal; a service that keeps failing raises ServiceFailed."""
    return await IngestRun(catalogue, targets, options or IngestOptions()).run(progress)


def catalogue_path(path: str | Path) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"catalogue folder {folder} does not exist")
    return folder
