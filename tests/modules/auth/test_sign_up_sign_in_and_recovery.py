"""The auth endpoints, end to end through HTTP, mail included."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import jwt
import pytest
import time_machine
from fastapi import FastAPI, Request
from httpx import AsyncClient
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings, get_app_settings
from app.modules.auth.config import AuthSettings
from app.modules.users.models import User
from tests.conftest import TEST_SECRET, MailOutbox
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, bearer, login, token_from_link
from tests.support import queued_work_done

# Requests here are counted against fixed-window rate limits.
pytestmark = pytest.mark.usefixtures("one_rate_window")

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"
NEW_PASSWORD = "a-brand-new-passphrase"


async def _register(
    client: AsyncClient, email: str = "Bob@Example.com", username: str = "bob"
) -> dict[str, object]:
    response = await client.post(
        REGISTER, json={"email": email, "username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 202, response.text
    body: dict[str, object] = response.json()
    return body


async def test_register_verify_by_mailed_link_then_sign_in(
    client: AsyncClient, mail_outbox: MailOutbox, session: AsyncSession
) -> None:
    body = await _register(client)
    assert set(body) == {"detail"}  # nothing about the account: the same for a taken address
    stored = await session.scalar(select(User).where(User.username == "bob"))
    assert stored is not None
    assert stored.email == "Bob@example.com"
    assert stored.is_verified is False

    message = await mail_outbox.wait()
    assert message["To"] == "Bob@example.com"
    assert "Confirm" in message["Subject"]
    [link] = mail_outbox.links(message)
    # The token rides in the fragment: browsers send it to no server, Referer included.
    assert link.startswith("http://localhost:3000/verify-email#token=")
    assert "?" not in link

    response = await client.post("/api/v1/auth/verify-email", json={"token": token_from_link(link)})
    assert response.status_code == 204
    again = await client.post("/api/v1/auth/verify-email", json={"token": token_from_link(link)})
    assert again.status_code == 400
    assert again.headers["content-type"] == "application/problem+json"

    tokens = await login(client, "BOB@example.com")  # email, any case
    assert tokens["token_type"] == "bearer"
    me = await client.get(ME, headers=bearer(tokens["access_token"]))
    assert me.status_code == 200
    assert me.json()["is_verified"] is True
    assert "password" not in me.text


async def test_a_taken_email_answers_as_a_new_one_and_its_owner_is_told(
    client: AsyncClient, mail_outbox: MailOutbox, session: AsyncSession
) -> None:
    new = await _register(client)
    await mail_outbox.wait()
    taken = await client.post(
        REGISTER,
        json={"email": "bob@EXAMPLE.com", "username": "other", "password": DEFAULT_PASSWORD},
    )
    assert taken.status_code == 202
    assert taken.json() == new
    notice = await mail_outbox.wait(2)
    assert notice["To"] == "Bob@example.com"
    assert "tried to register" in notice["Subject"]
    users = await session.scalar(select(func.count()).select_from(User))
    assert users == 1


async def test_a_taken_username_is_409(client: AsyncClient) -> None:
    await _register(client)
    same_name = await client.post(
        REGISTER, json={"email": "x@example.com", "username": "BOB", "password": DEFAULT_PASSWORD}
    )
    assert same_name.status_code == 409
    assert same_name.headers["content-type"] == "application/problem+json"


async def test_registrations_are_limited_per_client(
    client: AsyncClient, auth_settings: Callable[..., AuthSettings]
) -> None:
    auth_settings(register_rate_limit_ip="2/hour")
    statuses = [
        (
            await client.post(
                REGISTER,
                json={
                    "email": f"n{n}@example.com",
                    "username": f"newcomer{n}",
                    "password": DEFAULT_PASSWORD,
                },
            )
        ).status_code
        for n in range(3)
    ]
    assert statuses == [202, 202, 429]


@pytest.mark.parametrize(
    "payload",
    [
        {"email": "not-an-email", "username": "carol", "password": DEFAULT_PASSWORD},
        {"email": "c@example.com", "username": "carol", "password": "short"},
        {"email": "c@example.com", "username": "no spaces!", "password": DEFAULT_PASSWORD},
        {"email": "c@example.com", "username": "carol", "password": "x" * 129},
        {"email": "c@example.com", "username": "carol"},
        {
            "email": "c@example.com",
            "username": "carol",
            "password": DEFAULT_PASSWORD,
            "role": "admin",
        },
    ],
)
async def test_invalid_registration_is_422(client: AsyncClient, payload: dict[str, str]) -> None:
    response = await client.post(REGISTER, json=payload)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_sign_in_by_username_or_email_and_generic_401(
    client: AsyncClient, user: User
) -> None:
    by_name = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    by_mail = await client.post(
        LOGIN_URL, data={"username": "ALICE@example.com", "password": DEFAULT_PASSWORD}
    )
    assert by_name.status_code == by_mail.status_code == 200
    wrong = await client.post(LOGIN_URL, data={"username": "alice", "password": "wrong-password"})
    unknown = await client.post(LOGIN_URL, data={"username": "nobody", "password": "whatever"})
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json()["detail"] == unknown.json()["detail"]
    assert wrong.headers["www-authenticate"] == "Bearer"


async def test_login_is_rate_limited_per_account(client: AsyncClient, user: User) -> None:
    statuses = [
        (await client.post(LOGIN_URL, data={"username": "alice", "password": "nope"})).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    blocked = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert blocked.status_code == 429
    assert "retry-after" in blocked.headers


async def test_unverified_users_rules(
    client: AsyncClient,
    make_user: Callable[..., object],
    auth_settings: Callable[..., AuthSettings],
    app_settings: Callable[..., Settings],
) -> None:
    unverified = await make_user(username="newbie", email="newbie@example.com", is_verified=False)  # type: ignore[misc]
    tokens = await login(client, "newbie")
    headers = bearer(tokens["access_token"])
    assert (await client.get(ME, headers=headers)).status_code == 200
    own = await client.get(f"/api/v1/users/{unverified.id}", headers=headers)
    assert own.status_code == 403  # ActivePrincipal needs a verified email by default

    app_settings(auth_unverified_access_allowed=True)
    assert (await client.get(f"/api/v1/users/{unverified.id}", headers=headers)).status_code == 200

    auth_settings(unverified_login_allowed=False)
    denied = await client.post(LOGIN_URL, data={"username": "newbie", "password": DEFAULT_PASSWORD})
    assert denied.status_code == 403


async def test_settings_overrides_of_any_signature_are_honoured(
    app: FastAPI, client: AsyncClient, make_user: Callable[..., object]
) -> None:
    unverified = await make_user(username="newbie", email="newbie@example.com", is_verified=False)  # type: ignore[misc]
    headers = bearer((await login(client, "newbie"))["access_token"])

    # An override with dependencies of its own, as FastAPI documents them.
    async def unverified_allowed(request: Request) -> Settings:
        settings: Settings = request.app.state.settings
        return settings.model_copy(update={"auth_unverified_access_allowed": True})

    app.dependency_overrides[get_app_settings] = unverified_allowed
    try:
        own = await client.get(f"/api/v1/users/{unverified.id}", headers=headers)
    finally:
        app.dependency_overrides.pop(get_app_settings)
    assert own.status_code == 200
    assert (await client.get(f"/api/v1/users/{unverified.id}", headers=headers)).status_code == 403


async def test_refresh_rotates_and_reuse_ends_the_session(
    client: AsyncClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    first = await login(client, "alice")
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert rotated.status_code == 200
    second = rotated.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert (await client.get(ME, headers=bearer(second["access_token"]))).status_code == 200

    reuse = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    )
    assert reuse.status_code == 401
    # The thief's replay killed the legitimate holder's token too.
    session_ended = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}
    )
    assert session_ended.status_code == 401

    unknown = await client.post("/api/v1/auth/refresh", json={"refresh_token": "x" * 43})
    assert unknown.status_code == 401


async def test_expired_access_and_refresh_tokens_are_rejected(
    client: AsyncClient, user: User
) -> None:
    tokens = await login(client, "alice")
    now = datetime.now(UTC)
    with time_machine.travel(now + timedelta(minutes=16), tick=False):
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
        refreshed = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        assert refreshed.status_code == 200
        later = refreshed.json()
    with time_machine.travel(now + timedelta(days=31), tick=False):
        expired = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": later["refresh_token"]}
        )
        assert expired.status_code == 401


async def test_logout_ends_this_session_and_logout_all_every_one(
    client: AsyncClient, user: User
) -> None:
    phone = await login(client, "alice")
    laptop = await login(client, "alice")
    tablet = await login(client, "alice")
    out = await client.post("/api/v1/auth/logout", headers=bearer(phone["access_token"]))
    assert out.status_code == 204
    refresh = "/api/v1/auth/refresh"
    assert (
        await client.post(refresh, json={"refresh_token": phone["refresh_token"]})
    ).status_code == 401
    laptop_next = await client.post(refresh, json={"refresh_token": laptop["refresh_token"]})
    assert laptop_next.status_code == 200

    everywhere = await client.post(
        "/api/v1/auth/logout-all", headers=bearer(laptop["access_token"])
    )
    assert everywhere.status_code == 204
    for token in (laptop_next.json()["refresh_token"], tablet["refresh_token"]):
        assert (await client.post(refresh, json={"refresh_token": token})).status_code == 401
    assert (await client.post("/api/v1/auth/logout")).status_code == 401


def _forge(claims: dict[str, object], *, key: str = TEST_SECRET, algorithm: str = "HS256") -> str:
    base: dict[str, object] = {
        "iss": "app",
        "aud": "app-api",
        "iat": int(datetime.now(UTC).timestamp()),
        "exp": int((datetime.now(UTC) + timedelta(minutes=5)).timestamp()),
        "jti": uuid.uuid4().hex,
        "typ": "access",
        "role": "admin",
    }
    return jwt.encode({**base, **claims}, key, algorithm=algorithm)


def _none_alg(claims: dict[str, object]) -> str:
    signed = _forge(claims)
    _, payload, _ = signed.split(".")

    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    return f"{none_header}.{payload}."


async def test_forged_and_foreign_tokens_are_401(client: AsyncClient, admin: User) -> None:
    sub = str(admin.id)
    issued = (await login(client, "root"))["access_token"]
    sid = jwt.decode(issued, options={"verify_signature": False})["sid"]
    good = _forge({"sub": sub, "sid": sid})
    assert (await client.get(ME, headers=bearer(good))).status_code == 200  # the control
    bad_tokens = [
        _none_alg({"sub": sub, "sid": sid}),
        _forge({"sub": sub, "sid": sid}, key="another-key-that-is-long-enough-for-hs256-000000"),
        _forge({"sub": sub, "sid": sid}, key=TEST_SECRET * 2, algorithm="HS512"),
        _forge({"sub": sub, "sid": sid, "aud": "someone-else"}),
        _forge({"sub": sub, "sid": sid, "iss": "evil"}),
        _forge({"sub": sub, "sid": sid, "typ": "refresh"}),
        _forge({"sub": "not-a-uuid", "sid": sid}),
        _forge({"sub": str(uuid.uuid4()), "sid": sid}),  # not the session's user
        _forge({"sub": sub}),  # no session
        _forge({"sub": sub, "sid": str(uuid.uuid4())}),  # no such session
        _forge({"sub": sub, "sid": sid, "exp": int(datetime.now(UTC).timestamp()) - 5}),
        "not.a.jwt",
        "garbage",
    ]
    for token in bad_tokens:
        response = await client.get(ME, headers=bearer(token))
        assert response.status_code == 401, token
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get(ME)).status_code == 401


async def test_forgot_password_answers_alike_and_reset_works_once(
    app: FastAPI, client: AsyncClient, user: User, mail_outbox: MailOutbox
) -> None:
    session_before = await login(client, "alice")
    known = await client.post("/api/v1/auth/password/forgot", json={"email": "Alice@example.com"})
    unknown = await client.post("/api/v1/auth/password/forgot", json={"email": "ghost@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert known.json() == unknown.json()

    message = await mail_outbox.wait()
    await queued_work_done(app)
    assert len(mail_outbox) == 1
    assert message["To"] == "alice@example.com"
    token = token_from_link(mail_outbox.links(message)[0])

    weak = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": "short"}
    )
    assert weak.status_code == 422
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    again = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD + "2"}
    )
    assert again.status_code == 400

    old = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert old.status_code == 401
    await login(client, "alice", NEW_PASSWORD)
    stale = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": session_before["refresh_token"]}
    )
    assert stale.status_code == 401


async def test_reset_token_expires(
    client: AsyncClient, user: User, mail_outbox: MailOutbox
) -> None:
    await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    with time_machine.travel(datetime.now(UTC) + timedelta(minutes=31), tick=False):
        response = await client.post(
            "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
        )
    assert response.status_code == 400


async def test_resend_verification(
    app: FastAPI, client: AsyncClient, mail_outbox: MailOutbox, user: User
) -> None:
    await _register(client)
    first = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    resend = "/api/v1/auth/verify-email/resend"
    assert (await client.post(resend, json={"email": "bob@example.com"})).status_code == 202
    second = token_from_link(mail_outbox.links(await mail_outbox.wait(2))[0])
    # Verified and unknown addresses get the same answer and no mail.
    assert (await client.post(resend, json={"email": "alice@example.com"})).status_code == 202
    assert (await client.post(resend, json={"email": "nobody@example.com"})).status_code == 202
    await queued_work_done(app)
    assert len(mail_outbox) == 2
    assert (await client.post(resend, json={"email": "x@example.com"})).status_code == 429

    # A new link does not cancel the one mailed before (asking for links must not be a way to
    # void someone's): either works, once; using one spends the other.
    verify = "/api/v1/auth/verify-email"
    assert (await client.post(verify, json={"token": first})).status_code == 204
    assert (await client.post(verify, json={"token": second})).status_code == 400


async def test_inactive_users_tokens_and_sign_in_are_rejected(
    client: AsyncClient, user: User, admin_headers: dict[str, str]
) -> None:
    tokens = await login(client, "alice")
    off = await client.patch(
        f"/api/v1/users/{user.id}", json={"is_active": False}, headers=admin_headers
    )
    assert off.status_code == 200
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert refreshed.status_code == 401
    denied = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert denied.status_code == 401


async def test_an_account_made_inactive_behind_the_apis_back_is_refused_at_once(
    client: AsyncClient, user: User, session: AsyncSession
) -> None:
    """Its sign-in session is still live (nothing ended it), yet its access token is a 401."""
    tokens = await login(client, "alice")
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200
    await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    await session.commit()
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401


async def test_every_endpoint_is_documented(client: AsyncClient) -> None:
    spec = (await client.get("/openapi.json")).json()
    paths = spec["paths"]
    expected = {
        "/api/v1/auth/register": "post",
        "/api/v1/auth/login": "post",
        "/api/v1/auth/refresh": "post",
        "/api/v1/auth/logout": "post",
        "/api/v1/auth/logout-all": "post",
        "/api/v1/auth/verify-email": "post",
        "/api/v1/auth/verify-email/resend": "post",
        "/api/v1/auth/password/forgot": "post",
        "/api/v1/auth/password/reset": "post",
        "/api/v1/users/me": "get",
        "/api/v1/users/me/password": "put",
        "/api/v1/users": "get",
        "/api/v1/users/{user_id}": "patch",
        "/api/v1/auth/api-keys": "post",
        "/api/v1/auth/api-keys/{key_id}": "delete",
    }
    for path, method in expected.items():
        operation = paths[path][method]
        codes = set(operation["responses"])
        assert codes & {"200", "201", "202", "204"}, path
        assert codes & {"400", "401", "409", "422"}, path
    assert "OAuth2PasswordBearer" in spec["components"]["securitySchemes"]
    # Operations that need a token say so (Authorize in /docs); sign-up and sign-in do not.
    signed_in = {"/api/v1/auth/logout", "/api/v1/auth/logout-all", "/api/v1/users/me"}
    signed_in |= {"/api/v1/users/me/password", "/api/v1/users", "/api/v1/users/{user_id}"}
    signed_in |= {"/api/v1/auth/api-keys", "/api/v1/auth/api-keys/{key_id}"}
    any_credential: list[dict[str, list[str]]] = [
        {"OAuth2PasswordBearer": []},
        {"APIKeyHeader": []},
        {"APIKeyCookie": []},
    ]
    for path, method in expected.items():
        security = paths[path][method].get("security")
        assert security == (any_credential if path in signed_in else None), path
    assert "password_hash" not in str(spec)


async def test_verification_link_expires(client: AsyncClient, mail_outbox: MailOutbox) -> None:
    await _register(client)
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=49), tick=False):
        response = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert response.status_code == 400


async def test_token_answers_are_never_stored(client: AsyncClient, user: User) -> None:
    login = await client.post(
        "/api/v1/auth/login", data={"username": "alice", "password": DEFAULT_PASSWORD}
    )
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": login.json()["refresh_token"]}
    )
    for response in (login, refreshed):
        assert response.status_code == 200
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["pragma"] == "no-cache"
