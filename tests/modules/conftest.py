"""Fixtures shared by the feature modules' tests: cheap argon2id, users, sign-in helpers."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

# Hashing stays argon2id, with parameters cheap enough for a fast test suite.
os.environ["USERS_PASSWORD_HASH_TIME_COST"] = "1"
os.environ["USERS_PASSWORD_HASH_MEMORY_KIB"] = "1024"
os.environ["USERS_PASSWORD_HASH_PARALLELISM"] = "1"

from app.core.config import Settings, get_app_settings
from app.core.queue import broker
from app.modules.auth.config import AuthSettings, get_auth_settings, load_auth_settings
from app.modules.users.config import load_users_settings
from app.modules.users.models import User
from tests.conftest import Services, make_settings
from tests.factories.users import DEFAULT_PASSWORD, create_user

load_users_settings.cache_clear()
load_auth_settings.cache_clear()

LOGIN_URL = "/api/v1/auth/login"
Headers = dict[str, str]


def bearer(token: str) -> Headers:
    return {"Authorization": f"Bearer {token}"}


def token_from_link(link: str) -> str:
    """The token of a mailed link: in its fragment, which browsers send to no server."""
    return parse_qs(urlparse(link).fragment)["token"][0]


async def login(
    client: AsyncClient, username: str, password: str = DEFAULT_PASSWORD
) -> dict[str, Any]:
    response = await client.post(LOGIN_URL, data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


@asynccontextmanager
async def app_with(services: Services, **settings: Any) -> AsyncIterator[FastAPI]:
    """An app of its own, started with these settings (for what is read once per app), on the
    session's database and Redis."""
    from app.main import create_app

    application = create_app(make_settings(services, **settings))
    async with LifespanManager(application):
        yield application


@pytest.fixture
def make_user(session: AsyncSession) -> Callable[..., Awaitable[User]]:
    async def make(**overrides: Any) -> User:
        return await create_user(session, **overrides)

    return make


@pytest.fixture
async def user(make_user: Callable[..., Awaitable[User]]) -> User:
    return await make_user(email="alice@example.com", username="alice")


@pytest.fixture
async def admin(make_user: Callable[..., Awaitable[User]]) -> User:
    return await make_user(email="root@example.com", username="root", role="admin")


@pytest.fixture
async def user_headers(client: AsyncClient, user: User) -> Headers:
    return bearer((await login(client, user.username))["access_token"])


@pytest.fixture
async def admin_headers(client: AsyncClient, admin: User) -> Headers:
    return bearer((await login(client, admin.username))["access_token"])


@pytest.fixture
def auth_settings(app: FastAPI) -> Iterator[Callable[..., AuthSettings]]:
    """Replace the auth settings for this test's requests and tasks:
    `auth_settings(unverified_login_allowed=False)`."""

    def override(**values: Any) -> AuthSettings:
        configured = AuthSettings(_env_file=None, **values)
        app.dependency_overrides[get_auth_settings] = lambda: configured
        broker.dependency_overrides[get_auth_settings] = lambda: configured
        return configured

    yield override
    app.dependency_overrides.pop(get_auth_settings, None)
    broker.dependency_overrides.pop(get_auth_settings, None)


@pytest.fixture
def app_settings(app: FastAPI, settings: Settings) -> Iterator[Callable[..., Settings]]:
    """Replace core settings for this test's requests: `app_settings(auth_unverified_...=True)`."""

    def override(**values: Any) -> Settings:
        changed = settings.model_copy(update=values)
        app.dependency_overrides[get_app_settings] = lambda: changed
        return changed

    yield override
    app.dependency_overrides.pop(get_app_settings, None)


@pytest.fixture
def behind_a_trusted_proxy(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests come through a proxy the app trusts: X-Forwarded-For names the client."""
    monkeypatch.setattr(app.state.rate_limiter, "trusted", (ipaddress.ip_network("127.0.0.0/8"),))
