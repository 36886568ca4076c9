"""`artsearch reindex`: every artwork of a collection re-encoded into a new collection, then an alias switch.

    artsearch reindex --from artworks --to artworks-v2 --alias artworks \\
        --model models/efficientnet-lite0-retrained/model.onnx --catalogue data/catalogues/gcompris

1. reads every artwork of `--from` with Scroll (metadata only; `--from` may itself be the alias);
2. reads each artwork's image: `<catalogue folder>/<image_uri>` for a `--catalogue` folder of the artwork's
   catalogue name, else `IMAGE_ROOT/<catalogue>/<image_uri>` (`--image-root`); http(s) URIs are fetched;
3. encodes them with an encoder service running the new model: `--encoder ADDR`, or, with `--model`, one
   started here on a free port for the run;
4. upserts them into `--to` (same ids and metadata), checks the count, and
5. records the new collection's model (`<to>__<new version>`, see artsearch/model_aliases.py), and at the
   switch points the model aliases `<alias>__<old version>` at the old collection and `<alias>__<new
   version>` at `--to`, then `--alias` at `--to` in one atomic step. Queries naming the alias keep answering
   from the old collection until that step, and from the new one after it; the old collection stays for a
   rollback (`artsearch reindex --alias artworks --switch-only --to <old>`, which also points `<alias>__<its
   version>` back at it).

The gateway searches a query made by model V in `<alias>__V` when that alias exists, so while the encoder
pods roll from the old model to the new one (before, during or after the switch) each query meets the
collection its own model encoded; keep both collections until the rollout ends. The old collection's model
is the one recorded by the model aliases pointing at it (`artsearch ingest` and this command set them);
`--source-model-version` names it for a collection filled before model aliases existed.

Artworks whose image cannot be read or encoded are reported and left out; the switch is refused when any
were left out unless `--allow-missing`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from artsearch.grpc_client import is_serving, open_channel
from artsearch.model_aliases import alias_map, collection_versions, model_alias, resolved, version_in
from artsearch.v1 import encoder_pb2, encoder_pb2_grpc, search_pb2, search_pb2_grpc
from artsearch_tools.launcher import free_ports, inherited_environment

log = logging.getLogger(__name__)

SCROLL_PAGE = 64
ENCODER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class ReindexSettings:
    search_addr: str
    source: str  # collection (or alias) to read
    target: str  # new collection to fill
    alias: str = ""  # switched to `target` at the end; "" = no switch
    encoder_addr: str = ""  # an encoder running the new model...
    model: Path | None = None  # ...or the model to start one on for this run
    catalogues: Mapping[str, Path] = field(default_factory=dict)  # catalogue name -> folder
    image_root: Path | None = None
    batch_size: int = 16
    timeout_s: float = 120.0
    replace_collection: bool = False  # the alias name is a collection (ingested before aliases): replace it
    allow_missing: bool = False
    # The model `source` was encoded with, when no model alias records it (filled before model aliases).
    source_model_version: str = ""


@dataclass
class ReindexReport:
    source: str
    target: str
    alias: str
    model_version: str = ""
    read: int = 0
    stored: int = 0
    missing: list[tuple[str, str]] = field(default_factory=list)  # (artwork id, reason)
    switched: bool = False
    previous_collection: str = ""
    seconds: float = 0.0
    source_collection: str = ""  # the collection `source` named when the run started
    source_model_versions: list[str] = field(default_factory=list)  # the model(s) it was encoded with
    model_aliases: dict[str, str] = field(default_factory=dict)  # model alias -> collection, set by this run
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"re-encoded {self.stored}/{self.read} artworks of {self.source!r} into {self.target!r} "
            f"with model {self.model_version} in {self.seconds:.1f} s"
        ]
        lines += [f"  left out {artwork}: {reason}" for artwork, reason in self.missing]
        lines += [f"model alias {name!r} now names {target!r}" for name, target in self.model_aliases.items()]
        if self.switched:
            lines.append(f"alias {self.alias!r} now names {self.target!r} (was {self.previous_collection!r})")
        elif self.alias:
            lines.append(f"alias {self.alias!r} NOT switched")
        lines += [f"note: {note}" for note in self.notes]
        return "\n".join(lines)


@dataclass
class AliasSwitch:
    """What `rollback` did: where the alias pointed before, and the model aliases it moved."""

    alias: str
    collection: str
    previous_collection: str = ""
    model_aliases: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"model alias {name!r} now names {target!r}" for name, target in self.model_aliases.items()]
        lines.append(f"alias {self.alias!r} now names {self.collection!r} (was {self.previous_collection!r})")
        return "\n".join(lines + [f"note: {note}" for note in self.notes])


class ReindexError(RuntimeError):
    """The run stopped before the switch; the alias still names the old collection."""


def image_location(artwork: object, settings: ReindexSettings) -> Path | str:
    """Where an artwork's image is: a local path, or an http(s) URL."""
    uri: str = artwork.image_uri  # type: ignore[attr-defined]
    catalogue: str = artwork.catalogue  # type: ignore[attr-defined]
    if uri.startswith(("http://", "https://")):
        return uri
    if not uri:
        raise ValueError("the artwork has no image_uri")
    if catalogue in settings.catalogues:
        root = Path(settings.catalogues[catalogue])
    elif settings.image_root is not None:
        root = Path(settings.image_root) / catalogue
    else:
        raise ValueError(f"no folder for catalogue {catalogue!r}: pass --catalogue or --image-root")
    path = (root / uri).resolve()
    if not path.is_relative_to(root.resolve()):
        raise ValueError(f"image_uri {uri!r} leaves the catalogue folder")
    return path


