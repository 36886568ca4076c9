"""The gateway's HTTP layer, one module per resource (the FastAPI full-stack template's layout): each holds
the routes of one resource as an `APIRouter`, and only the HTTP side of them (paths, parameters, OpenAPI
documentation, turning answers into responses); what a route does lives in the gateway's other modules
(query.py, clusters.py, media.py, catalogue_admin.py, ...). app.py includes them.

A router whose parameters are bounded by the configuration (Query(le=MAX_K), the thumbnail sizes) is made by
a `router(settings)` function; one that also keeps state on the app (a cache) by an `install(app, settings)`.

No `from __future__ import annotations` in these modules: FastAPI reads the route signatures at run time."""

from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute


def operation_id(route: APIRoute) -> str:
    """A route's OpenAPI operationId: its handler's name (`search`, `list_artworks`), which client
    generators turn into method names; FastAPI's default appends the path and method
    (`search_v1_search_post`). Unique: tests/services/test_gateway_api.py pins the whole table."""
    return route.name


def api_router(**options: Any) -> APIRouter:
    """A router whose routes take their handler's name as operationId (set here, on the router: see
    add_routes for why the app's own setting does not reach them)."""
    return APIRouter(generate_unique_id_function=operation_id, **options)


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, appended to the app's route list as they are. Not `app.include_router`: since
    FastAPI 0.165 that keeps the router as one lazy entry of `app.routes`, and the gateway's middlewares
    (body_limit, public_limits, the admin guard) and its OpenAPI contract test read `app.routes` as the
    flat list of the routes, in the order the router dispatches."""
    app.router.routes.extend(router.routes)
