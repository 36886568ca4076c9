"""The public JSON of an artwork: its image links work for any id."""

from __future__ import annotations

from artsearch.v1 import common_pb2
from services.gateway.explain import artwork_json, artwork_links


def test_links_quote_ids_that_would_break_a_path():
    links = artwork_links("a/b?c#d e")
    assert links == {
        "image_url": "/v1/artworks/a%2Fb%3Fc%23d%20e/image",
        "thumbnail_url": "/v1/artworks/a%2Fb%3Fc%23d%20e/thumbnail",
    }


def test_artwork_json_leaves_unknown_fields_empty_and_links_the_image():
    artwork = common_pb2.Artwork(id="monet-1", title="Water Lilies", artist="Claude Monet", catalogue="c")
    shown = artwork_json(artwork)
    assert shown["style"] is None and shown["year"] is None
    assert shown["image_url"] == "/v1/artworks/monet-1/image"
