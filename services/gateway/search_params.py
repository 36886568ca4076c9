"""The parameters of every search route: query parameters (documented in OpenAPI), optionally overridden by
the fields of a JSON body, then checked once against the gateway's bounds.

No `from __future__ import annotations`: FastAPI reads `search_query`'s signature at run time, and its
Query bounds refer to the configuration in the enclosing scope."""

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Annotated, Any, Literal

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError
from services.gateway.schemas.search import EXAMPLE_PICTURE_ID

MAX_WEIGHT = 100.0
YEAR_RANGE = (-5000, 3000)
MAX_FILTER_VALUES = 50
MAX_NAME_CHARS = 200
ASPECT_PARAMS = {"w_content": "content", "w_style": "style", "w_colour": "colour"}
# How the source artist is inferred when nobody names it: the similarity-weighted vote of the top
# candidates (services.gateway.fusion.vote_source_artist), or the seed system's rule (the most similar
# candidate's artist in the influence graph, confidence 1).
SourceInference = Literal["vote", "nearest"]
MAX_SOURCE_TOP = 100
MAX_SOURCE_TEMPERATURE = 10.0


@dataclass(frozen=True)
class SearchOptions:
    k: int
    offset: int = 0
    pool: int = 100
    rerank: bool = True
    # Multiplies the influence weight w_i of the re-rank formula; 0 keeps the visual order.
    influence_weight: float = 1.0
    # Explicit source artist; None infers it from the candidates (`source_inference`).
    source_artist: str | None = None
    source_inference: SourceInference = "vote"
    # The vote: how many of the most similar candidates vote, the softmax temperature over their
    # similarities, and the winner's share under which the influence boost is off (c = 0). The defaults
    # were measured on the demo catalogue (bench/source_inference.py).
    source_top: int = 10
    source_temperature: float = 0.03
    source_min_confidence: float = 0.3
    # Aspect weights the client set (aspect name -> weight); the others keep the encoder's defaults.
    aspect_weights: dict[str, float] = field(default_factory=dict)
    filter_artist: tuple[str, ...] = ()
    filter_style: tuple[str, ...] = ()
    filter_genre: tuple[str, ...] = ()
    year_min: int | None = None
    year_max: int | None = None
    exclude_same_artist: bool = False
    # A picture query: "auto" searches with the painting located in the photo too and keeps, per artwork,
    # the better similarity; "off" searches with the whole photo only (the behaviour before).
    locate: str = "auto"
    # A picture query: "auto" drops the colour aspect when the photo is grey-scale; "off" never does.
    grey: str = "auto"
    # A picture query: "auto" also matches the artworks' regions (a photo of a detail finds the whole) in a
    # collection that has them; "off" compares whole pictures only.
    regions: str = "auto"


AUTO_OFF = ("auto", "off")


# The fields of a search body that say what to search (one of them), not how.
PICTURE_FIELDS = ("url", "picture_id", "cursor")
_PICTURE_ID_DOC = (
    "Instead of the picture: the picture_id of a previous picture search's answer, re-ranked from the "
    "descriptors the gateway kept (no upload, no encode); 410 picture_expired once no longer kept "
    "(send the picture again), 400 invalid_picture_id when malformed"
)
# OpenAPI of a search body that carries a picture or the picture_id of one (the route's request body).
PICTURE_ID_FORM_FIELD = {"type": "string", "description": _PICTURE_ID_DOC, "examples": [EXAMPLE_PICTURE_ID]}
_POST_CURSOR_DOC = (
    "Instead of the picture: the next_cursor of a previous answer, for its next page of the same ranked "
    "result, as GET /v1/search?cursor= (for clients that only POST; the other parameters are not read). "
    "410 cursor_expired when no longer kept, 400 invalid_cursor when malformed"
)
CURSOR_FORM_FIELD = {"type": "string", "minLength": 1, "description": _POST_CURSOR_DOC}
PICTURE_OR_ID = {"oneOf": [{"required": ["image"]}, {"required": ["picture_id"]}, {"required": ["cursor"]}]}


