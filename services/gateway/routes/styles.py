"""POST /v1/predict-style: the style of a picture (an upload or a URL)."""

from fastapi import Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from artsearch.jsonlog import request_id_var
from services.gateway.config import GatewayConfig
from services.gateway.query_vectors import encode_image
from services.gateway.routes import api_router
from services.gateway.routes.docs import IMAGE_ROUTE_ERRORS
from services.gateway.routes.picture_body import EXAMPLE_URL, image_request_body, picture_bytes, read_body
from services.gateway.schemas.search import StyleAnswer
from services.gateway.step_timer import Timer
from services.gateway.style_prediction import run_style_prediction

router = api_router(tags=["search"])


class StyleUrlRequest(BaseModel):
    """JSON body of POST /v1/predict-style: the URL of a picture."""

    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2048, examples=[EXAMPLE_URL])


@router.post(
    "/v1/predict-style",
    openapi_extra=image_request_body(StyleUrlRequest, search_params=False),
    responses={200: {"model": StyleAnswer, "description": "The predicted style"}, **IMAGE_ROUTE_ERRORS},
)
async def predict_style(request: Request) -> JSONResponse:
    """The style of a picture: a similarity-weighted vote of its nearest catalogue artworks' style
    labels, with the winner's share of the vote as confidence and the top 3; "unknown" when the
    catalogue has no style labels."""
    config: GatewayConfig = request.app.state.config
    timer = Timer()
    data = await picture_bytes(await read_body(request, StyleUrlRequest, config), config, timer)
    downstream = request.app.state.downstream
    cache = request.app.state.picture_cache
    query = await encode_image(downstream, data, timer, cache, request_id_var.get())
    return JSONResponse(await run_style_prediction(downstream, query, config, timer, request_id_var.get()))
