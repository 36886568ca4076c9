"""Search parameters: JSON body over query, the form's source artist, and the bounds checked once."""

from __future__ import annotations

import pytest

from artsearch.config import Env
from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError
from services.gateway.search_params import SearchOptions, UrlRequest, checked, with_body, with_form_artist

CONFIG = GatewayConfig.from_env(
    Env(
        {
            "ENCODER_ADDR": "e:1",
            "SEARCH_ADDR": "s:1",
            "INFLUENCE_ADDR": "i:1",
            "MAX_K": "50",
            "MAX_POOL": "200",
        }
    )
)


def test_body_fields_replace_query_values_and_add_weights():
    query = SearchOptions(k=25, pool=100, aspect_weights={"content": 2.0}, filter_style=("Cubism",))
    body = UrlRequest(
        url="https://example.org/a.jpg",
        k=5,
        w_style=0.7,
        filter_style=[" Ukiyo-e ", "", "Ukiyo-e"],
        source_artist="  Hokusai ",
        exclude_same_artist=True,
    )
    merged = with_body(query, body)
    assert (merged.k, merged.pool, merged.exclude_same_artist) == (5, 100, True)
    assert merged.aspect_weights == {"content": 2.0, "style": 0.7}
    assert merged.filter_style == ("Ukiyo-e",) and merged.source_artist == "Hokusai"
    assert with_body(query, UrlRequest(url="https://example.org/a.jpg")) == query


def test_the_form_artist_is_used_only_without_a_query_source():
    assert with_form_artist(SearchOptions(k=1), " Monet ").source_artist == "Monet"
    assert with_form_artist(SearchOptions(k=1, source_artist="Degas"), "Monet").source_artist == "Degas"
    assert with_form_artist(SearchOptions(k=1), None).source_artist is None
    assert with_form_artist(SearchOptions(k=1), object()).source_artist is None  # an uploaded file, say


def test_the_pool_is_raised_to_cover_the_page():
    assert checked(SearchOptions(k=10, offset=30, pool=20), CONFIG).pool == 40
    assert checked(SearchOptions(k=10, offset=0, pool=150), CONFIG).pool == 150


@pytest.mark.parametrize(
    ("options", "names"),
    [
        (SearchOptions(k=0), "k"),
        (SearchOptions(k=51), "k"),
        (SearchOptions(k=10, offset=-1), "offset"),
        (SearchOptions(k=10, offset=195), "offset + k"),
        (SearchOptions(k=10, pool=201), "pool"),
        (SearchOptions(k=10, influence_weight=-0.5), "influence_weight"),
        (SearchOptions(k=10, influence_weight=float("nan")), "finite"),
        (SearchOptions(k=10, aspect_weights={"style": float("inf")}), "w_style"),
        (SearchOptions(k=10, aspect_weights={"colour": 101.0}), "w_colour"),
        (SearchOptions(k=10, year_min=1900, year_max=1899), "year_min"),
        (SearchOptions(k=10, year_max=99999), "year_max"),
        (SearchOptions(k=10, filter_artist=tuple(f"a{i}" for i in range(51))), "filter_artist"),
        (SearchOptions(k=10, filter_genre=("x" * 201,)), "filter_genre"),
    ],
)
def test_out_of_bounds_values_are_422_naming_the_parameter(options: SearchOptions, names: str):
    with pytest.raises(ApiError) as caught:
        checked(options, CONFIG)
    assert caught.value.status == 422 and caught.value.code == "invalid_parameter"
    assert names in caught.value.message


def test_unknown_body_fields_are_refused():
    with pytest.raises(ValueError, match="colour"):
        UrlRequest.model_validate({"url": "https://example.org/a.jpg", "colour": 1})
