"""Browse the catalogue by look: spherical k-means clusters of the stored descriptors.

    GET /v1/clusters?n=12                              the clusters, each with its representative artworks
    GET /v1/clusters/{cluster}?n=12&offset=0&limit=24  one cluster's artworks, nearest its centre first

The descriptors come from the search service (Scroll RPC with embeddings, page by page, each page with the
search deadline); the clustering is `artsearch.clustering.cluster_vectors` (cosine: spherical k-means,
seeded, so the same catalogue gives the same clusters) and runs in a worker thread. A clustering is kept for
CLUSTER_CACHE_S seconds per (collection, number of artworks, n): adding or removing an artwork changes the
count and so the clustering asked for next. One clustering is computed at a time (an asyncio.Lock); requests
arriving meanwhile wait for it and share its result. Cluster ids are 0.. by decreasing size and hold for one
clustering: the members route takes the same `n` as the list it came from.

A catalogue larger than CLUSTER_MAX_ARTWORKS is not clustered (422 `catalogue_too_large`): every vector is
held in memory while clustering (2664 float32 values, ~10 KiB, each), and a sample would leave most artworks
out of every cluster's member list. Raise the limit where memory allows.

Settings (environment): CLUSTER_* (CLUSTER_MAX_ARTWORKS, CLUSTER_CACHE_S, CLUSTER_DEFAULT_COUNT,
CLUSTER_MAX_COUNT, CLUSTER_SCROLL_PAGE, CLUSTER_SEED, CLUSTER_CACHE_ENTRIES); each declared, with its default
and meaning, in services/gateway/settings.py (the table: docs/architecture.md, "Configuration").

The routes: services/gateway/routes/clusters.py."""

import asyncio
import base64
import binascii
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Self

import numpy as np
from fastapi import Request

from artsearch.clustering import cluster_vectors, purity
from artsearch.config import ConfigError, Env
from artsearch.descriptor_layout import unit_rows
from artsearch.jsonlog import request_id_var
from artsearch.v1 import common_pb2, search_pb2, search_pb2_grpc
from services.gateway import settings as declared
from services.gateway.errors import ApiError
from services.gateway.explain import artwork_json

log = logging.getLogger(__name__)

SEARCH_SERVICE = "search"
MAX_SCROLL_PAGE = 1000  # the search service's Scroll limit
MIN_CLUSTERS = 2
REPRESENTATIVES = 4
TOP_LABELS = 3
DEFAULT_MEMBER_PAGE = 24
MAX_MEMBER_PAGE = 100


@dataclass(frozen=True)
class ClusterSettings:
    max_artworks: int = 20_000
    cache_s: float = 300.0
    default_count: int = 12
    max_count: int = 64
    scroll_page: int = 256
    seed: int = 0
    cache_entries: int = 8

    @classmethod
    def from_env(cls, env: Env) -> Self:
        max_count = declared.CLUSTER_MAX_COUNT.read(env)
        default_count = declared.CLUSTER_DEFAULT_COUNT.read(env, min(12, max_count))
        if default_count > max_count:
            raise ConfigError(f"CLUSTER_DEFAULT_COUNT={default_count} is above CLUSTER_MAX_COUNT={max_count}")
        scroll_page = declared.CLUSTER_SCROLL_PAGE.read(env)
        if scroll_page > MAX_SCROLL_PAGE:
            raise ConfigError(
                f"CLUSTER_SCROLL_PAGE={scroll_page} is above the Scroll limit {MAX_SCROLL_PAGE}"
            )
        return cls(
            max_artworks=declared.CLUSTER_MAX_ARTWORKS.read(env),
            cache_s=declared.CLUSTER_CACHE_S.read(env),
            default_count=default_count,
            max_count=max_count,
            scroll_page=scroll_page,
            seed=declared.CLUSTER_SEED.read(env),
            cache_entries=declared.CLUSTER_CACHE_ENTRIES.read(env),
        )


@dataclass(frozen=True)
class CatalogueClusters:
    """One clustering of a collection: its artworks, and each cluster's rows nearest the centre first."""

    requested: int
    artworks: tuple[common_pb2.Artwork, ...]
    members: tuple[tuple[int, ...], ...]  # by cluster id (0.. by decreasing size): rows into `artworks`
    similarity: tuple[float, ...]  # cosine of each row to its cluster's centre
    unclustered: int  # artworks without a usable descriptor (none, or another dimension than the rest)
    style_purity: float | None  # of the clusters by style label, over the artworks that have one
    labelled: int
    computed_at: str
    timings_ms: dict[str, float]


def empty_clusters(requested: int, unclustered: int = 0) -> CatalogueClusters:
    return CatalogueClusters(requested, (), (), (), unclustered, None, 0, _now(), {})


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def usable_rows(items: Sequence[search_pb2.IndexedArtwork]) -> tuple[list[int], np.ndarray]:
    """The rows whose descriptor has the most common dimension, and those descriptors [rows, dimension]."""
    dimensions = Counter(len(item.embedding.values) for item in items if len(item.embedding.values))
    if not dimensions:
        return [], np.zeros((0, 0), dtype=np.float32)
    dimension = dimensions.most_common(1)[0][0]
    rows = [i for i, item in enumerate(items) if len(item.embedding.values) == dimension]
    return rows, np.array([items[i].embedding.values for i in rows], dtype=np.float32)


