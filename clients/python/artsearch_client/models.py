"""Typed views of the gateway's JSON answers.

Each class mirrors one JSON object as the gateway sends it today; `raw` keeps the whole object as it came,
so a field a newer gateway adds is still there (`answer.raw["new_field"]`) and an older client does not
break on it. A field the gateway leaves out reads as None (or empty)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

JsonObject = dict[str, Any]


def _object(value: Any) -> JsonObject:
    return value if isinstance(value, dict) else {}


def _objects(value: Any) -> list[JsonObject]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


@dataclass(frozen=True)
class Artwork:
    """One artwork's metadata (`extra`: the record's extra fields, on the admin routes only)."""

    id: str
    title: str
    artist: str | None = None
    style: str | None = None
    genre: str | None = None
    year: int | None = None
    catalogue: str | None = None
    image_uri: str | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None
    extra: dict[str, str] | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Artwork:
        return cls(
            id=data.get("id", ""),
            title=data.get("title", ""),
            artist=data.get("artist"),
            style=data.get("style"),
            genre=data.get("genre"),
            year=data.get("year"),
            catalogue=data.get("catalogue"),
            image_uri=data.get("image_uri"),
            image_url=data.get("image_url"),
            thumbnail_url=data.get("thumbnail_url"),
            extra=data.get("extra"),
            raw=data,
        )


@dataclass(frozen=True)
class Scores:
    """A result's score breakdown: final = visual * (1 + influence_weight)."""

    visual: float
    final: float
    content: float | None = None
    style: float | None = None
    colour: float | None = None
    influence_hops: int | None = None
    influence_weight: float = 0.0
    same_artist_rank: int | None = None
    same_artist_penalty: float | None = None
    # "whole" or "region": what of the artwork the picture matched (region search), when said.
    matched: str | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Scores:
        return cls(
            visual=data.get("visual", 0.0),
            final=data.get("final", 0.0),
            content=data.get("content"),
            style=data.get("style"),
            colour=data.get("colour"),
            influence_hops=data.get("influence_hops"),
            influence_weight=data.get("influence_weight", 0.0),
            same_artist_rank=data.get("same_artist_rank"),
            same_artist_penalty=data.get("same_artist_penalty"),
            matched=data.get("matched"),
            raw=data,
        )


@dataclass(frozen=True)
class SearchResult:
    """One ranked result: the artwork's public metadata, its score and why."""

    id: str
    title: str
    score: float
    scores: Scores
    artist: str | None = None
    style: str | None = None
    genre: str | None = None
    year: int | None = None
    image_uri: str | None = None
    image_url: str | None = None
    thumbnail_url: str | None = None
    # Artist names from the source artist to this result's artist; None when not connected.
    influence_path: list[str] | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> SearchResult:
        return cls(
            id=data.get("id", ""),
            title=data.get("title", ""),
            score=data.get("score", 0.0),
            scores=Scores.from_json(_object(data.get("scores"))),
            artist=data.get("artist"),
            style=data.get("style"),
            genre=data.get("genre"),
            year=data.get("year"),
            image_uri=data.get("image_uri"),
            image_url=data.get("image_url"),
            thumbnail_url=data.get("thumbnail_url"),
            influence_path=data.get("influence_path"),
            raw=data,
        )


@dataclass(frozen=True)
class RunnerUp:
    name: str
    share: float


@dataclass(frozen=True)
class SourceArtist:
    """The artist the re-rank starts from; `how`: explicit, artwork, inferred or none."""

    name: str | None
    how: str
    key: str | None = None
    in_influence_graph: bool = False
    method: str | None = None
    confidence: float | None = None
    applied_confidence: float | None = None
    runner_up: RunnerUp | None = None
    voters: int | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> SourceArtist:
        runner_up = data.get("runner_up")
        return cls(
            name=data.get("name"),
            how=data.get("how", "none"),
            key=data.get("key"),
            in_influence_graph=bool(data.get("in_influence_graph")),
            method=data.get("method"),
            confidence=data.get("confidence"),
            applied_confidence=data.get("applied_confidence"),
            runner_up=RunnerUp(runner_up.get("name", ""), runner_up.get("share", 0.0))
            if isinstance(runner_up, dict)
            else None,
            voters=data.get("voters"),
            raw=data,
        )