def picture_id_examples() -> dict[str, Any]:
    """The JSON body's example of a search by picture_id."""
    body = {"picture_id": EXAMPLE_PICTURE_ID, "k": 25, "w_colour": 0.8, "influence_weight": 0}
    return {"by_picture_id": {"summary": "The same picture again, re-weighted", "value": body}}


class UrlRequest(BaseModel):
    """JSON body of the search route: an image URL, or the `picture_id` of a picture searched a moment ago,
    and optionally any search parameter (a body field overrides the query parameter of the same name); or the
    `cursor` of a previous answer alone, for its next page (as GET /v1/search?cursor=)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "oneOf": [{"required": ["url"]}, {"required": ["picture_id"]}, {"required": ["cursor"]}]
        },
    )

    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2048,
        description=(
            "http(s) URL of a picture (JPEG, PNG, WebP, GIF, BMP, TIFF, AVIF or HEIF/HEIC); or picture_id"
        ),
        examples=["https://upload.wikimedia.org/wikipedia/commons/a/a5/Tsunami_by_hokusai_19th_century.jpg"],
    )
    picture_id: str | None = Field(default=None, description=_PICTURE_ID_DOC, examples=[EXAMPLE_PICTURE_ID])
    cursor: str | None = Field(default=None, min_length=1, description=_POST_CURSOR_DOC)
    k: int | None = None
    offset: int | None = None
    pool: int | None = None
    rerank: bool | None = None
    influence_weight: float | None = None
    source_artist: str | None = Field(default=None, max_length=MAX_NAME_CHARS)
    source_inference: SourceInference | None = None
    source_top: int | None = None
    source_temperature: float | None = None
    source_min_confidence: float | None = None
    w_content: float | None = None
    w_style: float | None = None
    w_colour: float | None = None
    filter_artist: list[str] | None = None
    filter_style: list[str] | None = None
    filter_genre: list[str] | None = None
    year_min: int | None = None
    year_max: int | None = None
    exclude_same_artist: bool | None = None
    locate: Literal["auto", "off"] | None = None
    grey: Literal["auto", "off"] | None = None
    regions: Literal["auto", "off"] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_picture(cls, data: Any) -> Any:
        # Checked before the fields, so a misspelt `url` is answered as a missing picture too.
        if isinstance(data, dict) and sum(data.get(name) is not None for name in PICTURE_FIELDS) != 1:
            raise ValueError("send exactly one of url, picture_id and cursor")
        return data


def search_query(config: GatewayConfig) -> Callable[..., SearchOptions]:
    """A FastAPI dependency reading the search query parameters, with bounds from the configuration."""

    def read(
        k: Annotated[int, Query(ge=1, le=config.max_k, description="Results per page")] = config.default_k,
        offset: Annotated[
            int, Query(ge=0, lt=config.max_pool, description="Results to skip (pagination over the pool)")
        ] = 0,
        pool: Annotated[
            int,
            Query(
                ge=1,
                le=config.max_pool,
                description="Visual candidates re-ranked by influence; raised to offset + k when smaller",
            ),
        ] = config.default_pool,
        rerank: Annotated[bool, Query(description="Re-rank the visual candidates by influence")] = True,
        influence_weight: Annotated[
            float,
            Query(ge=0, le=MAX_WEIGHT, allow_inf_nan=False, description="Scales the influence boost; 0: off"),
        ] = 1.0,
        source_artist: Annotated[
            str | None,
            Query(
                max_length=MAX_NAME_CHARS, description="Source artist; inferred from the results if absent"
            ),
        ] = None,
        source_inference: Annotated[
            SourceInference,
            Query(
                description="How the source artist is inferred when not named: 'vote' (similarity-weighted "
                "vote of the top candidates; the boost scales by the winner's share) or 'nearest' (the most "
                "similar candidate's artist in the influence graph, the original rule, full boost)"
            ),
        ] = "vote",
        source_top: Annotated[
            int, Query(ge=1, le=MAX_SOURCE_TOP, description="Most similar candidates that vote")
        ] = 10,
        source_temperature: Annotated[
            float,
            Query(
                ge=0,
                le=MAX_SOURCE_TEMPERATURE,
                allow_inf_nan=False,
                description="Softmax temperature of the vote over similarities; 0: the most similar decides",
            ),
        ] = 0.03,
        source_min_confidence: Annotated[
            float,
            Query(
                ge=0,
                le=1,
                allow_inf_nan=False,
                description="No influence boost when the voted artist's share is under this",
            ),
        ] = 0.3,
        w_content: Annotated[float | None, _weight_query("content (what is depicted)")] = None,
        w_style: Annotated[float | None, _weight_query("style (brushwork, texture)")] = None,
        w_colour: Annotated[float | None, _weight_query("colour (palette)")] = None,
        filter_artist: Annotated[list[str] | None, _filter_query("Only these artists (any of)")] = None,
        filter_style: Annotated[list[str] | None, _filter_query("Only these styles (any of, exact)")] = None,
        filter_genre: Annotated[list[str] | None, _filter_query("Only these genres (any of, exact)")] = None,
        year_min: Annotated[int | None, _year_query("Earliest year (inclusive)")] = None,
        year_max: Annotated[int | None, _year_query("Latest year (inclusive)")] = None,
        exclude_same_artist: Annotated[
            bool, Query(description="Leave out works by the source artist (explicit or inferred)")
        ] = False,
        locate: Annotated[
            Literal["auto", "off"],
            Query(
                description="Picture searches: 'auto' also searches with the painting the encoder locates in "
                "the photo (its frame or boundary, perspective undone) and keeps per artwork the better "
                "similarity; 'off': the whole photo only"
            ),
        ] = "auto",
        grey: Annotated[
            Literal["auto", "off"],
            Query(
                description="Picture searches: 'auto' leaves the colour aspect out for a grey-scale photo "
                "(unless w_colour is given); 'off': never"
            ),
        ] = "auto",
        regions: Annotated[
            Literal["auto", "off"],
            Query(
                description="Picture searches: 'auto' also matches the photo against parts of each artwork "
                "(its regions, where ingested), so a photo of a detail finds the whole; 'off': whole "
                "pictures only"
            ),
        ] = "auto",
    ) -> SearchOptions:
        weights = {"w_content": w_content, "w_style": w_style, "w_colour": w_colour}
        return SearchOptions(
            k=k,
            offset=offset,
            pool=pool,
            rerank=rerank,
            influence_weight=influence_weight,
            source_artist=_clean_name(source_artist),
            source_inference=source_inference,
            source_top=source_top,
            source_temperature=source_temperature,
            source_min_confidence=source_min_confidence,
            aspect_weights={ASPECT_PARAMS[n]: v for n, v in weights.items() if v is not None},
            filter_artist=_clean_values(filter_artist),
            filter_style=_clean_values(filter_style),
            filter_genre=_clean_values(filter_genre),
            year_min=year_min,
            year_max=year_max,
            exclude_same_artist=exclude_same_artist,
            locate=locate,
            grey=grey,
            regions=regions,
        )

    return read


def _weight_query(aspect: str) -> Any:
    return Query(
        ge=0,
        le=MAX_WEIGHT,
        allow_inf_nan=False,
        description=f"Weight of the {aspect} aspect (relative; default: the encoder's default weight)",
    )


def _filter_query(description: str) -> Any:
    return Query(description=f"{description}; repeat the parameter for several values")


def _year_query(description: str) -> Any:
    return Query(ge=YEAR_RANGE[0], le=YEAR_RANGE[1], description=description)


def with_body(options: SearchOptions, body: UrlRequest) -> SearchOptions:
    """The query options with every field the JSON body sets replacing the query's value."""
    given = body.model_dump(exclude_none=True, exclude=set(PICTURE_FIELDS))
    changes: dict[str, object] = {}
    weights = dict(options.aspect_weights)
    for name, value in given.items():
        if name in ASPECT_PARAMS:
            weights[ASPECT_PARAMS[name]] = float(value)
        elif name in ("filter_artist", "filter_style", "filter_genre"):
            changes[name] = _clean_values(value)
        elif name == "source_artist":
            changes[name] = _clean_name(value)
        else:
            changes[name] = value
    return replace(options, aspect_weights=weights, **changes)


