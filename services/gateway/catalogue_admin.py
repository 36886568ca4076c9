"""Admin operations on the artwork catalogue: list, add one, add a batch, edit metadata, delete.

Order of an addition, so that a failure or a crash (the gateway killed at any point) never leaves a record
without its image: check everything (image, metadata, id not taken) -> encode -> write the image to its
place durably (artwork_records.place_image: a temporary file, fsync'd, renamed into place, the folder
fsync'd) -> upsert the record -> remove the image a replaced record showed -> add the artist to the
influence graph (best effort: a failure there is reported as "degraded": ["influence"], the artwork stays
stored). A replacement never overwrites the file the stored record still shows (it gets another name,
image_file_name with its content). When the search service refuses the upsert, the new image is removed;
when the outcome is unknown (deadline, connection lost: the write may have landed) it is kept. A crash
leaves at worst an image no record shows, or a temporary file that the next start-up removes (app.py).

The routes: services/gateway/routes/admin_artworks.py."""

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from fastapi import UploadFile
from pydantic import BaseModel, ConfigDict, Field

from artsearch.v1 import common_pb2, encoder_pb2, influence_pb2, search_pb2
from services.gateway.admin_calls import Services
from services.gateway.admin_settings import AdminSettings
from services.gateway.artwork_records import (
    ADDED_AT,
    ADDED_BY,
    MAX_EXTRA_KEY_CHARS,
    added_image_path,
    artwork_json,
    check_stored_id,
    clean_artist,
    clean_extra,
    clean_text,
    clean_year,
    discard,
    image_file_name,
    invalid,
    new_artwork,
    place_image,
    remove_stale_uploads,
)
from services.gateway.downstream import ENCODER, INFLUENCE, SEARCH, DownstreamError
from services.gateway.errors import ApiError
from services.gateway.image_checks import ImageLimits, check_image

log = logging.getLogger(__name__)

ENCODE_CONCURRENCY = 4
MAX_LIST_LIMIT = 1000
MAX_CURSOR_CHARS = 2000
BATCH_ROUTE = "/v1/artworks/batch"


@dataclass
class Pending:
    """An artwork that passed every check, on its way into the catalogue."""

    artwork: common_pb2.Artwork
    image: bytes
    image_format: str
    embedding: common_pb2.Embedding | None = None
    placed: Path | None = None  # the image file written for it
    new_file: bool = False  # `placed` is a file no stored record showed before (removable on a refusal)


