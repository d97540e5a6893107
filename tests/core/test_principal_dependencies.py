"""Who is calling (app.core.auth): the principal dependencies, on whatever authenticator the app
installs, and FastAPI's dependency overrides as FastAPI documents them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager
from fastapi import APIRouter, Depends, Request
from httpx import AsyncClient

from app.core.auth import (
    ActivePrincipal,
    Authenticator,
    CurrentPrincipal,
    Principal,
    Scope,
    SignedInPrincipal,
    get_authenticator,
    require_role,
    require_scope,
)
from app.core.modules import ModuleSpec
from app.main import _authenticator, create_app
from tests.conftest import Services, make_settings
from tests.support import http_client

PRINCIPALS = {
    "admin": Principal(uuid.uuid4(), "admin", uuid.uuid4(), is_verified=True, is_active=True),
    "member": Principal(uuid.uuid4(), "user", uuid.uuid4(), is_verified=True, is_active=True),
    "unverified": Principal(uuid.uuid4(), "user", None, is_verified=False, is_active=True),
    "inactive": Principal(uuid.uuid4(), "user", None, is_verified=True, is_active=False),
    "reader": Principal(
        uuid.uuid4(), "user", None, True, True, frozenset({"read"}), api_key_id=uuid.uuid4()
    ),
    "report-reader": Principal(
        uuid.uuid4(), "user", None, True, True, frozenset({"read", "reports"}), uuid.uuid4()
    ),
    "writer": Principal(
        uuid.uuid4(), "user", None, True, True, frozenset({"write"}), api_key_id=uuid.uuid4()
    ),
}


class TokensByName:
    """An authenticator for tests: the token is the principal's name."""

    async def authenticate(self, token: str) -> Principal | None:
        return PRINCIPALS.get(token)


router = APIRouter()


@router.get("/current")
async def current(principal: CurrentPrincipal) -> dict[str, str]:
    return {"id": str(principal.id)}


@router.get("/active")
async def active(principal: ActivePrincipal) -> dict[str, str]:
    return {"id": str(principal.id)}


@router.get("/admins", dependencies=[Depends(require_role("admin"))])
async def admins() -> dict[str, bool]:
    return {"ok": True}


@router.get("/reports", dependencies=[Depends(require_scope("reports"))])
async def reports() -> dict[str, bool]:
    return {"ok": True}


@router.post("/reports")
async def add_report(principal: ActivePrincipal) -> dict[str, bool]:
    return {"ok": True}


@router.post("/password")
async def change_password(principal: SignedInPrincipal) -> dict[str, bool]:
    return {"ok": True}


@pytest.fixture
async def http(services: Services) -> AsyncIterator[AsyncClient]:
    app = create_app(make_settings(services))
    app.include_router(router, prefix="/probe")

    # An override that takes dependencies of its own: FastAPI resolves it like any other.
    async def by_name(request: Request) -> Authenticator:
        assert request.app is app
        return TokensByName()

    app.dependency_overrides[get_authenticator] = by_name
    async with LifespanManager(app), http_client(app) as client:
        yield client


def _bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}"}


