"""The answers of GET /v1/clusters and GET /v1/clusters/{cluster}."""

from typing import Literal

from pydantic import Field

from services.gateway.schemas import ResponseModel, example
from services.gateway.schemas.artworks import EXAMPLE_ARTWORK, Artwork

_MEMBER = {**EXAMPLE_ARTWORK, "similarity": 0.912345}
_CLUSTER = {
    "id": 0,
    "size": 6,
    "url": "/v1/clusters/0?n=12",
    "representatives": [_MEMBER],
    "top_styles": [{"name": "Post-Impressionism", "count": 4}, {"name": "Impressionism", "count": 2}],
    "top_artists": [{"name": "Vincent van Gogh", "count": 3}, {"name": "Paul Gauguin", "count": 1}],
    "style_purity": 0.666667,
}
_COMPUTED_AT_DOC = "When this clustering was computed (ISO 8601, UTC)"
_CACHED_DOC = "Whether this clustering was reused (computed for an earlier request, within CLUSTER_CACHE_S)"


class ClusterMember(Artwork):
    """An artwork of a cluster, with its cosine similarity to the cluster's centre."""

    model_config = example(_MEMBER)
    similarity: float = Field(description="Cosine similarity to the cluster's centre")


class LabelCount(ResponseModel):
    name: str = Field(description="A style or artist name")
    count: int = Field(description="Artworks of the cluster that carry it")


class Cluster(ResponseModel):
    """One cluster of similar-looking artworks."""

    model_config = example(_CLUSTER)
    id: int = Field(description="Cluster id: 0.. by decreasing size, valid for this clustering (this n)")
    size: int = Field(description="Artworks in the cluster")
    url: str = Field(description="The route listing its artworks")
    representatives: list[ClusterMember] = Field(description="The artworks nearest its centre (at most 4)")
    top_styles: list[LabelCount] = Field(description="Its most common styles (at most 3)")
    top_artists: list[LabelCount] = Field(description="Its most common artists (at most 3)")
    style_purity: float | None = Field(
        description="Share of its style-labelled artworks that carry its most common style; null when "
        "none is labelled"
    )


class ClusteringPurity(ResponseModel):
    label: Literal["style"] = Field(description="The label the purity is measured by")
    value: float = Field(description="Share of labelled artworks whose cluster's most common label is theirs")
    labelled: int = Field(description="Artworks that carry the label")


class ClusterList(ResponseModel):
    """GET /v1/clusters: the catalogue in `n` clusters, largest first."""

    model_config = example(
        {
            "collection": "artworks",
            "n": 12,
            "artworks": 36,
            "unclustered": 0,
            "purity": {"label": "style", "value": 0.583333, "labelled": 36},
            "clusters": [_CLUSTER],
            "computed_at": "2025-01-01T12:00:00+00:00",
            "cached": False,
            "timings_ms": {"scroll": 41.2, "cluster": 180.5},
        }
    )
    collection: str = Field(description="The collection clustered")
    n: int = Field(description="Clusters asked for")
    artworks: int = Field(description="Artworks clustered")
    unclustered: int = Field(
        description="Artworks left out: no usable descriptor (none, or another dimension than the rest)"
    )
    purity: ClusteringPurity | None = Field(description="Purity by style label; null without style labels")
    clusters: list[Cluster] = Field(description="The clusters, largest first")
    computed_at: str = Field(description=_COMPUTED_AT_DOC)
    cached: bool = Field(description=_CACHED_DOC)
    timings_ms: dict[str, float] = Field(description="Milliseconds per step of the clustering")


class ClusterPage(ResponseModel):
    """GET /v1/clusters/{cluster}: one page of a cluster's artworks, nearest its centre first."""

    model_config = example(
        {
            "cluster": 0,
            "n": 12,
            "size": 6,
            "offset": 0,
            "limit": 24,
            "members": [_MEMBER],
            "next_offset": None,
            "next_cursor": None,
            "computed_at": "2025-01-01T12:00:00+00:00",
            "cached": True,
        }
    )
    cluster: int = Field(description="The cluster's id")
    n: int = Field(description="Clusters of the clustering")
    size: int = Field(description="Artworks in the cluster")
    offset: int = Field(description="Artworks skipped")
    limit: int = Field(description="Artworks per page asked for")
    members: list[ClusterMember] = Field(description="This page's artworks, nearest the centre first")
    next_offset: int | None = Field(description="The next page's offset; null after the last")
    next_cursor: str | None = Field(description="The next page's `cursor` (opaque); null after the last")
    computed_at: str = Field(description=_COMPUTED_AT_DOC)
    cached: bool = Field(description=_CACHED_DOC)
