"""The answers of the operations routes (/healthz, /readyz)."""

from typing import Literal

from pydantic import Field

from services.gateway.schemas import ResponseModel, example


class Health(ResponseModel):
    """GET /healthz: the gateway process answers."""

    model_config = example({"status": "ok"})
    status: Literal["ok"] = Field(description='Always "ok"')


class Readiness(ResponseModel):
    """GET /readyz: what this gateway can serve (200 ready, 503 not ready, same body)."""

    model_config = example(
        {
            "ready": True,
            "services": {"encoder": True, "search": True, "influence": False},
            "degraded": ["influence"],
        }
    )
    ready: bool = Field(description="Whether the gateway can answer searches: the encoder and search answer")
    services: dict[str, bool] = Field(description="Each service: whether it answers its health check")
    degraded: list[str] = Field(
        default_factory=list,
        description="Optional services that do not answer: searches are served without them (influence: "
        'the visual order, marked `"degraded": ["influence"]`)',
    )