def build_clusters(
    items: Sequence[search_pb2.IndexedArtwork], requested: int, seed: int, scroll_ms: float = 0.0
) -> CatalogueClusters:
    """Clusters the scrolled artworks (blocking: run it in a worker thread)."""
    started = time.perf_counter()
    rows, vectors = usable_rows(items)
    if not rows:
        return empty_clusters(requested, len(items))
    clustering = cluster_vectors(vectors, requested, seed=seed)
    nearest_first = clustering.representatives(vectors, per_cluster=len(rows))
    # Ids by decreasing size; equal sizes by their nearest artwork's row, so the order is reproducible.
    ordered = sorted(nearest_first.items(), key=lambda entry: (-len(entry[1]), entry[1][0]))
    units = unit_rows(vectors)
    similarity = np.zeros(len(rows), dtype=np.float32)
    assignments = np.zeros(len(rows), dtype=np.int64)
    for cluster, (kmeans_cluster, members) in enumerate(ordered):
        similarity[members] = units[members] @ clustering.centres[kmeans_cluster]
        assignments[members] = cluster
    artworks = tuple(items[i].artwork for i in rows)
    styled = [i for i, artwork in enumerate(artworks) if artwork.style]
    style_purity = (
        purity(assignments[styled].tolist(), [artworks[i].style for i in styled]) if styled else None
    )
    return CatalogueClusters(
        requested=requested,
        artworks=artworks,
        members=tuple(tuple(members) for _, members in ordered),
        similarity=tuple(float(value) for value in similarity),
        unclustered=len(items) - len(rows),
        style_purity=style_purity,
        labelled=len(styled),
        computed_at=_now(),
        timings_ms={
            "scroll": round(scroll_ms, 2),
            "cluster": round((time.perf_counter() - started) * 1000, 2),
        },
    )


CacheKey = tuple[str, int, int]


class ClusterCache:
    """Clusterings by (collection, artwork count, n), each kept `ttl_s` seconds; at most `capacity`.
    Used from the event loop only. One computation at a time: a request that finds none waits on the lock,
    then finds the clustering the request before it stored."""

    def __init__(self, ttl_s: float, capacity: int) -> None:
        self.ttl_s = ttl_s
        self.capacity = capacity
        self._entries: dict[CacheKey, tuple[float, CatalogueClusters]] = {}
        self._lock = asyncio.Lock()
        self.computations = 0

    def fresh(self, key: CacheKey) -> CatalogueClusters | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, clusters = entry
        if time.monotonic() - stored_at >= self.ttl_s:
            del self._entries[key]
            return None
        return clusters

    async def get(
        self, key: CacheKey, compute: Callable[[], Awaitable[CatalogueClusters]]
    ) -> tuple[CatalogueClusters, bool]:
        """(clustering, whether it came from the cache); `compute` is an async callable making one."""
        found = self.fresh(key)
        if found is not None:
            return found, True
        async with self._lock:
            found = self.fresh(key)
            if found is not None:
                return found, True
            clusters = await compute()
            self.computations += 1
            self._store(key, clusters)
            return clusters, False

    def _store(self, key: CacheKey, clusters: CatalogueClusters) -> None:
        if self.ttl_s <= 0:
            return
        self._entries[key] = (time.monotonic(), clusters)
        while len(self._entries) > self.capacity:
            oldest = min(self._entries, key=lambda k: self._entries[k][0])
            del self._entries[oldest]

    def clear(self) -> None:
        self._entries.clear()


# ---- talking to the search service -------------------------------------------------------------------


async def count_artworks(request: Request) -> int:
    config = request.app.state.config
    downstream = request.app.state.downstream
    stub = search_pb2_grpc.SearchServiceStub(downstream.channel(SEARCH_SERVICE))
    reply = await downstream.call(
        SEARCH_SERVICE,
        stub.Count,
        search_pb2.CountRequest(collection=config.collection),
        config.search_timeout_s,
        request_id_var.get(),
    )
    return int(reply.count)


async def scroll_artworks(request: Request, page_size: int) -> list[search_pb2.IndexedArtwork]:
    """Every artwork of the collection with its descriptor, one Scroll page per call (each with the search
    deadline)."""
    config = request.app.state.config
    downstream = request.app.state.downstream
    stub = search_pb2_grpc.SearchServiceStub(downstream.channel(SEARCH_SERVICE))
    items: list[search_pb2.IndexedArtwork] = []
    cursor = ""
    while True:
        page = await downstream.call(
            SEARCH_SERVICE,
            stub.Scroll,
            search_pb2.ScrollRequest(
                collection=config.collection, limit=page_size, cursor=cursor, with_embeddings=True
            ),
            config.search_timeout_s,
            request_id_var.get(),
        )
        items.extend(page.items)
        cursor = page.next_cursor
        if not cursor or not page.items:
            return items


