"""API keys for machine clients: created by a signed-in user, shown once, stored hashed, used
as a bearer token or in X-API-Key with their own scopes, revocable, expiring, never good for
changing credentials."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import AuthTransport
from app.modules.auth.api_keys.models import ApiKey
from app.modules.auth.api_keys.service import MAX_LIVE_KEYS
from app.modules.users.models import User
from tests.conftest import MailOutbox, Services
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, app_with, bearer, token_from_link
from tests.support import http_client, queued_work_done

KEYS = "/api/v1/auth/api-keys"
NEW_PASSWORD = "a-new-long-password-1"
ME = "/api/v1/users/me"
ORGS = "/api/v1/organizations"
TWO_FA = "/api/v1/auth/2fa"
PASSWORD = {"current_password": DEFAULT_PASSWORD}


async def _create(
    client: AsyncClient, headers: Headers, *, scopes: list[str] | None = None, **extra: Any
) -> dict[str, Any]:
    body = {"name": "ci deploy", "scopes": scopes or ["read", "write"], **PASSWORD, **extra}
    response = await client.post(KEYS, json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _key(key: str) -> Headers:
    return {"X-API-Key": key}


async def test_a_key_is_shown_once_and_stored_as_a_digest_under_its_prefix(
    client: AsyncClient, user: User, user_headers: Headers, session: AsyncSession
) -> None:
    response = await client.post(
        KEYS, json={"name": "ci deploy", "scopes": ["read"], "expires_in_days": 30, **PASSWORD},
        headers=user_headers,
    )  # fmt: skip
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    created = response.json()
    assert created["name"] == "ci deploy"
    assert created["scopes"] == ["read"]
    assert created["key"].startswith(created["prefix"] + "_")
    expires = datetime.fromisoformat(created["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)
    stored = (await session.execute(select(ApiKey))).scalar_one()
    assert stored.lookup == created["prefix"]
    assert stored.key_hash == hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in str(
        (await session.execute(select(ApiKey.__table__))).one()._asdict()
    )
    listed = (await client.get(KEYS, headers=user_headers)).json()
    assert listed["total"] == 1
    assert listed["items"][0]["prefix"] == created["prefix"]
    assert "key" not in listed["items"][0]


async def test_a_key_signs_in_as_a_bearer_token_or_in_x_api_key_and_records_its_use(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    created = await _create(client, user_headers)
    for headers in (bearer(created["key"]), _key(created["key"])):
        me = await client.get(ME, headers=headers)
        assert me.status_code == 200, me.text
        assert me.json()["id"] == str(user.id)
    listed = (await client.get(KEYS, headers=user_headers)).json()["items"][0]
    assert listed["last_used_at"] is not None
    # Recorded to the minute: a busy key is not a write per request.
    assert datetime.fromisoformat(listed["last_used_at"]) <= datetime.now(UTC)


async def test_a_read_key_cannot_change_anything_and_a_write_key_can(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    read = await _create(client, user_headers, scopes=["read"])
    write = await _create(client, user_headers, scopes=["write"])
    path = f"/api/v1/users/{user.id}"
    refused = await client.patch(path, json={"username": "bob"}, headers=_key(read["key"]))
    assert refused.status_code == 403
    assert "write scope" in refused.json()["detail"]
    # A write-only key does not read.
    assert (await client.get(path, headers=_key(write["key"]))).status_code == 403
    changed = await client.patch(path, json={"username": "bob"}, headers=_key(write["key"]))
    assert changed.status_code == 200, changed.text


async def test_a_revoked_key_stops_working_at_once(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    created = await _create(client, user_headers)
    assert (await client.get(ME, headers=_key(created["key"]))).status_code == 200
    revoked = await client.delete(f"{KEYS}/{created['id']}", headers=user_headers)
    assert revoked.status_code == 204
    assert (await client.get(ME, headers=_key(created["key"]))).status_code == 401
    assert (await client.get(KEYS, headers=user_headers)).json()["total"] == 0
    again = await client.delete(f"{KEYS}/{created['id']}", headers=user_headers)
    assert again.status_code == 404


async def test_an_expired_key_is_refused(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    created = await _create(client, user_headers, expires_in_days=1)
    with time_machine.travel(datetime.now(UTC) + timedelta(days=1, minutes=1), tick=False):
        response = await client.get(ME, headers=_key(created["key"]))
    assert response.status_code == 401


async def test_a_wrong_or_forged_key_is_refused(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    created = await _create(client, user_headers)
    forged = created["prefix"] + "_" + "A" * 43  # the right prefix, another secret
    for key in (forged, created["key"] + "x", "ak_nothing", "not-a-key"):
        assert (await client.get(ME, headers=_key(key))).status_code == 401, key
        assert (await client.get(ME, headers=bearer(key))).status_code == 401, key


async def test_a_key_of_an_account_no_longer_active_is_refused(
    client: AsyncClient, user: User, user_headers: Headers, session: AsyncSession
) -> None:
    created = await _create(client, user_headers)
    await session.execute(update(User).where(User.id == user.id).values(is_active=False))
    await session.commit()
    assert (await client.get(ME, headers=_key(created["key"]))).status_code == 401


async def test_keys_never_work_where_credentials_or_sessions_change(
    client: AsyncClient, user: User, user_headers: Headers, admin: User
) -> None:
    created = await _create(client, user_headers)
    key = _key(created["key"])
    org = await client.post(ORGS, json={"name": "Acme", "slug": "acme"}, headers=user_headers)
    assert org.status_code == 201, org.text
    in_org = {**key, "X-Organization": "acme"}
    password = {"current_password": DEFAULT_PASSWORD}
    attempts = [
        ("PUT", f"{ME}/password", {"current_password": DEFAULT_PASSWORD, "new_password": "x" * 20}),
        ("PATCH", ME, {"email": "mallory@example.com", "current_password": DEFAULT_PASSWORD}),
        ("DELETE", ME, {"current_password": DEFAULT_PASSWORD}),
        ("POST", "/api/v1/auth/logout", None),
        ("POST", "/api/v1/auth/logout-all", None),
        ("POST", KEYS, {"name": "another", "scopes": ["read", "write"], **PASSWORD}),
        ("GET", KEYS, None),
        ("DELETE", f"{KEYS}/{created['id']}", None),
        # The same changes of one's own account by id.
        (
            "PATCH",
            f"/api/v1/users/{user.id}",
            {"email": "m@example.com", "current_password": DEFAULT_PASSWORD},
        ),
        ("DELETE", f"/api/v1/users/{user.id}", {"current_password": DEFAULT_PASSWORD}),
        # Two-factor sign-in: a key must not put its own second factor on the account.
        ("POST", f"{TWO_FA}/enrol", password),
        ("POST", f"{TWO_FA}/confirm", {"code": "123456"}),
        ("POST", f"{TWO_FA}/disable", {"password": DEFAULT_PASSWORD, "code": "123456"}),
    ]
    for method, path, body in attempts:
        response = await client.request(method, path, json=body, headers=key)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"] == "API keys cannot be used here: sign in"
    # An organization's owner hands it over or deletes it signed in, not with a key.
    for method, path, body in (
        ("POST", f"{ORGS}/current/transfer", {"user_id": str(admin.id)}),
        ("DELETE", f"{ORGS}/current", None),
    ):
        response = await client.request(method, path, json=body, headers=in_org)
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["detail"] == "API keys cannot be used here: sign in"
    # Nothing changed: the key, the account and its session are as they were.
    assert (await client.get(ME, headers=key)).json()["email"] == "alice@example.com"
    assert (await client.get(KEYS, headers=user_headers)).json()["total"] == 1
    assert (await client.get(TWO_FA, headers=user_headers)).json()["pending"] is False
    current = await client.get(f"{ORGS}/current", headers=in_org)
    assert current.status_code == 200, current.text


async def test_one_cannot_revoke_someone_elses_key(
    client: AsyncClient, user: User, user_headers: Headers, admin_headers: Headers
) -> None:
    created = await _create(client, user_headers)
    response = await client.delete(f"{KEYS}/{created['id']}", headers=admin_headers)
    assert response.status_code == 404
    assert (await client.get(ME, headers=_key(created["key"]))).status_code == 200
    assert (await client.get(KEYS, headers=admin_headers)).json()["total"] == 0


async def test_bad_key_requests_are_422(client: AsyncClient, user_headers: Headers) -> None:
    for body in (
        {"name": "x", "scopes": []},
        {"name": "x", "scopes": ["admin"]},
        {"name": "   ", "scopes": ["read"]},
        {"name": "x", "scopes": ["read"], "expires_in_days": 0},
        {"name": "x", "scopes": ["read"], "expires_in_days": 366},
        {"name": "x", "scopes": ["read"], "key": "mine"},
    ):
        body = {**PASSWORD, **body}
        response = await client.post(KEYS, json=body, headers=user_headers)
        assert response.status_code == 422, body
    listed = await client.get(f"{KEYS}?sort=key_hash", headers=user_headers)
    assert listed.status_code == 422


async def test_live_keys_per_account_are_bounded(
    client: AsyncClient, user: User, user_headers: Headers, session: AsyncSession
) -> None:
    now = datetime.now(UTC)
    session.add_all(
        ApiKey(user_id=user.id, name=f"k{n}", lookup=f"ak_{n:016x}", key_hash="0" * 64,
               scopes=["read"], expires_at=now + timedelta(days=1))
        for n in range(MAX_LIVE_KEYS)
    )  # fmt: skip
    await session.commit()
    refused = await client.post(
        KEYS, json={"name": "one more", "scopes": ["read"], **PASSWORD}, headers=user_headers
    )
    assert refused.status_code == 409


async def test_keys_work_when_sessions_live_in_cookies_only(
    client: AsyncClient, user: User, user_headers: Headers, services: Services
) -> None:
    created = await _create(client, user_headers)
    async with (
        app_with(services, auth_transport=AuthTransport.COOKIE) as cookie_only,
        http_client(cookie_only) as other,
    ):
        assert (await other.get(ME, headers=bearer(created["key"]))).status_code == 200
        assert (await other.get(ME, headers=_key(created["key"]))).status_code == 200
        # A session's access token in a header is not taken there.
        assert (await other.get(ME, headers=user_headers)).status_code == 401


async def test_creating_a_key_needs_the_password(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    body = {"name": "ci deploy", "scopes": ["read"]}
    missing = await client.post(KEYS, json=body, headers=user_headers)
    assert missing.status_code == 422
    wrong = await client.post(
        KEYS, json={**body, "current_password": "not-the-password"}, headers=user_headers
    )
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "The password is wrong"
    assert (await client.get(KEYS, headers=user_headers)).json()["total"] == 0


async def test_a_password_reset_revokes_every_key_at_once(
    client: AsyncClient, user: User, user_headers: Headers, mail_outbox: MailOutbox
) -> None:
    keys = [await _create(client, user_headers) for _ in range(2)]
    await client.post("/api/v1/auth/password/forgot", json={"email": "alice@example.com"})
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204
    # In the reset's own transaction: no queue in between.
    for created in keys:
        assert (await client.get(ME, headers=_key(created["key"]))).status_code == 401


async def test_a_password_change_revokes_every_key(
    app: FastAPI, client: AsyncClient, user: User, user_headers: Headers
) -> None:
    created = await _create(client, user_headers)
    changed = await client.put(
        f"{ME}/password", json={**PASSWORD, "new_password": NEW_PASSWORD}, headers=user_headers
    )
    assert changed.status_code == 204
    await queued_work_done(app)  # the auth module's listener of the change
    assert (await client.get(ME, headers=_key(created["key"]))).status_code == 401
    # The session that made the change stays, and may make new keys with the new password.
    again = await client.post(
        KEYS,
        json={"name": "new", "scopes": ["read"], "current_password": NEW_PASSWORD},
        headers=user_headers,
    )
    assert again.status_code == 201, again.text
    assert (await client.get(ME, headers=_key(again.json()["key"]))).status_code == 200
