"""GET /healthz and GET /readyz: liveness and readiness."""

from fastapi import Request
from fastapi.responses import JSONResponse

from services.gateway.downstream import REQUIRED_SERVICES
from services.gateway.routes import api_router
from services.gateway.schemas.operations import Health, Readiness

router = api_router(tags=["operations"])


@router.get("/healthz", response_model=Health, response_description="The process answers")
async def healthz() -> dict[str, str]:
    """Liveness: the gateway process answers."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    response_description="Ready: the encoder and the search service answer",
    responses={
        503: {
            "model": Readiness,
            "description": "Not ready: the encoder or the search service does not answer",
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: what this gateway can serve. Ready while the encoder and search services answer their
    health checks (no search can be answered without them); the influence service is optional (without
    it answers keep the visual order and say so), so its outage is reported in `degraded`, not as
    unready: otherwise every gateway pod would leave the load balancer at once and the degraded mode
    would never serve anyone."""
    services = await request.app.state.downstream.readiness()
    ready = all(services[name] for name in REQUIRED_SERVICES)
    degraded = [name for name, up in services.items() if not up and name not in REQUIRED_SERVICES]
    body = {"ready": ready, "services": services, "degraded": degraded}
    return JSONResponse(body, status_code=200 if ready else 503)
