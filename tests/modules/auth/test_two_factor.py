"""Two-factor sign-in (TOTP) end to end through HTTP: enrolment, the second step of a sign-in,
recovery codes, disabling, and administrators required to enrol."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pyotp
import pytest
import time_machine
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.auth.two_factor import services as two_factor_services
from app.modules.auth.two_factor.config import (
    TwoFactorSettings,
    get_two_factor_settings,
    load_two_factor_settings,
)
from app.modules.auth.two_factor.models import RecoveryCode
from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, Headers, bearer, login

TWO_FA = "/api/v1/auth/2fa"
KEYS = "/api/v1/auth/api-keys"
REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"
START = datetime(2030, 1, 1, 9, 0, 5, tzinfo=UTC)  # five seconds into a 30-second step
STEP = timedelta(seconds=30)
PASSWORD = {"current_password": DEFAULT_PASSWORD}


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def two_factor_settings(app: FastAPI) -> Iterator[Callable[..., TwoFactorSettings]]:
    def override(**values: Any) -> TwoFactorSettings:
        configured = TwoFactorSettings(_env_file=None, **values)
        app.dependency_overrides[get_two_factor_settings] = lambda: configured
        return configured

    yield override
    app.dependency_overrides.pop(get_two_factor_settings, None)


def code_at(secret: str, when: datetime) -> str:
    return pyotp.TOTP(secret).at(when)


async def enrol(client: AsyncClient, headers: Headers) -> tuple[str, list[str]]:
    """Enrol and confirm at the current (frozen) time: the secret and the recovery codes."""
    enrolment = await client.post(f"{TWO_FA}/enrol", headers=headers, json=PASSWORD)
    assert enrolment.status_code == 200, enrolment.text
    secret = enrolment.json()["secret"]
    confirmed = await client.post(
        f"{TWO_FA}/confirm", headers=headers, json={"code": pyotp.TOTP(secret).now()}
    )
    assert confirmed.status_code == 200, confirmed.text
    codes: list[str] = confirmed.json()["recovery_codes"]
    return secret, codes


async def challenge(client: AsyncClient, username: str = "alice") -> str:
    response = await client.post(
        LOGIN_URL, data={"username": username, "password": DEFAULT_PASSWORD}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["second_factor_required"] is True
    assert body["method"] == "totp"
    assert "access_token" not in body
    assert "refresh_token" not in body
    token: str = body["challenge"]
    return token


async def second_step(client: AsyncClient, token: str, code: str) -> Any:
    return await client.post(f"{TWO_FA}/login", json={"challenge": token, "code": code})


async def test_enrol_confirm_then_sign_in_takes_a_code_once(
    clock: time_machine.Traveller,
    client: AsyncClient,
    user: User,
    user_headers: Headers,
    session: AsyncSession,
) -> None:
    no_password = await client.post(f"{TWO_FA}/enrol", headers=user_headers, json={})
    assert no_password.status_code == 422
    wrong_password = await client.post(
        f"{TWO_FA}/enrol", headers=user_headers, json={"current_password": "not-it"}
    )
    assert wrong_password.status_code == 403
    assert wrong_password.json()["detail"] == "The password is wrong"
    enrolment = await client.post(f"{TWO_FA}/enrol", headers=user_headers, json=PASSWORD)
    assert enrolment.status_code == 200
    assert enrolment.headers["cache-control"] == "no-store"
    body = enrolment.json()
    secret = body["secret"]
    assert pyotp.parse_uri(body["otpauth_uri"]).secret == secret
    assert body["otpauth_uri"].startswith("otpauth://totp/app:alice%40example.com?")
    assert body["qr_svg"].startswith("<svg")
    assert "</svg>" in body["qr_svg"]
    status = await client.get(TWO_FA, headers=user_headers)
    assert status.json() == {"enabled": False, "pending": True, "recovery_codes_left": 0}
    # Not on yet: signing in still gives tokens.
    assert "access_token" in await login(client, "alice")

    wrong = await client.post(f"{TWO_FA}/confirm", headers=user_headers, json={"code": "000000"})
    assert wrong.status_code == 403
    assert wrong.headers["content-type"] == "application/problem+json"
    code = code_at(secret, START)
    confirmed = await client.post(f"{TWO_FA}/confirm", headers=user_headers, json={"code": code})
    assert confirmed.status_code == 200
    codes = confirmed.json()["recovery_codes"]
    assert len(codes) == len(set(codes)) == 10
    stored = (await session.scalars(select(RecoveryCode.code_hash))).all()
    assert len(stored) == 10
    assert not set(stored) & {c.replace("-", "") for c in codes}
    status = await client.get(TWO_FA, headers=user_headers)
    assert status.json() == {"enabled": True, "pending": False, "recovery_codes_left": 10}

    token = await challenge(client)
    # The code that confirmed the enrolment was spent: the same step is refused (no replay).
    replayed = await second_step(client, token, code)
    assert replayed.status_code == 401
    clock.shift(STEP)
    fresh = code_at(secret, START + STEP)
    tokens = await second_step(client, token, fresh)
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    # A browser gets the same session cookies as from a one-step sign-in (AUTH_TRANSPORT=both):
    # the refresh cookie goes to the refresh route's folder, not the second step's.
    cookies = tokens.headers.get_list("set-cookie")
    [refresh_cookie] = [line for line in cookies if line.startswith("__Secure-refresh_token=")]
    assert "Path=/api/v1/auth;" in refresh_cookie
    assert "HttpOnly" in refresh_cookie
    assert any(line.startswith("__Host-access_token=") for line in cookies)
    me = await client.get(ME, headers=bearer(tokens.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    # Accepted once: the same code again, even with a new challenge, is refused.
    again = await second_step(client, await challenge(client), fresh)
    assert again.status_code == 401
    assert again.json()["detail"] == "The code is wrong or was already used"


async def test_one_step_of_clock_skew_either_way_and_no_more(
    clock: time_machine.Traveller, client: AsyncClient, user: User, user_headers: Headers
) -> None:
    secret, _ = await enrol(client, user_headers)
    clock.shift(10 * STEP)
    now = START + 10 * STEP
    token = await challenge(client)
    assert (await second_step(client, token, code_at(secret, now - 2 * STEP))).status_code == 401
    assert (await second_step(client, token, code_at(secret, now + 2 * STEP))).status_code == 401
    behind = await second_step(client, token, code_at(secret, now - STEP))
    assert behind.status_code == 200
    ahead = await second_step(client, await challenge(client), code_at(secret, now + STEP))
    assert ahead.status_code == 200
    # A later step was accepted: an earlier one, still inside the window, is now refused.
    current = await second_step(client, await challenge(client), code_at(secret, now))
    assert current.status_code == 401
    assert current.json()["detail"] == "The code is wrong or was already used"


async def test_a_challenge_signs_in_once(
    clock: time_machine.Traveller, client: AsyncClient, user: User, user_headers: Headers
) -> None:
    secret, codes = await enrol(client, user_headers)
    token = await challenge(client)
    clock.shift(STEP)
    first = await second_step(client, token, code_at(secret, START + STEP))
    assert first.status_code == 200, first.text
    # The same challenge with another good code (a recovery code, a later step) is spent.
    assert (await second_step(client, token, codes[0])).status_code == 401
    clock.shift(STEP)
    later = await second_step(client, token, code_at(secret, START + 2 * STEP))
    assert later.status_code == 401
    assert "sign in again" in later.json()["detail"]
    # Neither code was used up by the refusals: both work with a new challenge.
    assert (await second_step(client, await challenge(client), codes[0])).status_code == 200
    fresh = await second_step(client, await challenge(client), code_at(secret, START + 2 * STEP))
    assert fresh.status_code == 200


async def test_recovery_codes_work_once_each(
    clock: time_machine.Traveller, client: AsyncClient, user: User, user_headers: Headers
) -> None:
    _, codes = await enrol(client, user_headers)
    token = await challenge(client)
    # Dashes, spaces and case do not matter.
    used = await second_step(client, token, codes[0].upper().replace("-", " "))
    assert used.status_code == 200, used.text
    reused = await second_step(client, await challenge(client), codes[0])
    assert reused.status_code == 401
    assert (await second_step(client, token, "ffffffffff")).status_code == 401
    status = await client.get(TWO_FA, headers=user_headers)
    assert status.json()["recovery_codes_left"] == 9


async def test_codes_are_rate_limited_per_account(
    clock: time_machine.Traveller,
    client: AsyncClient,
    user: User,
    user_headers: Headers,
    two_factor_settings: Callable[..., TwoFactorSettings],
) -> None:
    two_factor_settings(two_factor_rate_limit="3/minute")
    secret, _ = await enrol(client, user_headers)
    token = await challenge(client)
    for _ in range(3):
        assert (await second_step(client, token, "999999")).status_code == 401
    clock.shift(STEP)
    # The budget is the account's, not the challenge's: a new sign-in does not reset it.
    limited = await second_step(client, await challenge(client), code_at(secret, START + STEP))
    assert limited.status_code == 429
    assert "retry-after" in limited.headers


async def test_codes_have_a_long_window_budget_per_account_too(
    clock: time_machine.Traveller,
    client: AsyncClient,
    user: User,
    user_headers: Headers,
    two_factor_settings: Callable[..., TwoFactorSettings],
) -> None:
    two_factor_settings(two_factor_rate_limit="100/minute", two_factor_hourly_rate_limit="4/hour")
    secret, _ = await enrol(client, user_headers)  # one attempt, right: given back
    elapsed = timedelta()
    # A patient guesser: a few wrong codes, minutes apart, each with a new challenge.
    for _ in range(4):
        elapsed += timedelta(minutes=2)
        clock.shift(timedelta(minutes=2))
        assert (await second_step(client, await challenge(client), "999999")).status_code == 401
    elapsed += STEP
    clock.shift(STEP)
    limited = await second_step(client, await challenge(client), code_at(secret, START + elapsed))
    assert limited.status_code == 429
    # The hour over, the owner's right code works.
    elapsed += timedelta(hours=1)
    clock.shift(timedelta(hours=1))
    ok = await second_step(client, await challenge(client), code_at(secret, START + elapsed))
    assert ok.status_code == 200, ok.text


async def test_challenges_are_checked(
    clock: time_machine.Traveller,
    client: AsyncClient,
    user: User,
    user_headers: Headers,
    session: AsyncSession,
) -> None:
    secret, _ = await enrol(client, user_headers)
    token = await challenge(client)
    clock.shift(STEP)
    code = code_at(secret, START + STEP)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert (await second_step(client, tampered, code)).status_code == 401
    # An access token is no challenge, and a challenge is no access token.
    access = user_headers["Authorization"].removeprefix("Bearer ")
    assert (await second_step(client, access, code)).status_code == 401
    assert (await client.get(ME, headers=bearer(token))).status_code == 401
    # A challenge dies with time...
    clock.shift(timedelta(minutes=6))
    expired = await second_step(client, token, code_at(secret, START + STEP + timedelta(minutes=6)))
    assert expired.status_code == 401
    assert "sign in again" in expired.json()["detail"]
    # ... and when the account changes after its password was checked.
    token = await challenge(client)
    stored = await session.get(User, user.id)
    assert stored is not None
    stored.username = "alice2"
    await session.commit()
    clock.shift(STEP)
    later = START + 2 * STEP + timedelta(minutes=6)
    assert (await second_step(client, token, code_at(secret, later))).status_code == 401


async def test_disable_needs_the_password_and_a_code(
    clock: time_machine.Traveller, client: AsyncClient, user: User, user_headers: Headers
) -> None:
    secret, codes = await enrol(client, user_headers)
    clock.shift(STEP)
    code = code_at(secret, START + STEP)
    url = f"{TWO_FA}/disable"
    wrong_password = await client.post(
        url, headers=user_headers, json={"password": "not-the-password", "code": code}
    )
    assert wrong_password.status_code == 403
    wrong_code = await client.post(
        url, headers=user_headers, json={"password": DEFAULT_PASSWORD, "code": "123456"}
    )
    assert wrong_code.status_code == 403
    off = await client.post(
        url, headers=user_headers, json={"password": DEFAULT_PASSWORD, "code": code}
    )
    assert off.status_code == 204
    assert "access_token" in await login(client, "alice")
    status = await client.get(TWO_FA, headers=user_headers)
    assert status.json() == {"enabled": False, "pending": False, "recovery_codes_left": 0}
    # Enrolling twice is refused while it is on; a recovery code can also turn it off.
    secret, codes = await enrol(client, user_headers)
    again = await client.post(f"{TWO_FA}/enrol", headers=user_headers, json=PASSWORD)
    assert again.status_code == 409
    off = await client.post(
        url, headers=user_headers, json={"password": DEFAULT_PASSWORD, "code": codes[3]}
    )
    assert off.status_code == 204


async def test_confirm_without_enrolment_is_a_conflict(
    client: AsyncClient, user_headers: Headers
) -> None:
    response = await client.post(f"{TWO_FA}/confirm", headers=user_headers, json={"code": "123456"})
    assert response.status_code == 409
    assert (await client.post(f"{TWO_FA}/enrol", json=PASSWORD)).status_code == 401


async def test_administrators_must_enrol_when_required(
    client: AsyncClient,
    admin: User,
    user: User,
    clock: time_machine.Traveller,
    two_factor_settings: Callable[..., TwoFactorSettings],
) -> None:
    two_factor_settings(admin_2fa_required=True)
    # Other accounts are not concerned.
    assert "access_token" in await login(client, "alice")
    first = await client.post(LOGIN_URL, data={"username": "root", "password": DEFAULT_PASSWORD})
    body = first.json()
    assert body["second_factor_required"] is True
    assert body["method"] == "enrol"
    assert "access_token" not in body
    # The enrolment challenge is good for enrolling only: no code step, no API access.
    assert (await second_step(client, body["challenge"], "123456")).status_code == 401
    assert (await client.get(ME, headers=bearer(body["challenge"]))).status_code == 401

    enrolment = await client.post(f"{TWO_FA}/enrol/required", json={"challenge": body["challenge"]})
    assert enrolment.status_code == 200, enrolment.text
    secret = enrolment.json()["secret"]
    done = await client.post(
        f"{TWO_FA}/confirm/required",
        json={"challenge": body["challenge"], "code": code_at(secret, START)},
    )
    assert done.status_code == 200, done.text
    assert len(done.json()["recovery_codes"]) == 10
    # The enrolment challenge signed in once: it starts no second enrolment.
    reused = await client.post(f"{TWO_FA}/enrol/required", json={"challenge": body["challenge"]})
    assert reused.status_code == 401
    me = await client.get(ME, headers=bearer(done.json()["tokens"]["access_token"]))
    assert me.status_code == 200
    assert me.json()["role"] == "admin"
    # From now on the administrator signs in with a code like anyone enrolled.
    token = await challenge(client, "root")
    clock.shift(STEP)
    assert (await second_step(client, token, code_at(secret, START + STEP))).status_code == 200


@pytest.fixture
def admin_2fa_required(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """AUTH_ADMIN_2FA_REQUIRED=true for the routes and for the API key check, which reads the
    settings outside any request dependency."""
    monkeypatch.setenv("AUTH_ADMIN_2FA_REQUIRED", "true")
    load_two_factor_settings.cache_clear()
    yield
    load_two_factor_settings.cache_clear()


async def test_an_administrator_without_two_factor_keeps_no_session_or_key_when_required(
    request: pytest.FixtureRequest,
    clock: time_machine.Traveller,
    client: AsyncClient,
    admin: User,
    user: User,
) -> None:
    # Signed in, with a key, before the requirement was turned on.
    tokens = await login(client, "root")
    headers = bearer(tokens["access_token"])
    key_body = {"name": "ops", "scopes": ["read", "write"], **PASSWORD}
    key = (await client.post(KEYS, json=key_body, headers=headers)).json()["key"]
    other = await login(client, "alice")
    other_key = (
        await client.post(KEYS, json=key_body, headers=bearer(other["access_token"]))
    ).json()["key"]

    request.getfixturevalue("admin_2fa_required")
    refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 403
    assert refreshed.headers["content-type"] == "application/problem+json"
    assert "sign in again" in refreshed.json()["detail"]
    used = await client.get(ME, headers={"X-API-Key": key})
    assert used.status_code == 403
    assert "two-factor" in used.json()["detail"]
    made = await client.post(KEYS, json=key_body, headers=headers)
    assert made.status_code == 403
    # Other accounts are not concerned.
    assert (await client.get(ME, headers={"X-API-Key": other_key})).status_code == 200
    again = await client.post(REFRESH, json={"refresh_token": other["refresh_token"]})
    assert again.status_code == 200

    # Once enrolled, the administrator's session refreshes and the key works again.
    await enrol(client, headers)
    assert (await client.get(ME, headers={"X-API-Key": key})).status_code == 200
    assert (await client.post(KEYS, json=key_body, headers=headers)).status_code == 201
    refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    assert refreshed.status_code == 200


async def test_two_accounts_may_draw_the_same_recovery_codes(
    clock: time_machine.Traveller,
    client: AsyncClient,
    user: User,
    user_headers: Headers,
    make_user: Callable[..., Awaitable[User]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 40 random bits each: rare, but over many accounts it happens; it is no error.
    drawn = iter([f"{n:05x}-00000" for n in range(10)] * 2)
    monkeypatch.setattr(two_factor_services, "_new_recovery_code", lambda: next(drawn))
    await make_user(email="bob@example.com", username="bob")
    bob_headers = bearer((await login(client, "bob"))["access_token"])
    _, alice_codes = await enrol(client, user_headers)
    _, bob_codes = await enrol(client, bob_headers)
    assert alice_codes == bob_codes
    # Each account spends its own.
    assert (await second_step(client, await challenge(client), alice_codes[0])).status_code == 200
    assert (
        await second_step(client, await challenge(client, "bob"), bob_codes[0])
    ).status_code == 200
    assert (await client.get(TWO_FA, headers=bob_headers)).json()["recovery_codes_left"] == 9