class ArtworkPatch(BaseModel):
    """Metadata changes: a field left out stays as it is; null or "" clears it (title cannot be cleared).
    `extra` is merged key by key; a key set to null is removed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"title": "Irises", "year": 1889, "extra": {"museum": "Getty"}}]},
    )
    title: str | None = Field(default=None, max_length=500)
    artist: str | None = Field(default=None, max_length=500)
    style: str | None = Field(default=None, max_length=500)
    genre: str | None = Field(default=None, max_length=500)
    year: int | None = None
    extra: dict[str, str | None] | None = None


def upload_limits(config: Any) -> ImageLimits:
    """The limits on an added artwork's image: the gateway's upload size, the admin pixel limit."""
    return ImageLimits(config.max_upload_bytes, config.admin.max_image_pixels)


async def artwork_page(services: Services, limit: int, cursor: str) -> dict[str, object]:
    """One page of the catalogue in storage order."""
    reply = await services.call(
        SEARCH,
        "Scroll",
        search_pb2.ScrollRequest(
            collection=services.collection,
            limit=limit,
            cursor=clean_text(cursor, "cursor", MAX_CURSOR_CHARS),
        ),
    )
    return {
        "artworks": [artwork_json(item.artwork) for item in reply.items],
        "next_cursor": reply.next_cursor or None,
        "limit": limit,
    }


async def add_artwork(
    services: Services,
    settings: AdminSettings,
    limits: ImageLimits,
    owner: str,
    image: UploadFile,
    fields: dict[str, object],
    replace: bool,
) -> dict[str, object]:
    """Checks, encodes and stores one artwork (409 when its id exists, unless `replace`)."""
    data = await _read_upload(image, limits.max_bytes)
    info = check_image(data, limits)
    pending = Pending(new_artwork(fields, settings.default_catalogue, data, owner), data, info.format)
    previous = await _stored(services, [pending.artwork.id])
    if previous and not replace:
        raise ApiError(409, "already_exists", f"artwork {pending.artwork.id!r} exists; add ?replace=true")
    reply = await services.call(ENCODER, "Encode", encoder_pb2.EncodeRequest(images=[data]))
    pending.embedding = reply.embeddings[0]
    degraded = await _store(services, settings.image_root, [pending], previous)
    return {"artwork": artwork_json(pending.artwork), "degraded": degraded}


async def add_artworks(
    services: Services,
    settings: AdminSettings,
    limits: ImageLimits,
    owner: str,
    images: Sequence[UploadFile],
    metadata: str,
    replace: bool,
) -> dict[str, object]:
    """Adds several artworks, each added or rejected with its reason on its own."""
    if len(images) > settings.max_batch_items:
        raise ApiError(
            413, "too_many_items", f"{len(images)} images; at most {settings.max_batch_items} per batch"
        )
    batch = _Batch(services, settings, limits, owner, replace)
    return await batch.run(images, _metadata_entries(metadata))


async def edit_artwork(services: Services, artwork_id: str, patch: ArtworkPatch) -> dict[str, object]:
    """Changes the fields sent, in place (the search service's UpdateArtwork); 404 for an unknown id."""
    check_stored_id(artwork_id)
    edit = _edit_request(patch)
    if not edit.ListFields():  # only an empty `extra` was sent: nothing to change
        found = await _stored(services, [artwork_id])
        if not found:
            raise ApiError(404, "not_found", f"no artwork {artwork_id!r}")
        return {"artwork": artwork_json(found[artwork_id]), "degraded": []}
    edit.collection, edit.id = services.collection, artwork_id
    reply = await services.call(SEARCH, "UpdateArtwork", edit)
    degraded = []
    if reply.artwork.artist and reply.artwork.artist != reply.previous.artist:
        degraded = await _register_artists(services, [reply.artwork.artist])
    return {"artwork": artwork_json(reply.artwork), "degraded": degraded}


async def delete_artwork(services: Services, settings: AdminSettings, artwork_id: str) -> None:
    """Deletes an artwork, and its image when it was added through this API; 404 for an unknown id."""
    check_stored_id(artwork_id)
    found = await _stored(services, [artwork_id])
    if not found:
        raise ApiError(404, "not_found", f"no artwork {artwork_id!r}")
    await services.call(
        SEARCH, "Delete", search_pb2.DeleteRequest(collection=services.collection, ids=[artwork_id])
    )
    image_path = added_image_path(settings.image_root, found[artwork_id])
    if image_path is not None:
        await asyncio.to_thread(discard, image_path)


# ---- one batch ---------------------------------------------------------------------------------------


class _Batch:
    """Checks, encodes and stores the artworks of one batch; collects a result per image."""

    def __init__(
        self, services: Services, settings: AdminSettings, limits: ImageLimits, owner: str, replace: bool
    ) -> None:
        self._services = services
        self._settings = settings
        self._limits = limits
        self._owner = owner
        self._replace = replace
        self._results: list[dict[str, object]] = []

    async def run(self, uploads: Sequence[UploadFile], entries: list[dict[str, object]]) -> dict[str, object]:
        checked = await self._check(uploads, entries)
        previous = await _stored(self._services, [p.artwork.id for _, p in checked])
        fresh = []
        for slot, pending in checked:
            if pending.artwork.id in previous and not self._replace:
                self._reject(slot, f"artwork {pending.artwork.id!r} exists (add ?replace=true)")
            else:
                fresh.append((slot, pending))
        encoded = await self._encode(fresh)
        degraded = await _store(self._services, self._settings.image_root, [p for _, p in encoded], previous)
        for slot, pending in encoded:
            self._results[slot] |= {"status": "added", "artwork": artwork_json(pending.artwork)}
        added = sum(result["status"] == "added" for result in self._results)
        return {
            "added": added,
            "rejected": len(self._results) - added,
            "results": self._results,
            "degraded": degraded,
        }

    def _slot(self, filename: str | None) -> int:
        self._results.append({"filename": filename, "status": "pending"})
        return len(self._results) - 1

    def _reject(self, slot: int, reason: str) -> None:
        self._results[slot] |= {"status": "rejected", "reason": reason}

    async def _check(
        self, uploads: Sequence[UploadFile], entries: list[dict[str, object]]
    ) -> list[tuple[int, Pending]]:
        by_name: dict[str, list[dict[str, object]]] = {}
        for entry in entries:
            by_name.setdefault(str(entry["filename"]), []).append(entry)
        names = [upload.filename or "" for upload in uploads]
        checked: list[tuple[int, Pending]] = []
        ids: set[str] = set()
        for upload, name in zip(uploads, names, strict=True):
            slot = self._slot(name or None)
            try:
                pending = await self._check_one(upload, name, names.count(name), by_name.get(name, []))
                if pending.artwork.id in ids:
                    raise ApiError(
                        400, "duplicate_id", f"id {pending.artwork.id!r} appears twice in this batch"
                    )
            except ApiError as error:
                self._reject(slot, error.message)
                continue
            ids.add(pending.artwork.id)
            checked.append((slot, pending))
        for name in sorted(by_name.keys() - set(names)):
            self._reject(self._slot(name), "no uploaded image has this filename")
        return checked

    async def _check_one(
        self, upload: UploadFile, name: str, uploads_named: int, entries: list[dict[str, object]]
    ) -> Pending:
        if not name:
            raise invalid("filename", "the upload has no filename to match a metadata entry")
        if uploads_named > 1:
            raise invalid("filename", "several uploads share this filename")
        if len(entries) != 1:
            raise invalid(
                "metadata", "no entry names this file" if not entries else "several entries name this file"
            )
        data = await _read_upload(upload, self._limits.max_bytes)
        info = check_image(data, self._limits)
        artwork = new_artwork(entries[0], self._settings.default_catalogue, data, self._owner)
        return Pending(artwork, data, info.format)

    async def _encode(self, checked: list[tuple[int, Pending]]) -> list[tuple[int, Pending]]:
        """Encodes each image on its own (the encoder batches concurrent calls), so that an image the
        encoder cannot decode rejects only itself. An encoder outage fails the whole batch (nothing
        stored yet)."""
        limit = asyncio.Semaphore(ENCODE_CONCURRENCY)

        async def one(slot: int, pending: Pending) -> bool:
            async with limit:
                try:
                    reply = await self._services.call(
                        ENCODER, "Encode", encoder_pb2.EncodeRequest(images=[pending.image])
                    )
                except ApiError as error:
                    self._reject(slot, error.message)
                    return False
            pending.embedding = reply.embeddings[0]
            return True

        done = await asyncio.gather(*(one(slot, pending) for slot, pending in checked))
        return [pair for pair, ok in zip(checked, done, strict=True) if ok]


def _metadata_entries(raw: str) -> list[dict[str, object]]:
    try:
        entries = json.loads(raw)
    except ValueError:
        raise invalid("metadata", "is not valid JSON") from None
    if not isinstance(entries, list):
        raise invalid("metadata", "must be a JSON list of objects, one per image")
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("filename"), str) or not entry["filename"]:
            raise invalid(f"metadata[{index}]", "must be an object with a non-empty string filename")
        clean_text(entry["filename"], f"metadata[{index}].filename", 1000)
    return entries