async def catalogue_clusters(
    request: Request, settings: ClusterSettings, cache: ClusterCache, requested: int
) -> tuple[CatalogueClusters, bool]:
    """The clustering of the gateway's collection into `requested` clusters, from the cache when fresh."""
    count = await count_artworks(request)
    if count > settings.max_artworks:
        raise ApiError(
            422,
            "catalogue_too_large",
            f"the catalogue holds {count} artworks; clusters are computed for at most "
            f"{settings.max_artworks} (CLUSTER_MAX_ARTWORKS)",
        )

    async def compute() -> CatalogueClusters:
        if count == 0:
            return empty_clusters(requested)
        started = time.perf_counter()
        items = await scroll_artworks(request, settings.scroll_page)
        scroll_ms = (time.perf_counter() - started) * 1000
        clusters = await asyncio.to_thread(build_clusters, items, requested, settings.seed, scroll_ms)
        log.info(
            "catalogue clustered",
            extra={
                "artworks": len(clusters.artworks),
                "clusters": len(clusters.members),
                **clusters.timings_ms,
            },
        )
        return clusters

    return await cache.get((request.app.state.config.collection, count, requested), compute)


# ---- JSON ------------------------------------------------------------------------------------------


def _counts(values: Sequence[str]) -> list[tuple[str, int]]:
    return Counter(value for value in values if value).most_common()


def _top(counts: list[tuple[str, int]]) -> list[dict[str, object]]:
    return [{"name": name, "count": count} for name, count in counts[:TOP_LABELS]]


def _member_json(clusters: CatalogueClusters, row: int) -> dict[str, object]:
    return {**artwork_json(clusters.artworks[row]), "similarity": round(clusters.similarity[row], 6)}


def cluster_json(clusters: CatalogueClusters, cluster: int) -> dict[str, object]:
    members = clusters.members[cluster]
    styles = _counts([clusters.artworks[row].style for row in members])
    labelled = sum(count for _, count in styles)
    return {
        "id": cluster,
        "size": len(members),
        "url": f"/v1/clusters/{cluster}?n={clusters.requested}",
        "representatives": [_member_json(clusters, row) for row in members[:REPRESENTATIVES]],
        "top_styles": _top(styles),
        "top_artists": _top(_counts([clusters.artworks[row].artist for row in members])),
        # Share of the cluster's style-labelled artworks that carry its most common style.
        "style_purity": round(styles[0][1] / labelled, 6) if labelled else None,
    }


def clusters_json(clusters: CatalogueClusters, collection: str, cached: bool) -> dict[str, object]:
    return {
        "collection": collection,
        "n": clusters.requested,
        "artworks": len(clusters.artworks),
        "unclustered": clusters.unclustered,
        "purity": None
        if clusters.style_purity is None
        else {"label": "style", "value": round(clusters.style_purity, 6), "labelled": clusters.labelled},
        "clusters": [cluster_json(clusters, cluster) for cluster in range(len(clusters.members))],
        "computed_at": clusters.computed_at,
        "cached": cached,
        "timings_ms": clusters.timings_ms,
    }


@dataclass(frozen=True)
class _MemberPage:
    """Which page of which clustering a cluster page's `next_cursor` points to."""

    cluster: int
    n: int
    offset: int
    limit: int


def _member_cursor(cluster: int, n: int, offset: int, limit: int) -> str:
    raw = f"members:{cluster}:{n}:{offset}:{limit}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_member_cursor(text: str, cluster: int, max_artworks: int) -> _MemberPage:
    """The page a cluster page's `next_cursor` points to; 400 invalid_cursor for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)).decode("ascii")
        kind, *numbers = raw.split(":")
        page = _MemberPage(*(int(number) for number in numbers))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API gave out") from None
    valid = kind == "members" and page.n >= 1 and 0 <= page.offset <= max_artworks
    if not valid or not 1 <= page.limit <= MAX_MEMBER_PAGE:
        raise ApiError(400, "invalid_cursor", "cursor: not a cursor this API gave out")
    if page.cluster != cluster:
        raise ApiError(400, "invalid_cursor", f"cursor: it pages cluster {page.cluster}, not {cluster}")
    return page


def members_json(
    clusters: CatalogueClusters, cluster: int, offset: int, limit: int, cached: bool
) -> dict[str, object]:
    rows = clusters.members[cluster]
    page = rows[offset : offset + limit]
    following = offset + len(page)
    return {
        "cluster": cluster,
        "n": clusters.requested,
        "size": len(rows),
        "offset": offset,
        "limit": limit,
        "members": [_member_json(clusters, row) for row in page],
        "next_offset": following if following < len(rows) else None,
        "next_cursor": _member_cursor(cluster, clusters.requested, following, limit)
        if following < len(rows)
        else None,
        "computed_at": clusters.computed_at,
        "cached": cached,
    }