async def read_image(location: Path | str, timeout_s: float) -> bytes:
    if isinstance(location, Path):
        return await asyncio.to_thread(location.read_bytes)
    import httpx

    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=True) as client:
        reply = await client.get(location)
        reply.raise_for_status()
        return reply.content


@asynccontextmanager
async def encoder_for(settings: ReindexSettings, log_dir: Path | None = None) -> AsyncIterator[str]:
    """The encoder address: the one given, or one started on `settings.model` for the run."""
    if settings.encoder_addr:
        yield settings.encoder_addr
        return
    if settings.model is None:
        raise ValueError("give an encoder address or a model to start one on")
    port = free_ports(1)[0]
    process = await asyncio.to_thread(_start_encoder, Path(settings.model), port, log_dir)
    address = f"127.0.0.1:{port}"
    try:
        await _wait_serving(address, process)
        yield address
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(process.wait, 10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _start_encoder(model: Path, port: int, log_dir: Path | None) -> subprocess.Popen[bytes]:
    own = {"MODEL_PATH": str(model.resolve()), "ARTSEARCH_HOST": "127.0.0.1", "ARTSEARCH_PORT": str(port)}
    env = {**inherited_environment(own), **own}
    if log_dir is None:
        command = [sys.executable, "-m", "services.encoder"]
        return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    with (log_dir / "reindex-encoder.log").open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "services.encoder"], env=env, stdout=log_file, stderr=subprocess.STDOUT
        )


