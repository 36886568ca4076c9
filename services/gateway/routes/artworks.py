"""GET /v1/artworks/{artwork_id}: one artwork's public metadata."""

from fastapi import Request
from fastapi.responses import JSONResponse

from artsearch.jsonlog import request_id_var
from services.gateway.explain import artwork_json
from services.gateway.query_vectors import stored_artwork
from services.gateway.routes import api_router
from services.gateway.routes.docs import ARTWORK_ID, STORED_ROUTE_ERRORS
from services.gateway.schemas.artworks import Artwork

router = api_router(tags=["artworks"])


@router.get(
    "/v1/artworks/{artwork_id}",
    response_model=Artwork,
    response_description="The artwork",
    responses=STORED_ROUTE_ERRORS,
)
async def artwork(request: Request, artwork_id: ARTWORK_ID) -> JSONResponse:
    """Public metadata of one artwork."""
    found = await stored_artwork(request.app.state.downstream, artwork_id, request_id_var.get())
    return JSONResponse(artwork_json(found))