# ---- shared steps ------------------------------------------------------------------------------------


async def _read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    data = await upload.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ApiError(413, "too_large", f"image is larger than {max_bytes} bytes")
    return data


async def _stored(services: Services, ids: Sequence[str]) -> dict[str, common_pb2.Artwork]:
    """The stored records among `ids` (no vectors)."""
    if not ids:
        return {}
    reply = await services.call(
        SEARCH, "Get", search_pb2.GetRequest(collection=services.collection, ids=list(ids))
    )
    return {item.artwork.id: item.artwork for item in reply.items}


async def _store(
    services: Services,
    image_root: Path | None,
    pending: Sequence[Pending],
    previous: Mapping[str, common_pb2.Artwork],
) -> list[str]:
    """Stores checked, encoded artworks (see the module doc for the order); returns what was degraded."""
    if not pending:
        return []
    if image_root is not None:
        await asyncio.to_thread(_place_images, image_root, pending, previous)
    items = [search_pb2.IndexedArtwork(artwork=p.artwork, embedding=p.embedding) for p in pending]
    try:
        await services.call(
            SEARCH, "Upsert", search_pb2.UpsertRequest(collection=services.collection, items=items)
        )
    except (ApiError, DownstreamError) as error:
        if not _may_have_landed(error):
            await asyncio.to_thread(_remove_new_files, pending)
        raise
    await asyncio.to_thread(_remove_replaced_images, image_root, pending, previous)
    return await _register_artists(services, [p.artwork.artist for p in pending])