@dataclass(frozen=True)
class LabelScore:
    label: str
    score: float


@dataclass(frozen=True)
class StylePrediction:
    """A style voted by the nearest art-style artworks; "unknown" (confidence 0) when none has a label."""

    label: str
    confidence: float
    top: list[LabelScore]
    voters: int | None = None
    art_search: bool | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> StylePrediction:
        return cls(
            label=data.get("label", "unknown"),
            confidence=data.get("confidence", 0.0),
            top=[LabelScore(t.get("label", ""), t.get("score", 0.0)) for t in _objects(data.get("top"))],
            voters=data.get("voters"),
            art_search=data.get("art_search"),
            raw=data,
        )


@dataclass(frozen=True)
class ModelInfo:
    name: str
    version: str

    @classmethod
    def from_json(cls, data: JsonObject) -> ModelInfo:
        return cls(data.get("name", ""), data.get("version", ""))


@dataclass(frozen=True)
class SearchResponse:
    """The answer of a search (by picture, URL or stored artwork): results best first."""

    results: list[SearchResult]
    source_artist: SourceArtist
    style_prediction: StylePrediction | None = None
    k: int | None = None
    offset: int | None = None
    pool: int | None = None
    candidates: int | None = None
    # The aspect weights used (normalised) and the influence weight.
    weights: dict[str, float] = field(default_factory=dict)
    # Optional services that were down: their part is missing (e.g. ["influence"]: visual order).
    degraded: list[str] = field(default_factory=list)
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: ModelInfo | None = None
    collection: str | None = None
    # A picture search's analysis (located painting, grey-scale), when the encoder analysed it.
    query: JsonObject | None = None
    # The next page's cursor, where the gateway gives one.
    next_cursor: str | None = None
    # A picture search's picture id while the gateway keeps its descriptors: `search_by_picture_id` searches
    # the picture again with other parameters without sending it.
    picture_id: str | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> SearchResponse:
        style, model = data.get("style_prediction"), data.get("model")
        return cls(
            results=[SearchResult.from_json(r) for r in _objects(data.get("results"))],
            source_artist=SourceArtist.from_json(_object(data.get("source_artist"))),
            style_prediction=StylePrediction.from_json(style) if isinstance(style, dict) else None,
            k=data.get("k"),
            offset=data.get("offset"),
            pool=data.get("pool"),
            candidates=data.get("candidates"),
            weights=_object(data.get("weights")),
            degraded=list(data.get("degraded") or []),
            timings_ms=_object(data.get("timings_ms")),
            model=ModelInfo.from_json(model) if isinstance(model, dict) else None,
            collection=data.get("collection"),
            query=data.get("query"),
            next_cursor=data.get("next_cursor"),
            picture_id=data.get("picture_id"),
            raw=data,
        )


@dataclass(frozen=True)
class StyleNeighbour:
    """A catalogue artwork that voted in a style prediction, with its similarity."""

    artwork: Artwork
    score: float


@dataclass(frozen=True)
class StyleResponse:
    """The answer of `predict_style`."""

    style: StylePrediction
    neighbours: list[StyleNeighbour]
    timings_ms: dict[str, float] = field(default_factory=dict)
    model: ModelInfo | None = None
    collection: str | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> StyleResponse:
        model = data.get("model")
        return cls(
            style=StylePrediction.from_json(_object(data.get("style"))),
            neighbours=[
                StyleNeighbour(Artwork.from_json(n), n.get("score", 0.0))
                for n in _objects(data.get("neighbours"))
            ],
            timings_ms=_object(data.get("timings_ms")),
            model=ModelInfo.from_json(model) if isinstance(model, dict) else None,
            collection=data.get("collection"),
            raw=data,
        )


@dataclass(frozen=True)
class Readiness:
    """`GET /readyz`: ready while the encoder and search services answer; influence is optional."""

    ready: bool
    services: dict[str, bool]
    degraded: list[str]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Readiness:
        return cls(
            bool(data.get("ready")), _object(data.get("services")), list(data.get("degraded") or []), data
        )


@dataclass(frozen=True)
class Artist:
    key: str
    name: str
    birth_year: int | None = None
    death_year: int | None = None
    movement: str | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Artist:
        return cls(
            key=data.get("key", ""),
            name=data.get("name", ""),
            birth_year=data.get("birth_year"),
            death_year=data.get("death_year"),
            movement=data.get("movement"),
            raw=data,
        )


