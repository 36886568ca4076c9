"""How an artwork is stored in a Qdrant point, the same in every engine (server, local mode, qdrant-edge).

Qdrant point ids must be unsigned ints or UUIDs, so each artwork id maps to a deterministic UUID (uuid5)
and the artwork id itself lives in the payload: upserts are idempotent, every replica and every engine
computes the same point id, and a collection moved between engines (snapshot, re-ingest) keeps its ids.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from artsearch.artists import artist_key
from artsearch.style_vote import STYLE_LABELS_KEY
from services.search.store import ArtworkRecord, IndexedArtwork, InvalidStoreRequest, MetadataChanges

# Changing this namespace changes every point id: existing collections would have to be re-indexed.
ARTWORK_ID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:artsearch:artwork")

# Payload fields that filters use, and their index kinds. Every engine creates these indexes when it
# creates a collection, before the first point: an HNSW graph built without them cannot serve restrictive
# filters well (Qdrant adds the per-value links only for fields indexed at build time).
# The `extra` key where ingest stores the kind of its catalogue's style labels ("art", "category"): the
# gateway's style vote filters on it, so it is indexed like a top-level field.
STYLE_LABELS_FIELD = f"extra.{STYLE_LABELS_KEY}"
# In a collection with region points (services.search.region_scores), the artwork id a region point belongs
# to; artwork points never have it.
REGION_OF_FIELD = "region_of"
KEYWORD_FIELDS = ("id", "artist_key", "style", "genre", STYLE_LABELS_FIELD, REGION_OF_FIELD)
INTEGER_FIELDS = ("year",)
# Payload fields computed from a record field by `to_payload`: an edit of the field rewrites them too.
DERIVED_FIELDS = {"artist": ("artist_key",)}


def point_id(artwork_id: str) -> str:
    """The Qdrant point id of an artwork: the same on every call, in every process."""
    return str(uuid.uuid5(ARTWORK_ID_NAMESPACE, artwork_id))


def region_point_id(artwork_id: str, index: int) -> str:
    """The Qdrant point id of an artwork's `index`-th region (uuid5 in the namespace of the artwork's own
    point id: never equal to an artwork's point id, the same in every process)."""
    return str(uuid.uuid5(uuid.UUID(point_id(artwork_id)), str(index)))


def to_region_payload(artwork: ArtworkRecord) -> dict[str, Any]:
    """A region point's payload: the artwork it belongs to and the artwork's filterable fields (so that every
    search filter applies to region points unchanged), nothing else (20-odd region points per artwork)."""
    payload = to_payload(artwork)
    region: dict[str, Any] = {REGION_OF_FIELD: artwork.id}
    region.update({name: payload[name] for name in ("artist_key", "style", "genre", "year")})
    if STYLE_LABELS_KEY in artwork.extra:
        region["extra"] = {STYLE_LABELS_KEY: artwork.extra[STYLE_LABELS_KEY]}
    return region


def to_payload(artwork: ArtworkRecord) -> dict[str, Any]:
    return {
        "id": artwork.id,
        "title": artwork.title,
        "artist": artwork.artist,
        "artist_key": artist_key(artwork.artist),
        "style": artwork.style,
        "genre": artwork.genre,
        "year": int(artwork.year),
        "image_uri": artwork.image_uri,
        "catalogue": artwork.catalogue,
        "extra": dict(artwork.extra),
    }


def changed_fields(changes: MetadataChanges) -> dict[str, Any]:
    """The top-level payload fields an edit sets, the derived ones included, as `to_payload` writes them
    (`extra` aside: engines change it key by key)."""
    fields = changes.fields()
    written = to_payload(ArtworkRecord(id="", **fields))  # type: ignore[arg-type]
    names = [*fields, *(derived for name in fields for derived in DERIVED_FIELDS.get(name, ()))]
    return {name: written[name] for name in names}


def extra_path(key: str) -> str:
    """The Qdrant JSON path of one `extra` key (quoted: a key may hold dots or brackets; never '"')."""
    return f'extra."{key}"'


def to_record(payload: Mapping[str, Any] | None) -> ArtworkRecord:
    payload = payload or {}
    return ArtworkRecord(
        id=str(payload.get("id", "")),
        title=str(payload.get("title", "")),
        artist=str(payload.get("artist", "")),
        style=str(payload.get("style", "")),
        genre=str(payload.get("genre", "")),
        year=int(payload.get("year") or 0),
        image_uri=str(payload.get("image_uri", "")),
        catalogue=str(payload.get("catalogue", "")),
        extra={str(k): str(v) for k, v in (payload.get("extra") or {}).items()},
    )


class StoredPoint(Protocol):
    """What both engines hand back for a point: qdrant-client's `Record`, qdrant-edge's `Record`."""

    payload: Mapping[str, Any] | None
    vector: Any


def to_indexed(record: StoredPoint, with_vectors: bool) -> IndexedArtwork:
    vector = None
    stored = record.vector
    if isinstance(stored, Mapping):  # named vectors: the whole picture's is the unnamed one
        stored = stored.get("")
    if with_vectors and stored is not None:
        vector = np.asarray(stored, dtype=np.float32)
    return IndexedArtwork(to_record(record.payload), vector)


def parse_cursor(cursor: str) -> str | None:
    """A scroll cursor is the point id to start from; empty means the beginning."""
    if not cursor:
        return None
    try:
        return str(uuid.UUID(cursor))
    except ValueError:
        raise InvalidStoreRequest(f"invalid scroll cursor {cursor!r}") from None
