"""The answers of the search routes: POST /v1/search, GET /v1/artworks/{artwork_id}/similar and
POST /v1/predict-style. The handlers build these answers as plain JSON (services/gateway/explain.py and
query.py): these models only describe them."""

from typing import Literal

from pydantic import Field

from services.gateway.schemas import ResponseModel, example
from services.gateway.schemas.artworks import EXAMPLE_ARTWORK, EXAMPLE_METADATA, Artwork, ArtworkMetadata

_TIMINGS = {"encode": 38.1, "search": 8.9, "influence": 2.3}
_MODEL = {"name": "efficientnet-lite0-imagenet", "version": "57934424-g2-d1"}
_COLLECTION = "artworks__57934424-g2-d1"
EXAMPLE_PICTURE_ID = "9f2c4e1a7b3d5f60" * 4 + "-a"
EXAMPLE_SCORES = {
    "visual": 0.874512,
    "content": 0.861203,
    "style": 0.912877,
    "colour": 0.803114,
    "influence_hops": 0,
    "influence_weight": 0.82,
    "same_artist_rank": 0,
    "same_artist_penalty": 1.0,
    "final": 1.591612,
    "matched": "whole",
}
EXAMPLE_STYLE = {
    "label": "Post-Impressionism",
    "confidence": 0.711315,
    "top": [{"label": "Post-Impressionism", "score": 0.711315}, {"label": "Ukiyo-e", "score": 0.288685}],
    "voters": 12,
    "art_search": False,
}
EXAMPLE_SOURCE = {
    "name": "Vincent van Gogh",
    "key": "vincent van gogh",
    "how": "inferred",
    "in_influence_graph": True,
    "method": "vote",
    "confidence": 0.82,
    "applied_confidence": 0.82,
    "runner_up": {"name": "Paul Gauguin", "share": 0.18},
    "voters": 10,
}
EXAMPLE_RESULT = {
    **EXAMPLE_METADATA,
    "score": 1.591612,
    "scores": EXAMPLE_SCORES,
    "influence_path": ["Vincent van Gogh"],
}
EXAMPLE_QUERY = {
    "locate": "auto",
    "located": {
        "corners": [[0.1021, 0.0875], [0.8912, 0.0934], [0.8855, 0.9011], [0.0987, 0.8944]],
        "confidence": 0.9312,
        "area_fraction": 0.6411,
    },
    "searched_located": True,
    "whole_photo_confident": False,
    "best_from_located": True,
    "grey": "auto",
    "greyscale": False,
    "photo_greyscale": False,
    "chroma_spread": 18.288,
    "colour_dropped": False,
    "photo_colour_dropped": False,
}


class Scores(ResponseModel):
    """Every part of a result's score. Besides the fields below, one cosine similarity per aspect of the
    model's descriptor layout (content, style, colour for the shipped model), named by the aspect."""

    model_config = example(EXAMPLE_SCORES) | {"extra": "allow"}
    __pydantic_extra__: dict[str, float] = Field(init=False)  # the aspects' similarities, by aspect name
    visual: float = Field(description="Similarity s to the query under the request's aspect weights")
    influence_hops: int | None = Field(
        description="Hops from the source artist in the influence graph: 0 the same artist, null not "
        "connected (or no source artist)"
    )
    influence_weight: float = Field(
        description="The boost applied: influence_weight parameter x source confidence x w_i, so "
        "final = visual x (1 + influence_weight)"
    )
    same_artist_rank: int | None = Field(
        description="k among the source artist's works (0 the most similar); null for other artists"
    )
    same_artist_penalty: float | None = Field(
        description="w_i of a work by the source artist: 1 / same_artist_base ** same_artist_rank"
    )
    final: float = Field(description="The final score the results are ranked by (= the result's score)")
    matched: Literal["whole", "region"] | None = Field(
        default=None,
        description="Only with region matching: which part of the artwork gave the visual score (region: a "
        "detail of it)",
    )