@dataclass(frozen=True)
class ArtistPage:
    artists: list[Artist]
    next_cursor: str | None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ArtistPage:
        return cls(
            [Artist.from_json(a) for a in _objects(data.get("artists"))], data.get("next_cursor"), data
        )


@dataclass(frozen=True)
class Neighbour:
    """An artist linked to another: `relation` is "influenced" or "teacher"; `source` cites the fact."""

    artist: Artist
    relation: str
    source: str | None = None

    @classmethod
    def from_json(cls, data: JsonObject) -> Neighbour:
        return cls(
            Artist.from_json(_object(data.get("artist"))), data.get("relation", ""), data.get("source")
        )


@dataclass(frozen=True)
class ArtistNeighbours:
    """Who influenced an artist (`influencers`) and whom the artist influenced (`influenced`)."""

    artist: Artist
    influencers: list[Neighbour]
    influenced: list[Neighbour]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ArtistNeighbours:
        return cls(
            Artist.from_json(_object(data.get("artist"))),
            [Neighbour.from_json(n) for n in _objects(data.get("influencers"))],
            [Neighbour.from_json(n) for n in _objects(data.get("influenced"))],
            data,
        )


@dataclass(frozen=True)
class InfluenceEdge:
    """`influencer` influenced `influenced` (artist keys)."""

    influencer: str
    influenced: str
    relation: str = "influenced"
    source: str | None = None


@dataclass(frozen=True)
class InfluencePath:
    """A shortest chain of influence between two artists; `found` False when none within max_hops."""

    found: bool
    hops: int | None
    artists: list[Artist]
    edges: list[InfluenceEdge]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> InfluencePath:
        return cls(
            found=bool(data.get("found")),
            hops=data.get("hops"),
            artists=[Artist.from_json(a) for a in _objects(data.get("artists"))],
            edges=[
                InfluenceEdge(
                    e.get("influencer", ""),
                    e.get("influenced", ""),
                    e.get("relation", "influenced"),
                    e.get("source"),
                )
                for e in _objects(data.get("edges"))
            ],
            raw=data,
        )


@dataclass(frozen=True)
class ArtworkPage:
    """One page of the admin listing; pass `next_cursor` back for the next (None after the last)."""

    artworks: list[Artwork]
    next_cursor: str | None
    limit: int | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ArtworkPage:
        return cls(
            [Artwork.from_json(a) for a in _objects(data.get("artworks"))],
            data.get("next_cursor"),
            data.get("limit"),
            data,
        )


@dataclass(frozen=True)
class ArtworkChange:
    """An added or edited artwork as stored; `degraded` lists the optional steps that failed (influence)."""

    artwork: Artwork
    degraded: list[str]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ArtworkChange:
        return cls(Artwork.from_json(_object(data.get("artwork"))), list(data.get("degraded") or []), data)


@dataclass(frozen=True)
class BatchItem:
    """One image of a batch: `status` "added" (with `artwork`) or "rejected" (with `reason`)."""

    filename: str
    status: str
    artwork: Artwork | None = None
    reason: str | None = None

    @property
    def added(self) -> bool:
        return self.status == "added"


@dataclass(frozen=True)
class BatchResult:
    added: int
    rejected: int
    results: list[BatchItem]
    degraded: list[str]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> BatchResult:
        items = [
            BatchItem(
                filename=r.get("filename", ""),
                status=r.get("status", ""),
                artwork=Artwork.from_json(r["artwork"]) if isinstance(r.get("artwork"), dict) else None,
                reason=r.get("reason"),
            )
            for r in _objects(data.get("results"))
        ]
        return cls(
            data.get("added", 0), data.get("rejected", 0), items, list(data.get("degraded") or []), data
        )


@dataclass(frozen=True)
class ArtistAdditions:
    artists_added: int
    influences_added: int
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ArtistAdditions:
        return cls(data.get("artists_added", 0), data.get("influences_added", 0), data)


@dataclass(frozen=True)
class ClusterArtwork:
    """An artwork of a cluster, with its cosine similarity to the cluster's centre."""

    artwork: Artwork
    similarity: float

    @classmethod
    def from_json(cls, data: JsonObject) -> ClusterArtwork:
        return cls(Artwork.from_json(data), data.get("similarity", 0.0))


