"""The web UI: its page at / and its files under /static (services/gateway/static/)."""

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.gateway.routes import api_router

router = api_router()


@router.get("/", include_in_schema=False)
async def index() -> HTMLResponse:
    page = resources.files("services.gateway").joinpath("static/index.html").read_text("utf-8")
    return HTMLResponse(page)


def mount_static(app: FastAPI) -> None:
    """/static: a mount, which a router cannot carry (include_router copies routes only)."""
    app.mount("/static", StaticFiles(packages=[("services.gateway", "static")]), name="static")
