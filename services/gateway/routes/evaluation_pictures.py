"""GET /v1/evaluation/pictures and /v1/evaluation/pictures/{name}: the evaluation's PNG pictures."""

import asyncio
from typing import Annotated

from fastapi import APIRouter, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse, Response

from services.gateway.errors import ApiError, error_doc
from services.gateway.evaluation_pictures import (
    NOT_CONFIGURED_CODE,
    NOT_CONFIGURED_MESSAGE,
    EvaluationPictureSettings,
    configured_directory,
    list_pictures,
)
from services.gateway.media import cache_headers, etag_matches
from services.gateway.routes import api_router
from services.gateway.routes.docs import BINARY
from services.gateway.schemas.evaluation import EvaluationPictures


def router(settings: EvaluationPictureSettings) -> APIRouter:
    routes = api_router(tags=["evaluation"])

    @routes.get(
        "/v1/evaluation/pictures",
        response_model=EvaluationPictures,
        response_description="The evaluation's pictures",
        responses={
            404: error_doc(404, "EVALUATION_DIR is not set", (NOT_CONFIGURED_CODE, NOT_CONFIGURED_MESSAGE)),
        },
    )
    async def evaluation_pictures() -> JSONResponse:
        """The evaluation's pictures (precision-recall curves, 2-D maps of the collection), each with a
        title and the URL serving it."""
        pictures = await asyncio.to_thread(list_pictures, configured_directory(settings))
        return JSONResponse({"pictures": [picture.to_json() for picture in pictures]})

    @routes.get(
        "/v1/evaluation/pictures/{name}",
        response_class=Response,
        responses={
            200: {"content": {"image/png": {"schema": BINARY}}, "description": "The PNG file"},
            304: {"description": "Not modified: If-None-Match matched the ETag"},
            404: error_doc(
                404,
                "No such picture, or EVALUATION_DIR is not set",
                ("picture_not_found", "no evaluation picture 'x.png'"),
            ),
        },
    )
    async def evaluation_picture(
        request: Request,
        name: Annotated[
            str, PathParam(min_length=1, max_length=200, description="A name from the pictures list")
        ],
    ) -> Response:
        """One evaluation picture (PNG), with Cache-Control and an ETag."""
        directory = configured_directory(settings)
        pictures = await asyncio.to_thread(list_pictures, directory)
        picture = next((p for p in pictures if p.name == name), None)
        if picture is None:
            raise ApiError(404, "picture_not_found", f"no evaluation picture {name[:80]!r}")
        headers = cache_headers(settings.cache_max_age_s, picture.etag())
        if etag_matches(request, headers["ETag"]):
            return Response(status_code=304, headers=headers)
        return FileResponse(picture.path, media_type="image/png", headers=headers, stat_result=picture.stat)

    return routes