def with_form_artist(options: SearchOptions, form_artist: object) -> SearchOptions:
    """The multipart form's `artist` (or `source_artist`) field, when no query parameter named one."""
    if options.source_artist or not isinstance(form_artist, str):
        return options
    return replace(options, source_artist=_clean_name(form_artist))


def checked(options: SearchOptions, config: GatewayConfig) -> SearchOptions:
    """Checks every bound (query parameters were checked by FastAPI already, JSON fields not) and raises
    the pool to offset + k; raises ApiError 422 naming the parameter."""
    _in_range("k", options.k, 1, config.max_k)
    _in_range("offset", options.offset, 0, config.max_pool - 1)
    _in_range("pool", options.pool, 1, config.max_pool)
    if options.offset + options.k > config.max_pool:
        raise _invalid("offset", f"offset + k must be at most {config.max_pool} (the largest pool)")
    _in_range("influence_weight", options.influence_weight, 0.0, MAX_WEIGHT)
    _in_range("source_top", options.source_top, 1, MAX_SOURCE_TOP)
    _in_range("source_temperature", options.source_temperature, 0.0, MAX_SOURCE_TEMPERATURE)
    _in_range("source_min_confidence", options.source_min_confidence, 0.0, 1.0)
    for aspect, weight in options.aspect_weights.items():
        _in_range(f"w_{aspect}", weight, 0.0, MAX_WEIGHT)
    for name in ("year_min", "year_max"):
        value = getattr(options, name)
        if value is not None:
            _in_range(name, value, *YEAR_RANGE)
    if options.year_min is not None and options.year_max is not None and options.year_min > options.year_max:
        raise _invalid("year_min", f"year_min ({options.year_min}) is after year_max ({options.year_max})")
    for name in ("filter_artist", "filter_style", "filter_genre"):
        values = getattr(options, name)
        if len(values) > MAX_FILTER_VALUES:
            raise _invalid(name, f"at most {MAX_FILTER_VALUES} values")
        if any(len(value) > MAX_NAME_CHARS for value in values):
            raise _invalid(name, f"values are at most {MAX_NAME_CHARS} characters")
    for name in ("locate", "grey", "regions"):
        if getattr(options, name) not in AUTO_OFF:
            raise _invalid(name, f"must be one of {list(AUTO_OFF)}")
    if options.source_artist is not None and len(options.source_artist) > MAX_NAME_CHARS:
        raise _invalid("source_artist", f"at most {MAX_NAME_CHARS} characters")
    return replace(options, pool=max(options.pool, options.offset + options.k))


def _in_range(name: str, value: float, low: float, high: float) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(name, "must be a finite number")
    if not low <= value <= high:
        raise _invalid(name, f"must be between {low:g} and {high:g}, got {value:g}")


def _invalid(name: str, problem: str) -> ApiError:
    return ApiError(422, "invalid_parameter", f"{name}: {problem}")


def _clean_name(value: str | None) -> str | None:
    return (value or "").strip() or None


def _clean_values(values: list[str] | None) -> tuple[str, ...]:
    cleaned = (value.strip() for value in values or ())
    return tuple(dict.fromkeys(value for value in cleaned if value))
