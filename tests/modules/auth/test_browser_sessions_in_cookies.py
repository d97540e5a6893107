"""Browser sessions (AUTH_TRANSPORT): HttpOnly cookies, the CSRF token a page sends back,
rotation and reuse detection as for bearer tokens, logout clearing the cookies."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response

from app.core.config import AuthTransport, Environment, Settings
from app.modules.users.models import User
from tests.conftest import Services
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, app_with, bearer

ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"
LOGOUT = "/api/v1/auth/logout"
SessionCookies = dict[str, dict[str, Any]]
# Where cookies are Secure (here: https), their names carry the prefixes browsers enforce.
ACCESS = "__Host-access_token"
REFRESH_COOKIE = "__Secure-refresh_token"
CSRF = "__Host-csrf_token"


def _browser(app: FastAPI, base_url: str = "https://api.example.com") -> AsyncClient:
    """A client that keeps cookies as a browser does (Secure ones over https only)."""
    return AsyncClient(transport=ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def browser(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with _browser(app) as client:
        yield client


def set_cookies(response: Response) -> SessionCookies:
    """Each Set-Cookie of the response: name -> its value and attributes."""
    cookies: SessionCookies = {}
    for header in response.headers.get_list("set-cookie"):
        parsed = SimpleCookie()
        parsed.load(header)
        for name, morsel in parsed.items():
            cookies[name] = {"value": morsel.value, **{k: v for k, v in morsel.items() if v}}
    return cookies


async def _sign_in(client: AsyncClient, username: str = "alice") -> Response:
    response = await client.post(
        LOGIN_URL, data={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    return response


def _csrf(response: Response) -> dict[str, str]:
    return {"X-CSRF-Token": response.json()["csrf_token"]}


@pytest.fixture
async def cookie_only(services: Services) -> AsyncIterator[FastAPI]:
    """An app with AUTH_TRANSPORT=cookie."""
    async with app_with(services, auth_transport=AuthTransport.COOKIE) as application:
        yield application


async def test_login_sets_httponly_secure_lax_cookies_scoped_to_their_paths(
    browser: AsyncClient, user: User
) -> None:
    response = await _sign_in(browser)
    cookies = set_cookies(response)
    for name in (ACCESS, REFRESH_COOKIE, CSRF):
        assert cookies[name]["secure"] is True, name
        assert cookies[name]["samesite"] == "lax", name
    assert cookies[ACCESS]["httponly"] is True
    assert cookies[REFRESH_COOKIE]["httponly"] is True
    assert "httponly" not in cookies[CSRF]  # the page reads it
    assert cookies[ACCESS]["path"] == "/"
    assert cookies[REFRESH_COOKIE]["path"] == "/api/v1/auth"  # refresh and logout only
    # AUTH_TRANSPORT=both: the body still carries the pair, and the CSRF token of the cookies.
    body = response.json()
    assert body["access_token"] == cookies[ACCESS]["value"]
    assert body["refresh_token"] == cookies[REFRESH_COOKIE]["value"]
    assert body["csrf_token"] == cookies[CSRF]["value"]
    # The browser sends the access cookie with every API request: that signs it in.
    me = await browser.get(ME)
    assert me.status_code == 200
    assert me.json()["username"] == "alice"


async def test_cookie_mode_keeps_every_token_out_of_reach_of_scripts(
    cookie_only: FastAPI, user: User
) -> None:
    async with _browser(cookie_only) as browser:
        await _cookie_mode(cookie_only, browser)


async def _cookie_mode(app: FastAPI, browser: AsyncClient) -> None:
    response = await _sign_in(browser)
    body = response.json()
    assert body["token_type"] == "cookie"
    assert set(body) == {"token_type", "expires_in", "refresh_expires_in", "csrf_token"}
    access = set_cookies(response)[ACCESS]["value"]
    assert (await browser.get(ME)).status_code == 200
    # A session's access token in a header is refused: in this mode it lives in the cookie.
    async with _browser(app) as other:
        assert (await other.get(ME, headers=bearer(access))).status_code == 401
    # And a refresh token is taken from its cookie only.
    refresh = set_cookies(response)[REFRESH_COOKIE]["value"]
    by_body = await browser.post(REFRESH, json={"refresh_token": refresh}, headers=_csrf(response))
    assert by_body.status_code == 401


async def test_a_cross_site_post_with_the_cookie_but_no_csrf_token_is_403(
    browser: AsyncClient, user: User
) -> None:
    response = await _sign_in(browser)
    form_post = {
        "Origin": "https://evil.example",
        "Content-Type": "application/x-www-form-urlencoded",
    }
    forged = await browser.post("/api/v1/auth/logout-all", headers=form_post, content=b"x=1")
    assert forged.status_code == 403
    assert forged.headers["content-type"] == "application/problem+json"
    assert "CSRF" in forged.json()["detail"]
    # A wrong token, or the cookie's value without the header, fails alike.
    wrong = await browser.post("/api/v1/auth/logout-all", headers={"X-CSRF-Token": "x.y"})
    assert wrong.status_code == 403
    # The session is untouched; its page, sending the token back, may change things.
    assert (await browser.get(ME)).status_code == 200
    changed = await browser.patch(ME, json={"username": "alice2"}, headers=_csrf(response))
    assert changed.status_code == 200, changed.text
    assert changed.json()["username"] == "alice2"


async def test_a_csrf_token_of_another_session_does_not_pass(
    app: FastAPI, browser: AsyncClient, user: User
) -> None:
    await _sign_in(browser)
    async with _browser(app) as other_browser:
        other = await _sign_in(other_browser)
    # Cookie and header agree, but the token is signed for the other session.
    browser.cookies.set(CSRF, other.json()["csrf_token"], domain="api.example.com")
    refused = await browser.patch(ME, json={"username": "alice2"}, headers=_csrf(other))
    assert refused.status_code == 403
    # Nor does it refresh this browser's session: the token is checked against the session
    # of the refresh cookie, not only against the CSRF cookie.
    refresh = await browser.post(REFRESH, headers=_csrf(other))
    assert refresh.status_code == 403
    assert "CSRF" in refresh.json()["detail"]
    assert "set-cookie" not in refresh.headers


async def test_bearer_requests_need_no_csrf_token(client: AsyncClient, user: User) -> None:
    tokens = (await _sign_in(client)).json()
    changed = await client.patch(
        ME, json={"username": "alice2"}, headers=bearer(tokens["access_token"])
    )
    assert changed.status_code == 200


async def test_refresh_by_cookie_rotates_answers_with_cookies_and_detects_reuse(
    browser: AsyncClient, user: User
) -> None:
    login = await _sign_in(browser)
    first_refresh = set_cookies(login)[REFRESH_COOKIE]["value"]
    # Without the CSRF token the cookie is not enough.
    assert (await browser.post(REFRESH)).status_code == 403
    rotated = await browser.post(REFRESH, headers=_csrf(login))
    assert rotated.status_code == 200, rotated.text
    # It came by cookie, so it is answered by cookie: no token a script could read.
    assert set(rotated.json()) == {"token_type", "expires_in", "refresh_expires_in", "csrf_token"}
    assert rotated.headers["cache-control"] == "no-store"
    cookies = set_cookies(rotated)
    assert cookies[REFRESH_COOKIE]["value"] != first_refresh
    assert cookies[CSRF]["value"] == rotated.json()["csrf_token"]
    assert (await browser.get(ME)).status_code == 200
    # The spent refresh token presented again (stolen from the cookie): the session ends.
    browser.cookies.set(
        REFRESH_COOKIE, first_refresh, domain="api.example.com", path="/api/v1/auth"
    )
    reused = await browser.post(REFRESH, headers=_csrf(rotated))
    assert reused.status_code == 401
    assert (await browser.get(ME)).status_code == 401


async def test_refresh_without_any_refresh_token_is_401(browser: AsyncClient) -> None:
    response = await browser.post(REFRESH)
    assert response.status_code == 401


async def test_logout_ends_the_session_and_clears_the_cookies(
    browser: AsyncClient, user: User
) -> None:
    login = await _sign_in(browser)
    access = set_cookies(login)[ACCESS]["value"]
    assert (await browser.post(LOGOUT)).status_code == 403  # no CSRF token
    response = await browser.post(LOGOUT, headers=_csrf(login))
    assert response.status_code == 204
    cleared = set_cookies(response)
    assert set(cleared) == {ACCESS, REFRESH_COOKIE, CSRF}
    for name, cookie in cleared.items():
        assert cookie["max-age"] == "0", name
    assert cleared[REFRESH_COOKIE]["path"] == "/api/v1/auth"
    assert not browser.cookies
    # The access token is dead too, not only forgotten by this browser.
    browser.cookies.set(ACCESS, access, domain="api.example.com")
    assert (await browser.get(ME)).status_code == 401


async def test_bearer_mode_sets_no_cookie_and_reads_none(
    browser: AsyncClient, user: User, services: Services
) -> None:
    both = await _sign_in(browser)  # cookies of a sign-in on an app with both transports
    async with (
        app_with(services, auth_transport=AuthTransport.BEARER) as bearer_only,
        _browser(bearer_only) as other,
    ):
        login = await _sign_in(other)
        assert "set-cookie" not in login.headers
        assert login.json()["csrf_token"] is None
        assert (
            await other.get(ME, headers=bearer(login.json()["access_token"]))
        ).status_code == 200
        # Cookies, even of a live session, stand for nobody here.
        other.cookies = browser.cookies
        assert other.cookies.get(ACCESS) == set_cookies(both)[ACCESS]["value"]
        assert (await other.get(ME)).status_code == 401
        assert (await other.post(REFRESH, headers=_csrf(both))).status_code == 401
    assert (await browser.get(ME)).status_code == 200


@pytest.mark.parametrize(
    ("environment", "base_url", "secure"),
    [
        (Environment.DEVELOPMENT, "http://localhost:8000", False),
        (Environment.DEVELOPMENT, "http://127.0.0.1:8000", False),
        (Environment.DEVELOPMENT, "https://localhost:8000", True),
        (Environment.DEVELOPMENT, "http://dev.example.com", True),
        (Environment.TEST, "http://localhost:8000", True),
        (Environment.PRODUCTION, "http://localhost:8000", True),
    ],
)
async def test_secure_is_relaxed_only_in_development_on_http_localhost(
    app: FastAPI,
    user: User,
    app_settings: Callable[..., Settings],
    environment: Environment,
    base_url: str,
    secure: bool,
) -> None:
    app_settings(app_env=environment)
    async with _browser(app, base_url) as client:
        cookies = set_cookies(await _sign_in(client))
    # Bare names where they are not Secure: browsers refuse the prefixes on such cookies.
    names = (
        (ACCESS, REFRESH_COOKIE, CSRF)
        if secure
        else ("access_token", "refresh_token", "csrf_token")
    )
    assert set(cookies) == set(names)
    for name in names:
        assert cookies[name].get("secure", False) is secure, name


async def test_where_cookies_are_secure_only_prefixed_ones_are_read(
    browser: AsyncClient, user: User
) -> None:
    login = await _sign_in(browser)
    cookies = set_cookies(login)
    # A cookie planted by a sibling subdomain or a plain-http page cannot carry the prefix:
    # the same values under the bare names stand for nobody.
    browser.cookies.clear()
    for bare, prefixed in (
        ("access_token", ACCESS),
        ("csrf_token", CSRF),
    ):
        browser.cookies.set(bare, cookies[prefixed]["value"], domain="api.example.com")
    browser.cookies.set(
        "refresh_token", cookies[REFRESH_COOKIE]["value"], domain="api.example.com",
        path="/api/v1/auth",
    )  # fmt: skip
    assert (await browser.get(ME)).status_code == 401
    assert (await browser.post(REFRESH, headers=_csrf(login))).status_code == 401


async def test_a_sign_in_from_another_site_sets_no_cookie(
    browser: AsyncClient, user: User, app_settings: Callable[..., Settings]
) -> None:
    app_settings(cors_origins=["https://app.example.com"])
    form = {"username": "alice", "password": DEFAULT_PASSWORD}
    # Login CSRF: a page of another site posts the attacker's credentials to sign the
    # victim's browser in to the attacker's account.
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": "https://api.example.com", "Sec-Fetch-Site": "cross-site"},
    ):
        refused = await browser.post(LOGIN_URL, data=form, headers=headers)
        assert refused.status_code == 403, headers
        assert refused.headers["content-type"] == "application/problem+json"
        assert "another site" in refused.json()["detail"]
        assert "set-cookie" not in refused.headers
    # The API's own pages, the frontends of CORS_ORIGINS, and clients that are no browser.
    for headers in (
        {"Origin": "https://api.example.com", "Sec-Fetch-Site": "same-origin"},
        {"Origin": "https://app.example.com", "Sec-Fetch-Site": "same-site"},
        {},
    ):
        signed_in = await browser.post(LOGIN_URL, data=form, headers=headers)
        assert signed_in.status_code == 200, (headers, signed_in.text)
        assert ACCESS in set_cookies(signed_in)


async def test_the_second_step_from_another_site_is_refused_too(
    browser: AsyncClient, user: User
) -> None:
    # The challenge is checked after the origin: a cross-site post gets no further.
    forged = await browser.post(
        "/api/v1/auth/2fa/login",
        json={"challenge": "x" * 40, "code": "123456"},
        headers={"Origin": "https://evil.example"},
    )
    assert forged.status_code == 403
    assert "another site" in forged.json()["detail"]


async def test_bearer_only_sign_in_is_not_bound_to_an_origin(
    browser: AsyncClient, user: User, app_settings: Callable[..., Settings]
) -> None:
    app_settings(auth_transport=AuthTransport.BEARER)  # no cookie to plant
    response = await browser.post(
        LOGIN_URL,
        data={"username": "alice", "password": DEFAULT_PASSWORD},
        headers={"Origin": "https://elsewhere.example"},
    )
    assert response.status_code == 200
    assert "set-cookie" not in response.headers
