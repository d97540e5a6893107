"""/admin: administrators sign in with their accounts and manage users through the users
service's rules; everyone else, and every cross-site request, is refused."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import structlog
import time_machine
from httpx import AsyncClient, Response

from app.main import create_app
from app.modules.auth.two_factor.config import load_two_factor_settings
from app.modules.users.models import User
from tests.conftest import TEST_SECRET, Services, make_settings
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, bearer, login
from tests.support import http_client

SAME_ORIGIN = {"Origin": "http://test"}


async def admin_sign_in(client: AsyncClient, username: str) -> Response:
    return await client.post(
        "/admin/login",
        data={"username": username, "password": DEFAULT_PASSWORD},
        headers=SAME_ORIGIN,
    )


def edit_form(**fields: Any) -> dict[str, str]:
    """sqladmin's edit form as a browser sends it: an unticked box is left out."""
    form = {"role": fields.get("role", "user"), "save": "Save"}
    for name in ("is_active", "is_verified"):
        if fields.get(name, True):
            form[name] = "y"
    return form


async def test_a_non_admin_cannot_sign_in_or_open_the_panel(
    client: AsyncClient, user: User
) -> None:
    anonymous = await client.get("/admin/user/list")
    assert anonymous.status_code == 302
    assert anonymous.headers["location"].endswith("/admin/login")
    refused = await admin_sign_in(client, user.username)
    assert refused.status_code == 400
    assert "Invalid credentials" in refused.text
    assert "admin_session" not in client.cookies
    still_out = await client.get("/admin/user/list")
    assert still_out.status_code == 302
    wrong_password = await client.post(
        "/admin/login", data={"username": "root", "password": "nope"}, headers=SAME_ORIGIN
    )
    assert wrong_password.status_code == 400


async def test_an_admin_finds_and_filters_users(
    client: AsyncClient, admin: User, user: User
) -> None:
    signed_in = await admin_sign_in(client, admin.username)
    assert signed_in.status_code == 302
    listing = await client.get("/admin/user/list")
    assert listing.status_code == 200
    assert user.email in listing.text
    assert admin.email in listing.text
    found = await client.get("/admin/user/list", params={"search": "alice"})
    assert user.email in found.text
    assert admin.email not in found.text
    admins = await client.get("/admin/user/list", params={"role": "admin"})
    assert admin.email in admins.text
    assert user.email not in admins.text
    details = await client.get(f"/admin/user/details/{user.id}")
    assert details.status_code == 200
    assert user.password_hash not in details.text


async def test_a_deactivated_user_is_refused_by_the_api_and_the_change_is_logged(
    client: AsyncClient, admin: User, user: User, user_headers: Headers
) -> None:
    assert (await client.get("/api/v1/users/me", headers=user_headers)).status_code == 200
    await admin_sign_in(client, admin.username)
    with structlog.testing.capture_logs() as logs:
        saved = await client.post(
            f"/admin/user/edit/{user.id}", data=edit_form(is_active=False), headers=SAME_ORIGIN
        )
    assert saved.status_code == 302, saved.text
    assert (await client.get("/api/v1/users/me", headers=user_headers)).status_code == 401
    relogin = await client.post(
        "/api/v1/auth/login", data={"username": user.username, "password": DEFAULT_PASSWORD}
    )
    assert relogin.status_code == 401
    change = next(entry for entry in logs if entry["event"] == "admin_change")
    assert change["admin_id"] == str(admin.id)
    assert change["pk"] == str(user.id)
    assert change["fields"] == ["is_active"]


async def test_an_admin_promotes_a_user_and_the_last_admin_cannot_be_demoted(
    client: AsyncClient, admin: User, user: User
) -> None:
    await admin_sign_in(client, admin.username)
    refused = await client.post(
        f"/admin/user/edit/{admin.id}", data=edit_form(role="user"), headers=SAME_ORIGIN
    )
    assert refused.status_code == 400
    assert "last active administrator" in refused.text
    admin_headers = bearer((await login(client, admin.username))["access_token"])
    me = await client.get("/api/v1/users/me", headers=admin_headers)
    assert me.json()["role"] == "admin"
    promoted = await client.post(
        f"/admin/user/edit/{user.id}", data=edit_form(role="admin"), headers=SAME_ORIGIN
    )
    assert promoted.status_code == 302
    assert (await client.get(f"/api/v1/users/{user.id}", headers=admin_headers)).json()[
        "role"
    ] == "admin"


async def test_a_demoted_admin_is_out_of_the_panel_at_once(
    client: AsyncClient, make_user: Any, admin: User, admin_headers: Headers
) -> None:
    other = await make_user(email="second@example.com", username="second", role="admin")
    await admin_sign_in(client, other.username)
    assert (await client.get("/admin/user/list")).status_code == 200
    demoted = await client.patch(
        f"/api/v1/users/{other.id}", json={"role": "user"}, headers=admin_headers
    )
    assert demoted.status_code == 200
    assert (await client.get("/admin/user/list")).status_code == 302


