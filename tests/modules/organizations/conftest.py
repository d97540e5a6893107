"""Fixtures of the organizations tests: signed-in people and the headers that pick an
organization."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from httpx import AsyncClient

from app.modules.users.models import User
from tests.modules.conftest import Headers, bearer, login

ORGS_URL = "/api/v1/organizations"
CURRENT_URL = f"{ORGS_URL}/current"

SignIn = Callable[[str], Awaitable[tuple[User, Headers]]]


def in_org(headers: Headers, slug: str) -> Headers:
    """`headers` acting in the organization `slug`."""
    return {**headers, "X-Organization": slug}


@pytest.fixture
def sign_in(client: AsyncClient, make_user: Callable[..., Awaitable[User]]) -> SignIn:
    """A new verified account named `name`, signed in: (user, bearer headers)."""

    async def make(name: str) -> tuple[User, Headers]:
        user = await make_user(email=f"{name}@example.com", username=name)
        return user, bearer((await login(client, name))["access_token"])

    return make


async def create_org(client: AsyncClient, headers: Headers, slug: str) -> dict[str, Any]:
    response = await client.post(
        ORGS_URL, json={"name": slug.capitalize(), "slug": slug}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body
