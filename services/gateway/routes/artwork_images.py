"""GET /v1/artworks/{artwork_id}/image and /thumbnail: an artwork's image file and its JPEG thumbnails."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, RedirectResponse, Response

from artsearch.image_formats import MEDIA_TYPES
from services.gateway.errors import ApiError, error_responses
from services.gateway.media import (
    MAX_ARTWORK_ID_LENGTH,
    MediaError,
    MediaSettings,
    PixelBudget,
    ThumbnailCache,
    cache_headers,
    etag_matches,
    fetch_artwork,
    local_image,
    make_thumbnail,
    media_error,
    remote_image_url,
)
from services.gateway.routes import add_routes, api_router
from services.gateway.routes.docs import BINARY

IMAGE_CONTENT_TYPES = sorted(MEDIA_TYPES.values())
_COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified: If-None-Match matched the ETag"},
    307: {"description": "Redirect to the artwork's http(s) image URL"},
    **error_responses(
        403,
        404,
        422,
        503,
        notes={
            403: "The artwork's image path points outside IMAGE_ROOT",
            404: "Unknown artwork; missing, unreadable or non-image file; or IMAGE_ROOT not set",
            503: "The search service is unavailable; retry after Retry-After seconds",
        },
    ),
}

ArtworkId = Annotated[
    str, PathParam(min_length=1, max_length=MAX_ARTWORK_ID_LENGTH, description="The artwork's id")
]


def install(app: FastAPI, settings: MediaSettings) -> None:
    """Adds the image and thumbnail routes, their error answers, and their caches (app.state.thumbnails,
    app.state.thumbnail_pixels)."""
    thumbnails = ThumbnailCache(settings.thumbnail_cache_size, settings.thumbnail_concurrency)
    app.state.thumbnails = thumbnails
    budget = PixelBudget(settings.max_source_pixels)
    app.state.thumbnail_pixels = budget
    app.add_exception_handler(MediaError, media_error)
    add_routes(app, router(settings, thumbnails, budget))


def router(settings: MediaSettings, thumbnails: ThumbnailCache, budget: PixelBudget) -> APIRouter:
    routes = api_router(tags=["artworks"])
    sizes = settings.thumbnail_sizes

    @routes.get(
        "/v1/artworks/{artwork_id}/image",
        response_class=Response,
        responses={
            200: {
                "content": {t: {"schema": BINARY} for t in IMAGE_CONTENT_TYPES},
                "description": "The image file",
            },
            **_COMMON_RESPONSES,
        },
    )
    async def artwork_image(request: Request, artwork_id: ArtworkId) -> Response:
        """The artwork's full image, with Cache-Control and an ETag (304 when If-None-Match matches)."""
        artwork = await fetch_artwork(request, artwork_id)
        if url := remote_image_url(artwork.image_uri):
            return RedirectResponse(url, status_code=307)
        image = await asyncio.to_thread(local_image, settings, artwork)
        headers = cache_headers(settings.cache_max_age_s, image.etag())
        if etag_matches(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return FileResponse(
            image.path, media_type=image.content_type, headers=headers, stat_result=image.stat
        )

    @routes.get(
        "/v1/artworks/{artwork_id}/thumbnail",
        response_class=Response,
        responses={
            200: {"content": {"image/jpeg": {"schema": BINARY}}, "description": "A JPEG thumbnail"},
            **_COMMON_RESPONSES,
            **error_responses(400, notes={400: f"`size` is not one of {', '.join(map(str, sizes))}"}),
        },
    )
    async def artwork_thumbnail(
        request: Request,
        artwork_id: ArtworkId,
        size: Annotated[
            int,
            Query(
                description=f"Longest side of the thumbnail, pixels: one of {', '.join(map(str, sizes))}",
                json_schema_extra={"enum": list(sizes)},
            ),
        ] = settings.default_thumbnail_size,
    ) -> Response:
        """A JPEG thumbnail of the artwork's image (longest side `size`, one of a few fixed sizes), cached in
        memory, with an ETag."""
        if size not in sizes:
            raise ApiError(
                400, "invalid_size", f"size={size}: thumbnails come in sizes {', '.join(map(str, sizes))}"
            )
        artwork = await fetch_artwork(request, artwork_id)
        if url := remote_image_url(artwork.image_uri):
            return RedirectResponse(url, status_code=307)
        image = await asyncio.to_thread(local_image, settings, artwork)
        headers = cache_headers(settings.cache_max_age_s, image.etag(f"t{size}"))
        if etag_matches(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        key = (artwork_id, size, str(image.path), image.stat.st_mtime_ns, image.stat.st_size)
        data = await thumbnails.get(
            key, lambda: make_thumbnail(image.path, size, settings.max_source_pixels, budget)
        )
        return Response(data, media_type="image/jpeg", headers=headers)

    return routes
