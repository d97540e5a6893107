"""Mounting a router's routes flat on the app.

FastAPI 0.165 keeps an included router as one lazy branch of the app's routing table, and
matching a request walks each branch twice (once to find it, once inside it) with scope
bookkeeping at every step: on the authenticated users lookup that was 11 % of the request's
instructions (callgrind, app driven in process). `mount_flat` re-creates each route on the
app's router with the inclusion's prefix, tags, dependencies and responses, as
`include_router` itself did before FastAPI 0.120, so a request is matched by one regex per
route. The routes behave as included ones do (dependency overrides, OpenAPI, path names).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, params
from fastapi.routing import APIRoute

# `add_api_route`'s options that a flat mount sets itself rather than copying from the route.
_MERGED = frozenset(
    {"path", "endpoint", "route_class_override", "tags", "dependencies", "responses"}
)
# Every other option is an attribute of the same name on an `APIRoute`: copied as it is.
ROUTE_OPTIONS: tuple[str, ...] = tuple(
    name for name in inspect.signature(APIRouter.add_api_route).parameters if name != "self"
)
_COPIED = tuple(name for name in ROUTE_OPTIONS if name not in _MERGED)


def mount_flat(
    app: FastAPI,
    router: APIRouter,
    *,
    prefix: str = "",
    tags: Sequence[str] = (),
    dependencies: Sequence[params.Depends] = (),
    responses: Mapping[int | str, dict[str, Any]] | None = None,
) -> None:
    """What `app.include_router(router, prefix=..., tags=..., dependencies=..., responses=...)`
    does, with the routes in the app's own table. A router holding anything but FastAPI path
    operations (a nested router, a mount, a websocket) or start-up handlers is included the
    ordinary way instead."""
    if (
        router.on_startup
        or router.on_shutdown
        or not all(isinstance(route, APIRoute) for route in router.routes)
    ):
        app.include_router(
            router,
            prefix=prefix,
            tags=list(tags) or None,
            dependencies=dependencies,
            responses=dict(responses or {}),
        )
        return
    for route in router.routes:
        assert isinstance(route, APIRoute)  # checked above; narrows the type
        app.router.add_api_route(
            prefix + route.path,
            route.endpoint,
            route_class_override=type(route),
            tags=[*tags, *route.tags],
            dependencies=[*dependencies, *route.dependencies],
            responses={**(responses or {}), **route.responses},
            **{name: getattr(route, name) for name in _COPIED},
        )