class SearchResult(ArtworkMetadata):
    """One related artwork, with its score breakdown and influence path."""

    model_config = example(EXAMPLE_RESULT)
    score: float = Field(description="The final score; results are sorted by it, best first")
    scores: Scores = Field(description="Every part of the score")
    influence_path: list[str] | None = Field(
        description="Artist names from the source artist to this artwork's artist; null when not connected"
    )


class StyleScore(ResponseModel):
    label: str = Field(description="A style label")
    score: float = Field(description="Its share of the similarity-weighted vote")


class StylePrediction(ResponseModel):
    """The picture's style: a similarity-weighted vote of its nearest artworks' style labels."""

    model_config = example(EXAMPLE_STYLE)
    label: str = Field(description='The winning style; "unknown" when no neighbour has a style label')
    confidence: float = Field(description="The winner's share of the vote")
    top: list[StyleScore] = Field(description="The best 3 labels, best first")
    voters: int | None = Field(description="Neighbours with an art-style label that voted")
    art_search: bool | None = Field(
        description="Whether the voters were found by a search of their own (too few art-style labels among "
        "the candidates)"
    )


class RunnerUp(ResponseModel):
    name: str = Field(description="The second artist of the vote")
    share: float = Field(description="Its share of the vote")


class SourceArtist(ResponseModel):
    """The artist the influence re-rank counts hops from, and how it was chosen."""

    model_config = example(EXAMPLE_SOURCE)
    name: str | None = Field(description="The artist's name; null when there is none")
    key: str | None = Field(description="The artist's key in the influence graph")
    how: Literal["explicit", "artwork", "inferred", "none"] = Field(
        description="explicit: named by the request; artwork: the artist of the artwork searched from; "
        "inferred: chosen from the candidates (see method); none"
    )
    in_influence_graph: bool = Field(description="Whether the influence graph knows the artist")
    method: Literal["vote", "nearest"] | None = Field(
        description="How an inferred artist was chosen (the source_inference parameter); null otherwise"
    )
    confidence: float = Field(description="The winner's share of the vote; 1 when named or chosen by nearest")
    applied_confidence: float = Field(
        description="The c the boost was scaled by: a vote's lead (confidence less the runner-up's share), 0 "
        "under source_min_confidence; confidence when named or chosen by nearest"
    )
    runner_up: RunnerUp | None = Field(description="The vote's second artist, when there was one")
    voters: int | None = Field(description="Candidates that voted; null when not inferred by vote")


class ModelVersion(ResponseModel):
    name: str = Field(description="The encoder model's name")
    version: str = Field(description="Its version (the collection searched follows it)")


class LocatedPainting(ResponseModel):
    corners: list[list[float]] = Field(
        description="The painting's 4 corners as [x, y] fractions of the upright photo, top-left first, "
        "clockwise"
    )
    confidence: float = Field(description="How sure the encoder is of the painting's outline")
    area_fraction: float = Field(description="The painting's share of the photo's area")


class QueryAnalysis(ResponseModel):
    """What was done with the photo of a picture search."""

    model_config = example(EXAMPLE_QUERY)
    locate: Literal["auto", "off"] = Field(description="The locate parameter")
    located: LocatedPainting | None = Field(
        description="The painting the encoder located; null when none, or when the whole photo matched with "
        "confidence (`whole_photo_confident`)"
    )
    searched_located: bool = Field(description="Whether the located painting was searched for too")
    whole_photo_confident: bool = Field(
        description="Whether the whole photo's best match scored at least the gateway's "
        "WHOLE_PHOTO_CONFIDENT_SCORE (or led the next artwork clearly a little below it): answered from it "
        "alone, the painting in it neither located nor searched"
    )
    best_from_located: bool = Field(description="Whether the best match came from the located painting")
    grey: Literal["auto", "off"] = Field(description="The grey parameter")
    greyscale: bool = Field(
        description="Whether the located painting (when one was searched for; else the photo) is grey-scale"
    )
    photo_greyscale: bool = Field(description="Whether the whole photo is grey-scale")
    chroma_spread: float = Field(
        description="The spread of colour (chroma; low: grey-scale) `greyscale` was decided on"
    )
    colour_dropped: bool = Field(
        description="Whether the colour aspect was left out of the located painting's search (when one was "
        "searched for; else of the photo's): `weights` are that search's"
    )
    photo_colour_dropped: bool = Field(
        description="Whether the colour aspect was left out of the whole photo's search"
    )


