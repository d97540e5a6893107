"""Mounting a router's routes flat on the app.

FastAPI 0.165 keeps an included router as one lazy branch of the app's routing table, and
matching a request walks each branch twice (once to find it, once inside it) with scope
bookkeeping at every step: on the authenticated users lookup that was 11 % of the request's
instructions (callgrind, app driven in process). `mount_flat` re-creates each route on the
app's router with the inclusion's prefix, tags, dependencies and responses, as
`include_router` itself did before FastAPI 0.120, so a request is matched by one regex per
route. The routes behave as included ones do (dependency overrides, OpenAPI, path names).

Starlette then tries the app's routes in order, and FastAPI's full check of one route costs
about 12,000 instructions (a regex and scope bookkeeping, in Python): the users lookup, 17th
in the table, spent 15 % of its instructions failing to match the routes before it. So each
flat route first compares the request path with its own literal prefix (`PrefixCheckedRoute`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, params
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import Scope

# `add_api_route`'s options that a flat mount sets itself rather than copying from the route.
_MERGED = frozenset(
    {"path", "endpoint", "route_class_override", "tags", "dependencies", "responses"}
)
# Every other option is an attribute of the same name on an `APIRoute`: copied as it is.
ROUTE_OPTIONS: tuple[str, ...] = tuple(
    name for name in inspect.signature(APIRouter.add_api_route).parameters if name != "self"
)
_COPIED = tuple(name for name in ROUTE_OPTIONS if name not in _MERGED)


class PrefixCheckedRoute(APIRoute):
    """An `APIRoute` that turns a request away on the literal start of its path (up to the
    first parameter) before the full check, which could only say no as well. Requests under a
    `root_path` get the full check (the path Starlette matches is then a part of the URL)."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.literal_prefix = self.path.partition("{")[0]

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if not scope.get("root_path") and not scope["path"].startswith(self.literal_prefix):
            return Match.NONE, {}
        return super().matches(scope)


_prefix_checked_classes: dict[type[APIRoute], type[APIRoute]] = {APIRoute: PrefixCheckedRoute}


def prefix_checked(route_class: type[APIRoute]) -> type[APIRoute]:
    """`route_class` with `PrefixCheckedRoute`'s early refusal in front of its own `matches`;
    unchanged when it matches in a way of its own (it may accept paths the prefix would not)."""
    if issubclass(route_class, PrefixCheckedRoute) or route_class.matches is not APIRoute.matches:
        return route_class
    if route_class not in _prefix_checked_classes:
        name = f"PrefixChecked{route_class.__name__}"
        _prefix_checked_classes[route_class] = type(name, (PrefixCheckedRoute, route_class), {})
    return _prefix_checked_classes[route_class]


def _only_path_operations(router: APIRouter) -> bool:
    return (
        all(isinstance(route, APIRoute) for route in router.routes)
        and not getattr(router, "_low_priority_routes", None)  # frontend routes
        and not router.on_startup
        and not router.on_shutdown
        and not getattr(router, "form_limits", None)
        # A lifespan of the router's own (FastAPI's default is a private class: compare names).
        and type(router.lifespan_context).__name__ == "_DefaultLifespan"
    )


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
    does, with the routes in the app's own table. A router that holds anything but FastAPI path
    operations (a nested router, a mount, a websocket, frontend routes) or brings more than its
    routes (start-up handlers, a lifespan, form limits) is included the ordinary way instead."""
    if not _only_path_operations(router):
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
            route_class_override=prefix_checked(type(route)),
            tags=[*tags, *route.tags],
            dependencies=[*dependencies, *route.dependencies],
            responses={**(responses or {}), **route.responses},
            **{name: getattr(route, name) for name in _COPIED},
        )
