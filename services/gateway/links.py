"""The gateway URLs under which an artwork's image is served (services/gateway/media.py)."""

from __future__ import annotations

from urllib.parse import quote


def artwork_links(artwork_id: str) -> dict[str, str]:
    """`image_url` and `thumbnail_url` of one artwork; the id is quoted (ids may hold '/', '?', '#')."""
    quoted = quote(artwork_id, safe="")
    return {
        "image_url": f"/v1/artworks/{quoted}/image",
        "thumbnail_url": f"/v1/artworks/{quoted}/thumbnail",
    }