_TIMINGS_DOC = "Milliseconds spent per step of this request"
_MODEL_DOC = "The encoder model the query descriptor came from"
_COLLECTION_DOC = "The collection (or alias) searched"


class SearchAnswer(ResponseModel):
    """POST /v1/search and GET /v1/artworks/{artwork_id}/similar: related artworks, best first."""

    model_config = example(
        {
            "results": [EXAMPLE_RESULT],
            "style_prediction": EXAMPLE_STYLE,
            "source_artist": EXAMPLE_SOURCE,
            "k": 25,
            "offset": 0,
            "pool": 100,
            "candidates": 100,
            "weights": {"content": 0.5, "style": 0.3, "colour": 0.2, "influence": 1.0},
            "degraded": [],
            "timings_ms": _TIMINGS,
            "model": _MODEL,
            "collection": _COLLECTION,
            "query": EXAMPLE_QUERY,
            "next_cursor": "c2VhcmNoLXRva2VuOjI1OjI1",
            "picture_id": EXAMPLE_PICTURE_ID,
        }
    )
    results: list[SearchResult] = Field(description="This page of related artworks, best first")
    style_prediction: StylePrediction = Field(description="The query's predicted style")
    source_artist: SourceArtist = Field(description="The source artist of the influence re-rank")
    k: int = Field(description="Results asked for (the page size)")
    offset: int = Field(description="Results skipped (the page's start in the ranking)")
    pool: int = Field(description="Candidates asked of the visual search before the re-rank")
    candidates: int = Field(description="Candidates re-ranked (after filters and exclusions)")
    weights: dict[str, float] = Field(
        description="The weight of each descriptor aspect used (by aspect name) and the influence weight"
    )
    degraded: list[str] = Field(
        description='Optional services that did not answer ("influence": the visual order was kept)'
    )
    timings_ms: dict[str, float] = Field(description=_TIMINGS_DOC)
    model: ModelVersion = Field(description=_MODEL_DOC)
    collection: str = Field(description=_COLLECTION_DOC)
    query: QueryAnalysis | None = Field(
        default=None, description="Picture searches only (absent for similar): what was done with the photo"
    )
    next_cursor: str | None = Field(
        description="Opaque: pass it as `cursor` (GET /v1/search for a picture search, the same similar "
        "route for similar) for the next page of this same ranked result, without sending the picture "
        "again; null on the last page of the pool (or when cursors are off)",
    )
    picture_id: str | None = Field(
        default=None,
        description="Picture searches only (absent for similar): the picture's id while the gateway keeps "
        "its descriptors (the QUERY_CACHE_ENTRIES most recent pictures, QUERY_CACHE_TTL_S seconds at most). "
        "Send it as `picture_id` instead of the picture to search again with other parameters (weights, k, "
        "filters, influence...) without uploading or encoding it; 410 picture_expired once no longer kept. "
        "Null when the cache is off",
        examples=[EXAMPLE_PICTURE_ID],
    )


class StyleNeighbour(Artwork):
    """A catalogue artwork near the picture, with its similarity."""

    model_config = example({**EXAMPLE_ARTWORK, "score": 0.874512})
    score: float = Field(description="Cosine similarity to the picture")


class StyleAnswer(ResponseModel):
    """POST /v1/predict-style: the picture's style and the neighbours that voted."""

    model_config = example(
        {
            "style": EXAMPLE_STYLE | {"art_search": True},
            "neighbours": [{**EXAMPLE_ARTWORK, "score": 0.874512}],
            "timings_ms": _TIMINGS,
            "model": _MODEL,
            "collection": _COLLECTION,
        }
    )
    style: StylePrediction = Field(description="The predicted style")
    neighbours: list[StyleNeighbour] = Field(description="The nearest catalogue artworks, nearest first")
    timings_ms: dict[str, float] = Field(description=_TIMINGS_DOC)
    model: ModelVersion = Field(description=_MODEL_DOC)
    collection: str = Field(description=_COLLECTION_DOC)
