"""The picture a request to an image route carries: a multipart upload (field `image`) or a JSON body with
the picture's URL (fetched under the SSRF policy), read within the size limits, and its OpenAPI
description (FastAPI cannot declare a body that is either)."""

from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from services.gateway.config import GatewayConfig
from services.gateway.errors import ApiError
from services.gateway.image_checks import ImageLimits, check_image
from services.gateway.image_fetch import fetch_image
from services.gateway.search_params import (
    CURSOR_FORM_FIELD,
    PICTURE_ID_FORM_FIELD,
    PICTURE_OR_ID,
    picture_id_examples,
)
from services.gateway.step_timer import Timer

MAX_JSON_BYTES = 64 * 1024
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_CURSOR_EXAMPLE = {"cursor": "c2VhcmNoLXRva2VuOjI1OjI1"}
EXAMPLE_URL = "https://upload.wikimedia.org/wikipedia/commons/a/a5/Tsunami_by_hokusai_19th_century.jpg"


class ImageInput:
    """The picture a request carries (uploaded bytes, or a URL still to fetch, or the picture_id of a picture
    searched a moment ago) and its body parameters."""

    def __init__(
        self,
        data: bytes,
        body: Any = None,
        form_artist: object = None,
        form_picture_id: str | None = None,
        form_cursor: str | None = None,
    ) -> None:
        self.data = data
        self.body = body  # the JSON body's model (it has a `url`), None for an upload
        self.form_artist = form_artist
        self.form_picture_id = form_picture_id
        self.form_cursor = form_cursor

    @property
    def cursor(self) -> str | None:
        """The cursor sent instead of a picture, for the next page of a previous answer (JSON or form)."""
        from_json = getattr(self.body, "cursor", None)
        return from_json if from_json is not None else self.form_cursor

    @property
    def picture_id(self) -> str | None:
        """The picture_id sent instead of the picture (JSON field or form field), if any."""
        from_json = getattr(self.body, "picture_id", None)
        return from_json if from_json is not None else self.form_picture_id


async def picture_bytes(source: ImageInput, config: GatewayConfig, timer: Timer) -> bytes:
    """The checked picture: the upload, or the URL's image fetched under the SSRF policy."""
    if source.body is None:
        check_image(source.data, ImageLimits(config.max_upload_bytes, config.max_image_pixels))
        return source.data
    with timer.step("fetch"):
        fetched = await fetch_image(source.body.url, config.url_fetch)
    check_image(fetched.data, ImageLimits(config.url_fetch.max_bytes, config.max_image_pixels))
    return fetched.data


def content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")


async def read_body(request: Request, body_model: type[BaseModel], config: GatewayConfig) -> ImageInput:
    """The uploaded picture (multipart `image`) or the JSON body; 4xx ApiError for anything else."""
    media_type = content_type(request)
    if media_type in FORM_TYPES:
        fields = body_model.model_fields
        by_id, by_cursor = "picture_id" in fields, "cursor" in fields
        return await read_form(request, config, by_picture_id=by_id, by_cursor=by_cursor)
    if is_json(media_type):
        return ImageInput(b"", await read_json(request, body_model))
    raise ApiError(
        415,
        "unsupported_media_type",
        "send the picture as multipart/form-data field 'image', or application/json {\"url\": ...}",
    )


async def read_json(request: Request, body_model: type[BaseModel], limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON body as `body_model`, read up to `limit` bytes; 413 / 422 ApiError otherwise."""
    raw = await read_limited(request, limit)
    try:
        return body_model.model_validate_json(raw)
    except ValidationError as error:
        raise RequestValidationError(error.errors(include_url=False, include_context=False)) from None


async def read_form(
    request: Request, config: GatewayConfig, *, by_picture_id: bool = False, by_cursor: bool = False
) -> ImageInput:
    """The upload (or, `by_picture_id`, the field `picture_id` instead; or, `by_cursor`, the field `cursor`
    for the next page of a previous answer) and the form's source artist. The
    body's size is bounded as it arrives (body_limit); the image's own size and pixels are checked with the
    image (check_image), reading one byte past the limit so an oversized image is seen."""
    async with request.form(max_files=1, max_fields=20) as form:  # closes the spooled upload after
        image = form.get("image")
        picture_id = form.get("picture_id") if by_picture_id else None
        artist = form.get("source_artist") or form.get("artist")
        cursor = form.get("cursor") if by_cursor else None
        if isinstance(cursor, str):
            if image is not None or picture_id is not None:
                raise ApiError(422, "invalid_request", "send one of the fields image, picture_id and cursor")
            return ImageInput(b"", None, None, None, cursor)
        if isinstance(picture_id, str):
            if image is not None:
                raise ApiError(422, "invalid_request", "send either the field image or picture_id, not both")
            return ImageInput(b"", None, artist, picture_id)
        if not isinstance(image, UploadFile):
            raise ApiError(
                422, "invalid_request", "image: a picture file is required (multipart field 'image')"
            )
        data = await image.read(config.max_upload_bytes + 1)
    return ImageInput(data, None, artist)


async def read_limited(request: Request, limit: int) -> bytes:
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"the JSON body is larger than {limit} bytes")
    return bytes(body)


def image_request_body(url_model: type[BaseModel], *, search_params: bool) -> dict[str, Any]:
    """OpenAPI for a body that is either a multipart upload or a JSON URL (FastAPI cannot declare both)."""
    form_properties: dict[str, Any] = {
        "image": {
            "type": "string",
            "format": "binary",
            "description": "The picture (JPEG, PNG, WebP, HEIC, ...)",
        }
    }
    json_example: dict[str, Any] = {"url": EXAMPLE_URL}
    form_required: dict[str, Any] = {"required": ["image"]}
    json_examples = {"by_url": {"summary": "An image by URL", "value": json_example}}
    if search_params:
        form_properties["artist"] = {
            "type": "string",
            "maxLength": 200,
            "description": "Source artist (the query parameter source_artist takes precedence)",
        }
        json_example = {**json_example, "k": 10, "w_style": 0.6, "filter_style": ["Ukiyo-e"]}
        json_examples = {
            "by_url": {"summary": "An image by URL", "value": json_example},
            **picture_id_examples(),
        }
        # Or the picture_id of a picture searched a moment ago instead of the picture.
        form_properties["picture_id"] = PICTURE_ID_FORM_FIELD
        # Or the cursor of a previous answer, for its next page (clients that only POST).
        form_properties["cursor"] = CURSOR_FORM_FIELD
        json_examples["by_cursor"] = {"summary": "A previous answer's next page", "value": _CURSOR_EXAMPLE}
        form_required = PICTURE_OR_ID
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {"type": "object", "properties": form_properties, **form_required},
                    "encoding": {"image": {"contentType": "image/*"}},
                },
                "application/json": {
                    "schema": url_model.model_json_schema(),
                    "examples": json_examples,
                },
            },
        }
    }
