"""No input makes an auth or users endpoint answer 500, and no answer leaks a password hash."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from tests.modules.conftest import Headers

ENDPOINTS = [
    ("POST", "/api/v1/auth/register"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/logout"),
    ("POST", "/api/v1/auth/logout-all"),
    ("POST", "/api/v1/auth/verify-email"),
    ("POST", "/api/v1/auth/verify-email/resend"),
    ("POST", "/api/v1/auth/password/forgot"),
    ("POST", "/api/v1/auth/password/reset"),
    ("GET", "/api/v1/users/me"),
    ("PATCH", "/api/v1/users/me"),
    ("PUT", "/api/v1/users/me/password"),
    ("GET", "/api/v1/users"),
    ("GET", "/api/v1/users/00000000-0000-0000-0000-000000000000"),
    ("PATCH", "/api/v1/users/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/api/v1/users/00000000-0000-0000-0000-000000000000"),
    ("DELETE", "/api/v1/users/me"),
]

BODIES: list[dict[str, Any]] = [
    {"content": b"{not json"},
    {"json": None},
    {"json": []},
    {"json": {"email": 1, "username": None, "password": ["x"], "token": {"a": 1}}},
    {"json": {"email": "a@b.co", "username": "\u0000\ud7ff", "password": "\u202e" * 50}},
    {"json": {"token": "a" * 5000, "refresh_token": "' OR 1=1 --" * 3, "new_password": ""}},
    {"data": {"username": "x" * 10_000, "password": "y"}},
    {"json": {"role": "admin", "is_active": "maybe", "current_password": 3}},
]


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_no_input_gives_a_500(client: AsyncClient, admin_headers: Headers) -> None:
    odd = {"Authorization": "Bearer a.b.c ;; \x7f"}
    for headers in ({}, admin_headers, odd):
        for method, url in ENDPOINTS:
            for body in BODIES:
                response = await client.request(method, url, headers=headers, **body)
                assert response.status_code < 500, (method, url, body, response.text)
                assert "argon2" not in response.text