# A write that failed so may still have been applied (the answer, not the request, was lost).
_UNKNOWN_OUTCOMES = frozenset(
    {
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _may_have_landed(error: ApiError | DownstreamError) -> bool:
    """False only when the search service refused the upsert (its records are not stored)."""
    return isinstance(error, DownstreamError) and error.status in _UNKNOWN_OUTCOMES


def _place_images(
    image_root: Path, pending: Sequence[Pending], previous: Mapping[str, common_pb2.Artwork]
) -> None:
    """Writes each image to its place (place_image), before its record is stored; on a failure the files
    this call wrote are removed again and the answer is 503 (nothing is stored)."""
    for p in pending:
        old = previous.get(p.artwork.id)
        old_path = added_image_path(image_root, old) if old is not None else None
        name = image_file_name(p.artwork.id, p.image_format)
        if old_path is not None and old_path.name == name:
            name = image_file_name(p.artwork.id, p.image_format, p.image)
        try:
            p.placed = place_image(image_root, p.artwork.catalogue, name, p.image)
        except OSError as error:
            log.error(
                "cannot write an added image", extra={"catalogue": p.artwork.catalogue, "error": str(error)}
            )
            _remove_new_files(pending)
            raise ApiError(
                503, "image_storage_unavailable", "cannot write the image file; retry later"
            ) from None
        p.new_file = p.placed != old_path
        p.artwork.image_uri = name


def _remove_new_files(pending: Sequence[Pending]) -> None:
    for p in pending:
        if p.placed is not None and p.new_file:
            discard(p.placed)


def _remove_replaced_images(
    image_root: Path | None, pending: Sequence[Pending], previous: Mapping[str, common_pb2.Artwork]
) -> None:
    """Removes the image a replaced artwork's record showed, once the new record is stored (a crash
    before leaves a file no record shows: harmless)."""
    for p in pending:
        old = previous.get(p.artwork.id)
        old_path = added_image_path(image_root, old) if old is not None else None
        if old_path is not None and old_path != p.placed:
            discard(old_path)


async def sweep_stale_uploads(image_root: Path | None) -> int:
    """Removes the temporary files of image writes a killed gateway left under IMAGE_ROOT (older than
    STALE_UPLOAD_AFTER_S: another replica sharing the folder may be writing a younger one); returns how
    many. Run at start-up, off the event loop; a failure is logged, never fatal."""
    if image_root is None:
        return 0
    try:
        removed = await asyncio.to_thread(remove_stale_uploads, image_root)
    except OSError as error:
        log.warning("cannot sweep stale uploads", extra={"image_root": str(image_root), "error": str(error)})
        return 0
    if removed:
        log.info(
            "removed stale temporary uploads", extra={"count": len(removed), "image_root": str(image_root)}
        )
    return len(removed)


async def _register_artists(services: Services, artists: Sequence[str]) -> list[str]:
    """Adds the artists to the influence graph (existing ones are left alone); ["influence"] when that
    service fails: the artworks are stored either way, and ingest or POST /v1/artists can add them later."""
    names = sorted({name for name in artists if name})
    if not names:
        return []
    request = influence_pb2.AddArtistsRequest(artists=[influence_pb2.Artist(name=name) for name in names])
    try:
        await services.call(INFLUENCE, "AddArtists", request)
    except (ApiError, DownstreamError) as error:
        log.warning("artists not added to the influence graph", extra={"error": str(error)})
        return [INFLUENCE]
    return []


# ---- metadata edits ----------------------------------------------------------------------------------


def _edit_request(patch: ArtworkPatch) -> search_pb2.UpdateArtworkRequest:
    """The validated changes of a PATCH body (400 naming the first bad field), as the search service's
    edit: only the fields sent are set."""
    sent = patch.model_fields_set
    if not sent:
        raise invalid("body", "names no field to change (title, artist, style, genre, year, extra)")
    edit = search_pb2.UpdateArtworkRequest()
    for field in ("style", "genre"):
        if field in sent:
            setattr(edit, field, clean_text(getattr(patch, field), field))
    if "title" in sent:
        edit.title = clean_text(patch.title, "title")
        if not edit.title:
            raise invalid("title", "cannot be empty")
    if "artist" in sent:
        edit.artist = clean_artist(patch.artist)
    if "year" in sent:
        edit.year = clean_year(patch.year)
    if "extra" in sent:
        _add_extra_changes(edit, patch.extra or {})
    return edit


def _add_extra_changes(edit: search_pb2.UpdateArtworkRequest, extra: Mapping[str, str | None]) -> None:
    """Keys set to a string are set, keys set to null removed; the others stay as stored."""
    removed = [key for key, value in extra.items() if value is None]
    for key in removed:
        name = clean_text(key, "extra key", MAX_EXTRA_KEY_CHARS)
        if not name or name in (ADDED_BY, ADDED_AT):
            raise invalid("extra", f"key {name!r} is empty or reserved")
        if '"' in name:
            raise invalid("extra", f"key {name!r} cannot be removed: it contains '\"'")
        edit.remove_extra.append(name)
    edit.set_extra.update(clean_extra({key: value for key, value in extra.items() if value is not None}))
