"""Bad input and hardening, on the real routes of the session's app.

Already covered elsewhere, and not repeated here (see docs/reliability.md): JWT `none`, wrong
key, algorithm, audience, issuer, type and expiry
(tests/modules/auth/test_sign_up_sign_in_and_recovery.py,
tests/core/test_password_hashing_and_tokens.py); CORS
(tests/core/test_problems_request_ids_logs_and_headers.py); production refusing default
secrets (tests/core/test_settings_and_sample_env.py); odd bodies on every auth/users endpoint
(tests/modules/auth/test_no_input_gives_a_500.py).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.http import SECURITY_HEADERS
from app.modules.auth.config import AuthSettings
from app.modules.users.models import User
from tests.modules.conftest import auth_settings
from tests.reliability.conftest import Headers
from tests.reliability.figures import record
from tests.support import queued_work_done

__all__ = ["auth_settings"]

REGISTER = "/api/v1/auth/register"
USERS = "/api/v1/users"
PROBLEM = "application/problem+json"


def _assert_problem(response: Any, *statuses: int) -> None:
    assert response.status_code in statuses, (response.status_code, response.text[:300])
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["status"] == response.status_code


async def test_oversized_bodies_on_real_routes_are_413(
    app: FastAPI, client: AsyncClient, user_headers: Headers
) -> None:
    limit = app.state.settings.max_body_bytes
    big = b'{"email": "' + b"a" * (limit + 1) + b'"}'

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"a" * 65536

    json_type = {"content-type": "application/json"}
    for method, url, headers in [
        ("POST", REGISTER, json_type),
        ("POST", "/api/v1/auth/login", {"content-type": "application/x-www-form-urlencoded"}),
        ("PATCH", f"{USERS}/me", {**json_type, **user_headers}),
    ]:
        _assert_problem(await client.request(method, url, content=big, headers=headers), 413)
        streamed = await client.request(method, url, content=chunks(), headers=headers)
        _assert_problem(streamed, 413)


async def test_wrong_content_types_are_4xx(client: AsyncClient) -> None:
    body = b'{"email": "ct@example.com", "username": "ctype", "password": "long-password-1"}'
    for content_type in (
        "text/plain",
        "application/xml",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
    ):
        response = await client.post(REGISTER, content=body, headers={"content-type": content_type})
        _assert_problem(response, 400, 415, 422)
    as_json = await client.post("/api/v1/auth/login", json={"username": "a", "password": "b"})
    _assert_problem(as_json, 422)
    empty = await client.post(REGISTER, content=b"", headers={"content-type": "application/json"})
    _assert_problem(empty, 400, 422)


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=1000001",
        "page=" + "9" * 40,
        "page=1e3",
        "page=NaN",
        "per_page=0",
        "per_page=-5",
        "per_page=101",
        "per_page=" + "9" * 40,
        "per_page=",
    ],
)
async def test_out_of_range_pages_and_sizes_are_422(
    client: AsyncClient, admin_headers: Headers, query: str
) -> None:
    _assert_problem(await client.get(f"{USERS}?{query}", headers=admin_headers), 422)


async def test_the_last_allowed_page_is_an_empty_page(
    client: AsyncClient, admin_headers: Headers
) -> None:
    response = await client.get(f"{USERS}?page=1000000&per_page=100", headers=admin_headers)
    assert response.status_code == 200
    assert response.json()["items"] == []


SQLISH = [
    "username;DROP TABLE users",
    "-created_at,(SELECT 1)",
    "username--",
    "password_hash",
    "id desc",
    "' OR 1=1 --",
]


async def test_sql_looking_sort_and_filter_are_refused_or_inert(
    client: AsyncClient, admin_headers: Headers, session: AsyncSession
) -> None:
    for sort in SQLISH:
        response = await client.get(USERS, params={"sort": sort}, headers=admin_headers)
        _assert_problem(response, 422)
    for key, value in [
        ("filter[password_hash]", "x"),
        ("filter[username][like]", "%"),
        ("filter[username) OR (1=1]", "x"),
        ("filter[role]", "admin' OR '1'='1"),
        ("filter[created_at][gt]", "now(); DROP TABLE users"),
        ("filter[is_active]", "1 OR 1=1"),
        ("filter[username][in]", ",".join(["x"] * 101)),
    ]:
        response = await client.get(USERS, params={key: value}, headers=admin_headers)
        _assert_problem(response, 422)
    # Values are bound parameters: a SQL-looking one simply matches nothing.
    for value in ("' OR 1=1 --", "root'; DROP TABLE users; --", "%", "*"):
        response = await client.get(
            USERS, params={"filter[username]": value}, headers=admin_headers
        )
        assert response.status_code == 200
        assert response.json()["total"] == 0
    assert await session.scalar(select(func.count()).select_from(User)) == 1  # the admin


UNICODE = [
    "nul\u0000byte",
    "\u202eesrever",  # RTL override
    "\u05e9\u05dc\u05d5\u05dd",  # Hebrew, RTL
    "zero\u200bwidth",
    "\ufeffbom",
    "e\u0301\u0301\u0301",  # stacked combining marks
    "\U0001f600" * 20,
    "x" * 5_000,
]
LONE_SURROGATES = ['"\\ud800"', '"a\\udfffb"', '"\\udbff\\udbff"']


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_unicode_edge_cases_are_4xx_never_5xx(
    client: AsyncClient,
    user_headers: Headers,
    admin_headers: Headers,
    auth_settings: Callable[..., AuthSettings],
) -> None:
    auth_settings(register_rate_limit_ip="1000/hour")
    for text in [*UNICODE, "y" * 500_000]:
        for field in ("email", "username", "password"):
            body = {"email": "u@example.com", "username": "uni", "password": "long-password-1"}
            body[field] = text
            response = await client.post(REGISTER, json=body)
            assert response.status_code in (202, 409, 422), (field, text[:20], response.text)
        _assert_problem(await client.patch(f"{USERS}/me", json={"username": text},
                                           headers=user_headers), 422)  # fmt: skip
        for key in ("filter[username]", "filter[email]", "sort"):
            if len(text) > 10_000:
                continue
            response = await client.get(USERS, params={key: text}, headers=admin_headers)
            assert response.status_code in (200, 422), (key, text[:20], response.text)
    for raw in LONE_SURROGATES:
        for template in (
            '{"email": %s, "username": "uni", "password": "long-password-1"}',
            '{"email": "s@example.com", "username": %s, "password": "long-password-1"}',
            '{"email": "s@example.com", "username": "surrogate", "password": %s}',
        ):
            response = await client.post(
                REGISTER, content=template % raw, headers={"content-type": "application/json"}
            )
            assert response.status_code in (202, 409, 422), (template, raw, response.text)
        for url, template in [
            ("/api/v1/auth/refresh", '{"refresh_token": %s}'),
            ("/api/v1/auth/verify-email", '{"token": %s}'),
            ("/api/v1/auth/password/reset", '{"token": %s, "new_password": "long-password-1"}'),
            ("/api/v1/auth/password/forgot", '{"email": %s}'),
        ]:
            response = await client.post(
                url, content=template % raw, headers={"content-type": "application/json"}
            )
            assert 400 <= response.status_code < 500, (url, raw, response.text)
    # Undecodable bytes in the URL and the body.
    response = await client.get(f"{USERS}?filter[username]=%ED%A0%80%FF", headers=admin_headers)
    assert response.status_code in (200, 422)
    response = await client.post(
        "/api/v1/auth/login",
        content=b"username=%FF%FE&password=%00",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert 400 <= response.status_code < 500


async def test_security_headers_on_every_kind_of_response(
    app: FastAPI, client: AsyncClient, user_headers: Headers
) -> None:
    limit = app.state.settings.max_body_bytes
    requests: list[tuple[str, str, dict[str, Any]]] = [
        ("GET", "/health/live", {}),
        ("GET", "/health/ready", {}),
        ("GET", f"{USERS}/me", {"headers": user_headers}),
        ("GET", f"{USERS}/me", {}),  # 401
        ("GET", USERS, {"headers": user_headers}),  # 403
        ("GET", f"{USERS}/00000000-0000-0000-0000-000000000000", {"headers": user_headers}),
        ("DELETE", "/health/live", {}),  # 405
        ("POST", REGISTER, {"content": b"x" * (limit + 1)}),  # 413
        ("POST", REGISTER, {"json": {}}),  # 422
        ("POST", "/api/v1/auth/logout", {"headers": user_headers}),  # 204
        ("OPTIONS", USERS, {}),
        ("GET", "/openapi.json", {}),
    ]
    seen = set()
    for method, url, kwargs in requests:
        response = await client.request(method, url, **kwargs)
        seen.add(response.status_code)
        for name, value in SECURITY_HEADERS:
            assert response.headers[name.decode()] == value.decode(), (method, url, name)
    assert {200, 204, 401, 403, 404, 405, 413, 422} <= seen


async def test_passwords_are_stored_as_argon2id(client: AsyncClient, session: AsyncSession) -> None:
    body = {"email": "hash@example.com", "username": "hashed", "password": "long-password-1"}
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 202
    assert "password" not in response.text
    stored = await session.scalar(select(User.password_hash).where(User.username == "hashed"))
    assert stored is not None
    assert stored.startswith("$argon2id$")
    assert "long-password-1" not in stored


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
@pytest.mark.parametrize(
    ("path", "figure"),
    [
        ("/api/v1/auth/password/forgot", "forgot_password_timing"),
        ("/api/v1/auth/verify-email/resend", "resend_verification_timing"),
    ],
)
async def test_mail_requests_same_answer_similar_time_known_or_unknown(
    app: FastAPI,
    client: AsyncClient,
    make_user: Any,
    auth_settings: Callable[..., AuthSettings],
    path: str,
    figure: str,
) -> None:
    """The request only names the address; the task decides whether there is an account to
    mail. Known (here unverified, so a resend would mail it) and unknown answer alike."""
    auth_settings(email_rate_limit="1000/hour")
    await make_user(username="known", email="known@example.com", is_verified=False)
    timings: dict[str, list[float]] = {"known": [], "unknown": []}
    answers: dict[str, set[str]] = {"known": set(), "unknown": set()}
    for round_ in range(6):
        for kind in ("known", "unknown") if round_ % 2 else ("unknown", "known"):
            email = "known@example.com" if kind == "known" else f"ghost{round_}@example.com"
            started = time.perf_counter()
            response = await client.post(path, json={"email": email})
            timings[kind].append(time.perf_counter() - started)
            await queued_work_done(app)  # the mail itself is sent outside the measured request
            assert response.status_code == 202
            answers[kind].add(response.text)
    assert answers["known"] == answers["unknown"]
    known, unknown = (statistics.median(timings[k]) * 1000 for k in ("known", "unknown"))
    record(figure, known_median_ms=round(known, 1), unknown_median_ms=round(unknown, 1))
    # The same work on both paths: within 2x, or a few milliseconds on a fast answer.
    assert max(known, unknown) / min(known, unknown) < 2.0 or abs(known - unknown) < 5, (
        known,
        unknown,
    )