async def _wait_serving(address: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + ENCODER_START_TIMEOUT_S
    async with open_channel(address) as channel:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ReindexError(f"the encoder on the new model exited with code {process.returncode}")
            if await is_serving(channel):
                return
            await asyncio.sleep(0.2)
    raise ReindexError(f"the encoder on the new model was not serving after {ENCODER_START_TIMEOUT_S:.0f} s")


async def reindex(
    settings: ReindexSettings, progress: Callable[[int], None] | None = None, log_dir: Path | None = None
) -> ReindexReport:
    started = time.perf_counter()
    report = ReindexReport(settings.source, settings.target, settings.alias)
    if settings.target == settings.source:
        raise ValueError("--to must be a new collection, not the one being read")
    async with (
        encoder_for(settings, log_dir) as encoder_addr,
        open_channel(settings.search_addr) as search_channel,
        open_channel(encoder_addr) as encoder_channel,
    ):
        search = search_pb2_grpc.SearchServiceStub(search_channel)
        encoder = encoder_pb2_grpc.EncoderServiceStub(encoder_channel)
        info = await encoder.GetModelInfo(encoder_pb2.GetModelInfoRequest(), timeout=settings.timeout_s)
        report.model_version = info.version
        await _note_source_model(search, settings, report)
        await _copy_all(search, encoder, settings, report, progress)
        stored = await search.Count(
            search_pb2.CountRequest(collection=settings.target), timeout=settings.timeout_s
        )
        if stored.count < report.stored:
            raise ReindexError(
                f"{settings.target!r} holds {stored.count} artworks, {report.stored} were written"
            )
        # The new collection's model, recorded for a later reindex or rollback from it.
        await _point(
            search, settings.target, report.model_version, settings.target, settings.timeout_s, report
        )
        if settings.alias:
            await _switch(search, settings, report)
    report.seconds = time.perf_counter() - started
    return report


async def list_aliases(search: search_pb2_grpc.SearchServiceStub, timeout_s: float) -> dict[str, str]:
    reply = await search.ListAliases(search_pb2.ListAliasesRequest(), timeout=timeout_s)
    return alias_map(reply)


async def _note_source_model(
    search: search_pb2_grpc.SearchServiceStub, settings: ReindexSettings, report: ReindexReport
) -> None:
    """The collection read and the model(s) it was encoded with (its model aliases, or the setting)."""
    aliases = await list_aliases(search, settings.timeout_s)
    report.source_collection = resolved(aliases, settings.source)
    bases = (settings.alias, settings.source, report.source_collection)
    versions = collection_versions(aliases, report.source_collection, bases)
    if settings.source_model_version:
        versions.add(settings.source_model_version)
    report.source_model_versions = sorted(versions)
    if not versions and settings.alias:
        report.notes.append(
            f"no model alias records the model of {report.source_collection!r}: after the switch, queries "
            f"by its model search {settings.alias!r} (pass --source-model-version)"
        )


async def _point(
    search: search_pb2_grpc.SearchServiceStub,
    alias: str,
    model_version: str,
    collection: str,
    timeout_s: float,
    report: ReindexReport | AliasSwitch,
    aliases: dict[str, str] | None = None,
) -> None:
    """Points the model alias of `alias` for `model_version` at `collection` (unless it already does)."""
    if not model_version:
        return
    name = model_alias(alias, model_version)
    if aliases is not None and aliases.get(name) == collection:
        return
    await search.SetAlias(search_pb2.SetAliasRequest(alias=name, collection=collection), timeout=timeout_s)
    report.model_aliases[name] = collection


async def _copy_all(
    search: search_pb2_grpc.SearchServiceStub,
    encoder: encoder_pb2_grpc.EncoderServiceStub,
    settings: ReindexSettings,
    report: ReindexReport,
    progress: Callable[[int], None] | None,
) -> None:
    cursor = ""
    while True:
        page = await search.Scroll(
            search_pb2.ScrollRequest(collection=settings.source, limit=SCROLL_PAGE, cursor=cursor),
            timeout=settings.timeout_s,
        )
        for start in range(0, len(page.items), settings.batch_size):
            batch = [item.artwork for item in page.items[start : start + settings.batch_size]]
            await _copy_batch(search, encoder, settings, report, batch)
        report.read += len(page.items)
        if progress:
            progress(report.read)
        cursor = page.next_cursor
        if not cursor:
            return


async def _copy_batch(
    search: search_pb2_grpc.SearchServiceStub,
    encoder: encoder_pb2_grpc.EncoderServiceStub,
    settings: ReindexSettings,
    report: ReindexReport,
    artworks: list,
) -> None:
    readable = []
    for artwork in artworks:
        try:
            readable.append(
                (artwork, await read_image(image_location(artwork, settings), settings.timeout_s))
            )
        except Exception as exc:  # a missing or unreadable file: reported, never fatal
            report.missing.append((artwork.id, f"image unreadable: {exc}"))
    images = {artwork.id: data for artwork, data in readable}
    items = []
    for artwork, embedding in await _encode(encoder, readable, settings, report):
        regions = await _regions(encoder, artwork, images[artwork.id], settings)
        items.append(search_pb2.IndexedArtwork(artwork=artwork, embedding=embedding, regions=regions))
    if items:
        reply = await search.Upsert(
            search_pb2.UpsertRequest(collection=settings.target, items=items), timeout=settings.timeout_s
        )
        report.stored += reply.upserted


async def _regions(
    encoder: encoder_pb2_grpc.EncoderServiceStub, artwork: object, data: bytes, settings: ReindexSettings
) -> list:
    """The artwork's region descriptors by the new model, on the grid ingest recorded for it
    (extra["region_grid"]; none recorded, none made). When they cannot be made the artwork is stored
    without them, and without the grid key, so that a later ingest makes them."""
    from artsearch_tools.ingest import REGION_GRID_KEY
    from artsearch_tools.ingest_regions import RegionCropFailed, region_crops
    from artsearch_tools.regions import parse_region_grid

    extra = artwork.extra  # type: ignore[attr-defined]
    try:
        grid = parse_region_grid(extra.get(REGION_GRID_KEY, ""))
        if grid is None:
            return []
        crops = await asyncio.to_thread(region_crops, data, grid)
        embeddings: list = []
        for start in range(0, len(crops), settings.batch_size):
            request = encoder_pb2.EncodeRequest(images=crops[start : start + settings.batch_size])
            embeddings += (await encoder.Encode(request, timeout=settings.timeout_s)).embeddings
        return embeddings
    except (ValueError, RegionCropFailed, grpc.aio.AioRpcError) as error:
        if isinstance(error, grpc.aio.AioRpcError) and error.code() != grpc.StatusCode.INVALID_ARGUMENT:
            raise
        log.warning("%s re-encoded without regions: %s", artwork.id, error)  # type: ignore[attr-defined]
        del extra[REGION_GRID_KEY]
        return []


async def _encode(
    encoder: encoder_pb2_grpc.EncoderServiceStub,
    readable: list,
    settings: ReindexSettings,
    report: ReindexReport,
) -> list:
    if not readable:
        return []
    request = encoder_pb2.EncodeRequest(images=[data for _, data in readable])
    try:
        reply = await encoder.Encode(request, timeout=settings.timeout_s)
    except grpc.aio.AioRpcError as error:
        if error.code() != grpc.StatusCode.INVALID_ARGUMENT or len(readable) == 1:
            if error.code() == grpc.StatusCode.INVALID_ARGUMENT:
                report.missing.append((readable[0][0].id, f"not encodable: {error.details()}"))
                return []
            raise
        # One bad image fails the whole call: encode one by one to find it.
        pairs = []
        for single in readable:
            pairs += await _encode(encoder, [single], settings, report)
        return pairs
    if reply.model.version != report.model_version:
        raise ReindexError(
            f"the encoder switched models mid-run ({report.model_version} -> {reply.model.version})"
        )
    return [(artwork, embedding) for (artwork, _), embedding in zip(readable, reply.embeddings, strict=True)]


async def _switch(
    search: search_pb2_grpc.SearchServiceStub, settings: ReindexSettings, report: ReindexReport
) -> None:
    if report.missing and not settings.allow_missing:
        raise ReindexError(
            f"{len(report.missing)} artworks could not be re-encoded: alias {settings.alias!r} not switched "
            "(fix them, or pass --allow-missing)"
        )
    await _point_model_aliases(search, settings, report)
    reply = await search.SetAlias(
        search_pb2.SetAliasRequest(
            alias=settings.alias, collection=settings.target, replace_collection=settings.replace_collection
        ),
        timeout=settings.timeout_s,
    )
    report.switched = True
    report.previous_collection = reply.previous_collection or reply.replaced_collection


async def _point_model_aliases(
    search: search_pb2_grpc.SearchServiceStub, settings: ReindexSettings, report: ReindexReport
) -> None:
    """Before the switch: the old model's alias at the old collection, the new model's at the new one, so
    that queries by either model meet their own descriptors before, during and after the switch."""
    aliases = await list_aliases(search, settings.timeout_s)
    timeout_s = settings.timeout_s
    replaced = settings.replace_collection and settings.alias not in aliases  # the alias name is a collection
    if replaced:
        await _drop_model_aliases(search, settings, aliases, report)
    for version in report.source_model_versions:
        if version == report.model_version:
            continue
        if replaced and report.source_collection == settings.alias:
            report.notes.append(
                f"{settings.alias!r} is dropped at the switch (--replace-collection): queries by model "
                f"{version} search the new collection from then on: roll the encoder at this switch"
            )
            continue
        await _point(search, settings.alias, version, report.source_collection, timeout_s, report, aliases)
    await _point(search, settings.alias, report.model_version, settings.target, timeout_s, report, aliases)


async def _drop_model_aliases(
    search: search_pb2_grpc.SearchServiceStub,
    settings: ReindexSettings,
    aliases: dict[str, str],
    report: ReindexReport,
) -> None:
    """Removes the model aliases pointing at the collection `--replace-collection` drops (the store refuses
    to drop a collection an alias uses)."""
    bases = (settings.alias, settings.source)
    for name, target in aliases.items():
        if target == settings.alias and any(version_in(name, base) for base in bases):
            await search.SetAlias(search_pb2.SetAliasRequest(alias=name), timeout=settings.timeout_s)
            report.notes.append(f"model alias {name!r} removed: {settings.alias!r} is dropped")


async def rollback(search_addr: str, alias: str, collection: str, timeout_s: float = 30.0) -> AliasSwitch:
    """Points `alias` at `collection` (a rollback, or a switch forward again), after pointing the model
    aliases of `alias` for the model(s) recorded for `collection` at it."""
    switch = AliasSwitch(alias, collection)
    async with open_channel(search_addr) as channel:
        search = search_pb2_grpc.SearchServiceStub(channel)
        aliases = await list_aliases(search, timeout_s)
        versions = sorted(collection_versions(aliases, collection, (alias, collection)))
        if not versions:
            switch.notes.append(f"no model alias records the model of {collection!r}: none moved")
        for version in versions:
            await _point(search, alias, version, collection, timeout_s, switch, aliases)
        reply = await search.SetAlias(
            search_pb2.SetAliasRequest(alias=alias, collection=collection), timeout=timeout_s
        )
    switch.previous_collection = reply.previous_collection
    return switch


async def switch_alias(search_addr: str, alias: str, collection: str, timeout_s: float = 30.0) -> str:
    """`rollback`; returns where `alias` pointed before."""
    return (await rollback(search_addr, alias, collection, timeout_s)).previous_collection