@dataclass(frozen=True)
class NameCount:
    name: str
    count: int


@dataclass(frozen=True)
class Cluster:
    """One cluster of similar-looking artworks: its size, the artworks nearest its centre, its most common
    styles and artists."""

    id: int
    size: int
    representatives: list[ClusterArtwork]
    top_styles: list[NameCount]
    top_artists: list[NameCount]
    style_purity: float | None = None
    url: str | None = None  # the route of its members
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Cluster:
        def counts(key: str) -> list[NameCount]:
            return [NameCount(c.get("name", ""), c.get("count", 0)) for c in _objects(data.get(key))]

        return cls(
            id=data.get("id", 0),
            size=data.get("size", 0),
            representatives=[ClusterArtwork.from_json(r) for r in _objects(data.get("representatives"))],
            top_styles=counts("top_styles"),
            top_artists=counts("top_artists"),
            style_purity=data.get("style_purity"),
            url=data.get("url"),
            raw=data,
        )


@dataclass(frozen=True)
class Clustering:
    """`GET /v1/clusters`: the catalogue in `n` clusters, largest first (ids belong to this `n`)."""

    n: int
    artworks: int
    clusters: list[Cluster]
    unclustered: int = 0
    collection: str | None = None
    # Purity by style label ({"label", "value", "labelled"}); None when no artwork has a style.
    purity: JsonObject | None = None
    computed_at: str | None = None
    cached: bool | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> Clustering:
        return cls(
            n=data.get("n", 0),
            artworks=data.get("artworks", 0),
            clusters=[Cluster.from_json(c) for c in _objects(data.get("clusters"))],
            unclustered=data.get("unclustered", 0),
            collection=data.get("collection"),
            purity=data.get("purity"),
            computed_at=data.get("computed_at"),
            cached=data.get("cached"),
            timings_ms=_object(data.get("timings_ms")),
            raw=data,
        )


@dataclass(frozen=True)
class ClusterMembers:
    """One page of a cluster's artworks, nearest its centre first; `next_offset` None after the last."""

    cluster: int
    size: int
    members: list[ClusterArtwork]
    next_offset: int | None = None
    # The next page's cursor (GET /v1/clusters/{cluster}?cursor=); None after the last.
    next_cursor: str | None = None
    n: int | None = None
    offset: int | None = None
    limit: int | None = None
    computed_at: str | None = None
    cached: bool | None = None
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> ClusterMembers:
        return cls(
            cluster=data.get("cluster", 0),
            size=data.get("size", 0),
            members=[ClusterArtwork.from_json(m) for m in _objects(data.get("members"))],
            next_offset=data.get("next_offset"),
            next_cursor=data.get("next_cursor"),
            n=data.get("n"),
            offset=data.get("offset"),
            limit=data.get("limit"),
            computed_at=data.get("computed_at"),
            cached=data.get("cached"),
            raw=data,
        )


@dataclass(frozen=True)
class BatchSearchItem:
    """One query of a batch search: its `answer` (status 200) or its `error` ({"code", "message"}, with the
    `status` the query alone would have been answered)."""

    index: int
    status: int
    answer: SearchResponse | None = None
    error: JsonObject | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def error_code(self) -> str | None:
        return None if self.error is None else self.error.get("code")

    @property
    def error_message(self) -> str | None:
        return None if self.error is None else self.error.get("message")


@dataclass(frozen=True)
class BatchSearchResponse:
    """`POST /v1/search/batch`: each query's outcome, in the order of the queries."""

    queries: int
    answered: int
    failed: int
    results: list[BatchSearchItem]
    raw: JsonObject = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: JsonObject) -> BatchSearchResponse:
        items = []
        for item in _objects(data.get("results")):
            answer, error = item.get("answer"), item.get("error")
            items.append(
                BatchSearchItem(
                    index=item.get("index", len(items)),
                    status=item.get("status", 0),
                    answer=SearchResponse.from_json(answer) if isinstance(answer, dict) else None,
                    error=_object(error) if isinstance(error, dict) else None,
                )
            )
        return cls(data.get("queries", 0), data.get("answered", 0), data.get("failed", 0), items, data)
