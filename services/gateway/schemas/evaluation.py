"""The answer of GET /v1/evaluation/pictures."""

from pydantic import Field

from services.gateway.schemas import ResponseModel, example

_PR_CURVES = {
    "name": "pr_curves.png",
    "title": "Precision-recall curves of each descriptor aspect",
    "url": "/v1/evaluation/pictures/pr_curves.png",
    "width": 1344,
    "height": 304,
    "bytes": 76620,
}
_MAP = {
    "name": "map_gcompris.png",
    "title": "Map of the GCompris paintings: t-SNE of the descriptors, coloured by label",
    "url": "/v1/evaluation/pictures/map_gcompris.png",
    "width": 600,
    "height": 480,
    "bytes": 20398,
}


class EvaluationPicture(ResponseModel):
    model_config = example(_PR_CURVES)
    name: str = Field(description="The PNG file's name")
    title: str = Field(description="A caption, from the name the evaluation gave the file")
    url: str = Field(description="This gateway's route serving the PNG")
    width: int = Field(description="Width in pixels")
    height: int = Field(description="Height in pixels")
    bytes: int = Field(description="File size in bytes")


class EvaluationPictures(ResponseModel):
    """The evaluation's pictures: the precision-recall curves first, then by name."""

    model_config = example({"pictures": [_PR_CURVES, _MAP]})
    pictures: list[EvaluationPicture] = Field(description="The pictures")
