"""GET /v1/clusters and /v1/clusters/{cluster}: the catalogue in clusters of similar-looking artworks."""

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from services.gateway.clusters import (
    DEFAULT_MEMBER_PAGE,
    MAX_MEMBER_PAGE,
    MIN_CLUSTERS,
    ClusterCache,
    ClusterSettings,
    catalogue_clusters,
    clusters_json,
    members_json,
    read_member_cursor,
)
from services.gateway.errors import ApiError, error_doc
from services.gateway.routes import add_routes, api_router
from services.gateway.schemas.clusters import ClusterList, ClusterPage

_COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    422: error_doc(
        422,
        "Invalid parameter, or a catalogue larger than CLUSTER_MAX_ARTWORKS",
        (
            "catalogue_too_large",
            "the catalogue holds 25000 artworks; clusters are computed for at most 20000 "
            "(CLUSTER_MAX_ARTWORKS)",
        ),
    ),
    503: error_doc(
        503,
        "The search service is unavailable; retry after Retry-After seconds",
        ("search_unavailable", "the search service is unavailable, retry shortly"),
    ),
}


def install(app: FastAPI, settings: ClusterSettings) -> None:
    """Adds GET /v1/clusters and GET /v1/clusters/{cluster}; the clustering cache is app.state.clusters."""
    cache = ClusterCache(settings.cache_s, settings.cache_entries)
    app.state.clusters = cache
    add_routes(app, router(settings, cache))


def router(settings: ClusterSettings, cache: ClusterCache) -> APIRouter:
    routes = api_router(tags=["clusters"])
    ClusterCount = Annotated[
        int,
        Query(
            ge=MIN_CLUSTERS,
            le=settings.max_count,
            description="Number of clusters (fewer when the catalogue has fewer artworks)",
        ),
    ]

    @routes.get(
        "/v1/clusters",
        response_model=ClusterList,
        response_description="The clusters, largest first",
        responses=_COMMON_ERRORS,
    )
    async def list_clusters(request: Request, n: ClusterCount = settings.default_count) -> JSONResponse:
        """The catalogue in `n` clusters of similar-looking artworks (spherical k-means of the stored
        descriptors), largest first: each with its size, the artworks nearest its centre, its most common
        styles and artists; and the clustering's purity by style label when the catalogue has styles."""
        clusters, cached = await catalogue_clusters(request, settings, cache, n)
        return JSONResponse(clusters_json(clusters, request.app.state.config.collection, cached))

    @routes.get(
        "/v1/clusters/{cluster}",
        response_model=ClusterPage,
        response_description="One page of the cluster's artworks, nearest its centre first",
        responses={
            404: error_doc(
                404,
                "No such cluster in this clustering",
                ("cluster_not_found", "no cluster 12 among 12 clusters"),
            ),
            400: error_doc(400, "A malformed cursor, or one of another cluster (invalid_cursor)"),
            **_COMMON_ERRORS,
        },
    )
    async def cluster_members(
        request: Request,
        cluster: Annotated[int, PathParam(ge=0, description="Cluster id, from GET /v1/clusters with this n")],
        n: ClusterCount = settings.default_count,
        offset: Annotated[int, Query(ge=0, le=settings.max_artworks, description="Artworks skipped")] = 0,
        limit: Annotated[
            int, Query(ge=1, le=MAX_MEMBER_PAGE, description="Artworks in this page")
        ] = DEFAULT_MEMBER_PAGE,
        cursor: Annotated[
            str | None,
            Query(
                min_length=1,
                max_length=200,
                description="The previous page's next_cursor (instead of n, offset and limit)",
            ),
        ] = None,
    ) -> JSONResponse:
        """The artworks of one cluster, nearest its centre first (with their cosine similarity to it), one
        page at a time: `next_cursor` (or `next_offset`) gives the next page, null after the last."""
        if cursor is not None:
            page = read_member_cursor(cursor, cluster, settings.max_artworks)
            n, offset, limit = page.n, page.offset, page.limit
        clusters, cached = await catalogue_clusters(request, settings, cache, n)
        if cluster >= len(clusters.members):
            raise ApiError(
                404, "cluster_not_found", f"no cluster {cluster} among {len(clusters.members)} clusters"
            )
        return JSONResponse(members_json(clusters, cluster, offset, limit, cached))

    return routes