async def test_cross_site_requests_are_refused(
    client: AsyncClient, admin: User, user: User
) -> None:
    await admin_sign_in(client, admin.username)
    for headers in ({"Origin": "https://evil.example"}, {"Referer": "https://evil.example/x"}, {}):
        forged = await client.post(
            f"/admin/user/edit/{user.id}", data=edit_form(is_active=False), headers=headers
        )
        assert forged.status_code == 403, headers
    login_elsewhere = await client.post(
        "/admin/login",
        data={"username": admin.username, "password": DEFAULT_PASSWORD},
        headers={"Origin": "https://evil.example"},
    )
    assert login_elsewhere.status_code == 403
    user_headers = bearer((await login(client, user.username))["access_token"])
    assert (await client.get("/api/v1/users/me", headers=user_headers)).status_code == 200


async def test_panel_pages_may_run_their_own_scripts_and_name_their_origin(
    client: AsyncClient,
) -> None:
    page = await client.get("/admin/login")
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "form-action 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    # With no-referrer, browsers send `Origin: null` and the same-origin check refuses them.
    assert page.headers["referrer-policy"] == "same-origin"
    api = await client.get("/api/v1/users/me")
    assert api.headers["referrer-policy"] == "no-referrer"
    assert api.headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"


async def test_the_session_cookie_is_strict_and_http_only(client: AsyncClient, admin: User) -> None:
    response = await admin_sign_in(client, admin.username)
    cookie = response.headers["set-cookie"].lower()
    assert "admin_session=" in cookie
    assert "samesite=strict" in cookie
    assert "httponly" in cookie
    assert "path=/admin" in cookie
    logout = await client.get("/admin/logout")
    assert logout.status_code == 302
    assert (await client.get("/admin/user/list")).status_code == 302


@pytest.mark.parametrize(("enabled", "status"), [(None, 404), (True, 302)])
async def test_production_has_no_panel_unless_enabled(
    services: Services, enabled: bool | None, status: int
) -> None:
    settings = make_settings(
        services,
        app_env="production",
        secret_key=TEST_SECRET,
        admin_enabled=enabled,
    )
    async with http_client(create_app(settings)) as http:
        assert (await http.get("/admin/")).status_code == status


async def test_an_admin_with_two_factor_signs_in_with_a_code_each_accepted_once(
    client: AsyncClient, admin: User
) -> None:
    start = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # five seconds into a 30-second step
    with time_machine.travel(start, tick=False) as clock:
        admin_headers = bearer((await login(client, admin.username))["access_token"])
        enrolment = await client.post(
            "/api/v1/auth/2fa/enrol",
            headers=admin_headers,
            json={"current_password": DEFAULT_PASSWORD},
        )
        assert enrolment.status_code == 200, enrolment.text
        totp = pyotp.TOTP(enrolment.json()["secret"])
        confirmed = await client.post(
            "/api/v1/auth/2fa/confirm", headers=admin_headers, json={"code": totp.now()}
        )
        assert confirmed.status_code == 200, confirmed.text
        form = await client.get("/admin/login")
        assert 'name="code"' in form.text

        without_code = await admin_sign_in(client, admin.username)
        assert without_code.status_code == 400
        clock.shift(timedelta(seconds=30))
        code = totp.now()
        wrong = await client.post(
            "/admin/login",
            data={"username": admin.username, "password": DEFAULT_PASSWORD, "code": "000000"},
            headers=SAME_ORIGIN,
        )
        assert wrong.status_code == 400
        right = {"username": admin.username, "password": DEFAULT_PASSWORD, "code": code}
        signed_in = await client.post("/admin/login", data=right, headers=SAME_ORIGIN)
        assert signed_in.status_code == 302
        assert (await client.get("/admin/user/list")).status_code == 200
        # The same code again is a replay: refused, as on the API.
        await client.get("/admin/logout")
        replayed = await client.post("/admin/login", data=right, headers=SAME_ORIGIN)
        assert replayed.status_code == 400


async def test_an_admin_who_must_enrol_first_is_refused_by_the_panel(
    client: AsyncClient, admin: User, two_factor_required: None
) -> None:
    refused = await admin_sign_in(client, admin.username)
    assert refused.status_code == 400
    assert "admin_session" not in client.cookies


@pytest.fixture
def two_factor_required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # The panel's sign-in loads the auth module's settings itself (no request dependencies).
    monkeypatch.setenv("AUTH_ADMIN_2FA_REQUIRED", "true")
    load_two_factor_settings.cache_clear()
    yield
    monkeypatch.undo()
    load_two_factor_settings.cache_clear()