async def test_no_token_or_one_that_stands_for_nobody_is_401(http: AsyncClient) -> None:
    for headers in ({}, _bearer("stranger"), _bearer("inactive")):
        response = await http.get("/probe/current", headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


async def test_current_principal_is_whoever_the_authenticator_says(http: AsyncClient) -> None:
    response = await http.get("/probe/current", headers=_bearer("unverified"))
    assert response.json() == {"id": str(PRINCIPALS["unverified"].id)}


async def test_active_principal_needs_a_verified_address(http: AsyncClient) -> None:
    assert (await http.get("/probe/active", headers=_bearer("unverified"))).status_code == 403
    assert (await http.get("/probe/active", headers=_bearer("member"))).status_code == 200


async def test_require_role_lets_only_that_role_through(http: AsyncClient) -> None:
    assert (await http.get("/probe/admins", headers=_bearer("member"))).status_code == 403
    assert (await http.get("/probe/admins", headers=_bearer("admin"))).status_code == 200
    assert (await http.get("/probe/admins")).status_code == 401


async def test_a_route_can_require_a_scope(http: AsyncClient) -> None:
    assert (await http.get("/probe/reports", headers=_bearer("report-reader"))).status_code == 200
    refused = await http.get("/probe/reports", headers=_bearer("reader"))
    assert refused.status_code == 403
    assert "reports" in refused.json()["detail"]


async def test_safe_methods_need_read_and_changes_need_write(http: AsyncClient) -> None:
    assert (await http.get("/probe/active", headers=_bearer("reader"))).status_code == 200
    refused = await http.get("/probe/active", headers=_bearer("writer"))
    assert refused.status_code == 403
    assert "read scope" in refused.json()["detail"]
    assert (await http.post("/probe/reports", headers=_bearer("reader"))).status_code == 403
    assert (await http.post("/probe/reports", headers=_bearer("writer"))).status_code == 200
    # A sign-in session holds every scope of `Scope`.
    assert (await http.get("/probe/active", headers=_bearer("member"))).status_code == 200
    assert (await http.post("/probe/reports", headers=_bearer("member"))).status_code == 200
    assert {str(scope) for scope in Scope} <= PRINCIPALS["member"].scopes


async def test_keys_do_not_pass_where_a_sign_in_is_needed(http: AsyncClient) -> None:
    assert (await http.post("/probe/password", headers=_bearer("writer"))).status_code == 403
    assert (await http.post("/probe/password", headers=_bearer("member"))).status_code == 200
    # X-API-Key carries keys only: a session's token there stands for nobody.
    as_key = await http.get("/probe/current", headers={"X-API-Key": "reader"})
    assert as_key.status_code == 200
    assert (await http.get("/probe/current", headers={"X-API-Key": "member"})).status_code == 401


async def test_protected_operations_document_the_oauth2_scheme(http: AsyncClient) -> None:
    schema = (await http.get("/openapi.json")).json()
    scheme = schema["components"]["securitySchemes"]["OAuth2PasswordBearer"]
    assert scheme["flows"]["password"]["tokenUrl"] == "/api/v1/auth/login"
    # Any one of them: a bearer token (access token or API key), X-API-Key, the access cookie.
    assert schema["paths"]["/probe/current"]["get"]["security"] == [
        {"OAuth2PasswordBearer": []},
        {"APIKeyHeader": []},
        {"APIKeyCookie": []},
    ]
    schemes = schema["components"]["securitySchemes"]
    assert schemes["APIKeyHeader"] | {"description": ""} == {
        "type": "apiKey", "in": "header", "name": "X-API-Key", "description": ""
    }  # fmt: skip
    assert schemes["APIKeyCookie"]["in"] == "cookie"
    assert schemes["APIKeyCookie"]["name"] == "access_token"
    assert "security" not in schema["paths"]["/health/ready"]["get"]


def test_the_authenticator_comes_from_the_one_module_that_provides_it(
    services: Services,
) -> None:
    settings = make_settings(services)
    one = ModuleSpec(name="one", authenticator=lambda settings, database: TokensByName())
    plain = ModuleSpec(name="plain")
    assert isinstance(_authenticator([plain, one], settings, database=None), TokensByName)  # type: ignore[arg-type]
    assert _authenticator([plain], settings, database=None) is None  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="more than one module"):
        _authenticator([one, one], settings, database=None)  # type: ignore[arg-type]


async def test_without_an_authenticator_protected_routes_fail_loudly(services: Services) -> None:
    app = create_app(make_settings(services), module_packages=())
    app.include_router(router, prefix="/probe")
    async with LifespanManager(app):
        request = Request({"type": "http", "app": app, "headers": []})
        with pytest.raises(RuntimeError, match="no module provides an authenticator"):
            await get_authenticator(request)
