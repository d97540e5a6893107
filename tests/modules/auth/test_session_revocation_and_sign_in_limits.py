"""Regressions of the security review: session revocation races, access tokens of ended
sessions, action tokens bound to their address, the failed-sign-in limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sessions import SignInSession
from app.modules.auth.config import AuthSettings
from app.modules.auth.models import RefreshToken
from app.modules.users.models import User
from tests.conftest import MailOutbox
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, bearer, login, token_from_link
from tests.support import queued_work_done

# Requests here are counted against fixed-window rate limits.
pytestmark = pytest.mark.usefixtures("one_rate_window")

ME = "/api/v1/users/me"
REFRESH = "/api/v1/auth/refresh"
NEW_PASSWORD = "a-brand-new-passphrase"
ROUNDS = 12


async def _live_tokens(session: AsyncSession, user_id: uuid.UUID) -> int:
    """Refresh tokens that could still be traded: unrotated, in a session that has not ended."""
    count = await session.scalar(
        select(func.count())
        .select_from(RefreshToken)
        .join(SignInSession, SignInSession.id == RefreshToken.session_id)
        .where(
            RefreshToken.user_id == user_id,
            RefreshToken.rotated_at.is_(None),
            SignInSession.ended_at.is_(None),
        )
    )
    return int(count or 0)


@pytest.fixture
def many_logins(auth_settings: Callable[..., AuthSettings]) -> AuthSettings:
    return auth_settings(login_rate_limit_ip="1000/minute", email_rate_limit="1000/hour")


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_logout_all_racing_refreshes_leaves_no_live_token(
    client: AsyncClient, user: User, session: AsyncSession, many_logins: AuthSettings
) -> None:
    for _ in range(ROUNDS):
        first = await login(client, "alice")
        second = await login(client, "alice")
        await asyncio.gather(
            client.post(REFRESH, json={"refresh_token": first["refresh_token"]}),
            client.post("/api/v1/auth/logout-all", headers=bearer(second["access_token"])),
            client.post(REFRESH, json={"refresh_token": second["refresh_token"]}),
        )
        assert await _live_tokens(session, user.id) == 0


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_reuse_detection_racing_a_refresh_leaves_no_live_token(
    client: AsyncClient, user: User, session: AsyncSession, many_logins: AuthSettings
) -> None:
    for _ in range(ROUNDS):
        first = await login(client, "alice")
        rotated = await client.post(REFRESH, json={"refresh_token": first["refresh_token"]})
        head = rotated.json()["refresh_token"]
        await asyncio.gather(
            client.post(REFRESH, json={"refresh_token": head}),
            client.post(REFRESH, json={"refresh_token": first["refresh_token"]}),  # reuse
        )
        assert await _live_tokens(session, user.id) == 0


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_password_reset_racing_refreshes_leaves_no_live_token(
    app: FastAPI,
    client: AsyncClient,
    user: User,
    session: AsyncSession,
    mail_outbox: MailOutbox,
    many_logins: AuthSettings,
) -> None:
    password = DEFAULT_PASSWORD
    for round_ in range(4):
        tokens = [await login(client, "alice", password) for _ in range(3)]
        await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
        # Each round mails a reset link, then a notice that the password changed.
        message = await mail_outbox.wait(2 * round_ + 1)
        await queued_work_done(app)
        reset_token = token_from_link(mail_outbox.links(message)[0])
        password = f"{NEW_PASSWORD}-{round_}"
        results = await asyncio.gather(
            *(client.post(REFRESH, json={"refresh_token": t["refresh_token"]}) for t in tokens),
            client.post(
                "/api/v1/auth/password/reset",
                json={"token": reset_token, "new_password": password},
            ),
        )
        assert results[-1].status_code == 204
        assert await _live_tokens(session, user.id) == 0


# --- access tokens of ended sessions ---------------------------------------------------------


async def test_access_token_stops_working_after_logout(client: AsyncClient, user: User) -> None:
    this = await login(client, "alice")
    other = await login(client, "alice")
    rotated = await client.post(REFRESH, json={"refresh_token": this["refresh_token"]})
    assert rotated.status_code == 200
    # Rotation keeps the session: the access token issued before it still works.
    assert (await client.get(ME, headers=bearer(this["access_token"]))).status_code == 200

    assert (
        await client.post("/api/v1/auth/logout", headers=bearer(this["access_token"]))
    ).status_code == 204
    for access in (this["access_token"], rotated.json()["access_token"]):
        gone = await client.get(ME, headers=bearer(access))
        assert gone.status_code == 401
        assert gone.headers["content-type"] == "application/problem+json"
    assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 200


async def test_access_tokens_stop_working_after_logout_all(client: AsyncClient, user: User) -> None:
    sessions = [await login(client, "alice") for _ in range(3)]
    assert (
        await client.post("/api/v1/auth/logout-all", headers=bearer(sessions[0]["access_token"]))
    ).status_code == 204
    for tokens in sessions:
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
    fresh = await login(client, "alice")
    assert (await client.get(ME, headers=bearer(fresh["access_token"]))).status_code == 200


async def test_access_tokens_stop_working_after_password_reset(
    client: AsyncClient, user: User, mail_outbox: MailOutbox
) -> None:
    before = await login(client, "alice")
    await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
    message = await mail_outbox.wait()
    reset = await client.post(
        "/api/v1/auth/password/reset",
        json={
            "token": token_from_link(mail_outbox.links(message)[0]),
            "new_password": NEW_PASSWORD,
        },
    )
    assert reset.status_code == 204
    assert (await client.get(ME, headers=bearer(before["access_token"]))).status_code == 401
    after = await login(client, "alice", NEW_PASSWORD)
    assert (await client.get(ME, headers=bearer(after["access_token"]))).status_code == 200


# --- action tokens are bound to the address they were mailed to -------------------------------


async def test_verification_link_is_void_after_an_email_change(
    client: AsyncClient, mail_outbox: MailOutbox
) -> None:
    registered = await client.post(
        "/api/v1/auth/register",
        json={"email": "bob@example.com", "username": "bob", "password": DEFAULT_PASSWORD},
    )
    assert registered.status_code == 202
    message = await mail_outbox.wait()
    token = token_from_link(mail_outbox.links(message)[0])
    headers = bearer((await login(client, "bob"))["access_token"])
    moved = await client.patch(
        ME,
        json={"email": "not-mine@example.com", "current_password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert moved.status_code == 200

    verified = await client.post("/api/v1/auth/verify-email", json={"token": token})
    assert verified.status_code == 400
    assert verified.headers["content-type"] == "application/problem+json"
    assert (await client.get(ME, headers=headers)).json()["is_verified"] is False

    # Back at the address the link was mailed to (any case), it works again.
    back = await client.patch(
        ME,
        json={"email": "BOB@example.com", "current_password": DEFAULT_PASSWORD},
        headers=headers,
    )
    assert back.status_code == 200
    assert (
        await client.post("/api/v1/auth/verify-email", json={"token": token})
    ).status_code == 204


async def test_reset_link_is_void_after_an_email_change(
    client: AsyncClient, user: User, user_headers: dict[str, str], mail_outbox: MailOutbox
) -> None:
    await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
    message = await mail_outbox.wait()
    token = token_from_link(mail_outbox.links(message)[0])
    moved = await client.patch(
        ME,
        json={"email": "alice@elsewhere.example", "current_password": DEFAULT_PASSWORD},
        headers=user_headers,
    )
    assert moved.status_code == 200
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 400
    await login(client, "alice")  # the password did not change


# --- the per-account sign-in limit counts failures, per account --------------------------------


async def test_successful_sign_ins_do_not_use_up_the_account_limit(
    client: AsyncClient, user: User
) -> None:
    for _ in range(7):  # the limit is 5/minute
        await login(client, "alice")


async def test_failures_by_username_and_by_email_share_one_budget(
    client: AsyncClient, user: User
) -> None:
    logins = ["alice", "alice@example.com", "ALICE", "Alice@Example.com", "alice"]
    for name in logins:
        failed = await client.post(LOGIN_URL, data={"username": name, "password": "nope"})
        assert failed.status_code == 401
    for name in ("alice@example.com", "alice"):
        blocked = await client.post(
            LOGIN_URL, data={"username": name, "password": DEFAULT_PASSWORD}
        )
        assert blocked.status_code == 429
        assert "retry-after" in blocked.headers


async def test_unknown_logins_are_limited_too(client: AsyncClient) -> None:
    statuses = [
        (await client.post(LOGIN_URL, data={"username": "ghost", "password": "x"})).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
