"""Flat mounting: the same routes, OpenAPI and dependency behaviour as include_router."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, Request, Response, WebSocket, status
from fastapi.routing import APIRoute
from pydantic import BaseModel
from starlette.routing import Match
from starlette.types import Scope

from app.core.routing import ROUTE_OPTIONS, PrefixCheckedRoute, mount_flat, prefix_checked

CALLS: list[str] = []


async def include_level_dependency() -> None:
    CALLS.append("inclusion")


async def route_level_dependency(x_caller: Annotated[str, Header()] = "anonymous") -> str:
    CALLS.append("route")
    return x_caller


class Greeting(BaseModel):
    text: str


def _router() -> APIRouter:
    router = APIRouter(tags=["greetings"], responses={404: {"description": "Nobody here"}})

    @router.get("/{name}", response_model=Greeting, summary="Greet someone")
    async def greet(name: str, caller: Annotated[str, Depends(route_level_dependency)]) -> Any:
        return {"text": f"hello {name} from {caller}", "dropped": "by the response model"}

    @router.post("", status_code=status.HTTP_201_CREATED, responses={409: {"description": "Taken"}})
    async def create(body: Greeting) -> Greeting:
        return body

    return router


def _app(mount: str) -> FastAPI:
    app = FastAPI()
    options: dict[str, Any] = {
        "prefix": "/api/v1/greetings",
        "tags": ["module"],
        "dependencies": [Depends(include_level_dependency)],
        "responses": {429: {"description": "Slow down"}},
    }
    if mount == "flat":
        mount_flat(app, _router(), **options)
    else:
        app.include_router(_router(), **options)
    return app


def test_the_flat_app_documents_exactly_what_include_router_documents() -> None:
    assert _app("flat").openapi() == _app("included").openapi()


def test_the_routes_live_in_the_apps_own_table() -> None:
    routes = [route for route in _app("flat").router.routes if isinstance(route, APIRoute)]
    greet = next(route for route in routes if route.name == "greet")
    assert greet.path == "/api/v1/greetings/{name}"
    assert greet.tags == ["module", "greetings"]
    assert set(greet.responses) == {404, 429}


async def test_requests_run_the_inclusions_and_the_routes_dependencies_and_overrides() -> None:
    app = _app("flat")
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        CALLS.clear()
        greeted = await client.get("/api/v1/greetings/ada", headers={"x-caller": "bob"})
        assert greeted.json() == {"text": "hello ada from bob"}
        assert CALLS == ["inclusion", "route"]

        app.dependency_overrides[route_level_dependency] = lambda: "an override"
        overridden = await client.get("/api/v1/greetings/ada")
        assert overridden.json() == {"text": "hello ada from an override"}

        created = await client.post("/api/v1/greetings", json={"text": "hi"})
        assert (created.status_code, created.json()) == (201, {"text": "hi"})
        assert (await client.post("/api/v1/greetings", json={})).status_code == 422
        assert (await client.get("/api/v1/elsewhere")).status_code == 404


async def test_a_router_with_more_than_path_operations_is_included_the_ordinary_way() -> None:
    router = _router()

    @router.websocket("/stream")
    async def stream(websocket: WebSocket) -> None:  # pragma: no cover - never connected
        await websocket.close()

    app = FastAPI()
    mount_flat(app, router, prefix="/api/v1/greetings")
    # Not in the app's own table: behind the inclusion.
    assert "/api/v1/greetings/{name}" not in {getattr(r, "path", "") for r in app.router.routes}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        greeted = await client.get("/api/v1/greetings/ada")
    assert greeted.json() == {"text": "hello ada from anonymous"}


def test_every_route_option_fastapi_knows_is_carried_over() -> None:
    """Fails on a FastAPI upgrade that adds a path-operation option a flat mount would drop."""
    route = _router().routes[0]
    merged = {"path", "endpoint", "route_class_override", "tags", "dependencies", "responses"}
    missing = [name for name in ROUTE_OPTIONS if name not in merged and not hasattr(route, name)]
    assert missing == []


class StampedRoute(APIRoute):
    """A router's own route class: a flat mount keeps it (and its behaviour)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def stamped(request: Request) -> Response:
            response = await handler(request)
            response.headers["x-stamped"] = "yes"
            return response

        return stamped


def test_the_early_refusal_agrees_with_the_full_check() -> None:
    app = _app("flat")
    checked = [route for route in app.router.routes if isinstance(route, PrefixCheckedRoute)]
    assert len(checked) == 2
    paths = ["/api/v1/greetings/ada", "/api/v1/greetings", "/api/v1/greeting", "/", "/api/v2/x"]
    for route in checked:
        for path in paths:
            for method in ("GET", "POST", "DELETE"):
                scope = {"type": "http", "path": path, "root_path": "", "method": method}
                assert route.matches(scope) == APIRoute.matches(route, dict(scope)), (path, method)


async def test_flat_routes_keep_their_class_and_answer_under_a_root_path() -> None:
    router = APIRouter(route_class=StampedRoute)

    @router.get("/{name}")
    async def greet(name: str) -> dict[str, str]:
        return {"name": name}

    app = FastAPI()
    mount_flat(app, router, prefix="/greetings")
    route = app.router.routes[-1]
    assert isinstance(route, StampedRoute)
    assert isinstance(route, PrefixCheckedRoute)
    assert prefix_checked(StampedRoute) is type(route)  # one class per route class
    transport = httpx.ASGITransport(app=app, root_path="/behind-proxy")
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        for url in ("/greetings/ada", "/behind-proxy/greetings/ada"):
            response = await client.get(url)
            assert response.json() == {"name": "ada"}, url
            assert response.headers["x-stamped"] == "yes"
        assert (await client.get("/elsewhere/ada")).status_code == 404


def _with_lifespan() -> APIRouter:
    @asynccontextmanager
    async def lifespan(_: object) -> AsyncIterator[None]:
        yield

    return APIRouter(lifespan=lifespan)


@pytest.mark.parametrize(
    "router",
    [
        pytest.param(lambda: _with_lifespan(), id="a lifespan"),
        pytest.param(lambda: APIRouter(form_limits={"max_fields": 3}), id="form limits"),
        pytest.param(lambda: APIRouter(on_startup=[lambda: None]), id="a start-up handler"),
    ],
)
def test_a_router_that_brings_more_than_routes_is_included_the_ordinary_way(
    router: Callable[[], APIRouter],
) -> None:
    included = router()

    @included.get("/{name}")
    async def greet(name: str) -> dict[str, str]:  # pragma: no cover - never called
        return {"name": name}

    app = FastAPI()
    mount_flat(app, included, prefix="/greetings")
    assert "/greetings/{name}" not in {getattr(r, "path", "") for r in app.router.routes}


class CaseInsensitiveRoute(APIRoute):
    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        return super().matches({**scope, "path": scope["path"].lower()})


def test_a_route_class_that_matches_its_own_way_gets_no_early_refusal() -> None:
    assert prefix_checked(CaseInsensitiveRoute) is CaseInsensitiveRoute
    router = APIRouter(route_class=CaseInsensitiveRoute)

    @router.get("/{name}")
    async def greet(name: str) -> dict[str, str]:  # pragma: no cover - never called
        return {"name": name}

    app = FastAPI()
    mount_flat(app, router, prefix="/greetings")
    route = app.router.routes[-1]
    scope = {"type": "http", "path": "/GREETINGS/ada", "root_path": "", "method": "GET"}
    assert route.matches(scope)[0] is Match.FULL
