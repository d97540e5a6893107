"""The users endpoints, end to end through HTTP."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, Headers, bearer, login
from tests.support import queued_work_done

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
REFRESH = "/api/v1/auth/refresh"
MakeUser = Callable[..., Awaitable[User]]


async def test_me_shows_the_signed_in_user_without_secrets(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    response = await client.get(ME, headers=user_headers)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(user.id)
    assert body["username"] == "alice"
    assert body["role"] == "user"
    assert "password" not in response.text


async def test_update_me(
    client: AsyncClient, user: User, user_headers: Headers, make_user: MakeUser
) -> None:
    await make_user(username="taken", email="taken@example.com")
    renamed = await client.patch(ME, json={"username": "Alice2"}, headers=user_headers)
    assert renamed.status_code == 200
    assert renamed.json()["username"] == "alice2"
    assert renamed.json()["is_verified"] is True

    moved = await client.patch(
        ME,
        json={"email": "new@example.com", "current_password": DEFAULT_PASSWORD},
        headers=user_headers,
    )
    assert moved.status_code == 200
    assert moved.json()["email"] == "new@example.com"
    assert moved.json()["is_verified"] is False  # a new address must be verified again

    assert (
        await client.patch(ME, json={"username": "TAKEN"}, headers=user_headers)
    ).status_code == 409
    assert (
        await client.patch(
            ME,
            json={"email": "Taken@Example.com", "current_password": DEFAULT_PASSWORD},
            headers=user_headers,
        )
    ).status_code == 409
    assert (await client.patch(ME, json={"role": "admin"}, headers=user_headers)).status_code == 422
    assert (await client.patch(ME, json={"username": "a"}, headers=user_headers)).status_code == 422


async def test_change_password_keeps_this_session_and_ends_the_others(
    app: FastAPI, client: AsyncClient, user: User
) -> None:
    here = await login(client, "alice")
    elsewhere = await login(client, "alice")
    url = f"{ME}/password"
    headers = bearer(here["access_token"])
    wrong = await client.put(
        url,
        json={"current_password": "not-it", "new_password": "another-long-one"},
        headers=headers,
    )
    assert wrong.status_code == 403
    weak = await client.put(
        url, json={"current_password": DEFAULT_PASSWORD, "new_password": "short"}, headers=headers
    )
    assert weak.status_code == 422
    changed = await client.put(
        url,
        json={"current_password": DEFAULT_PASSWORD, "new_password": "another-long-one"},
        headers=headers,
    )
    assert changed.status_code == 204
    await queued_work_done(app)  # the auth module's listener revokes the other sessions

    assert (
        await client.post(REFRESH, json={"refresh_token": elsewhere["refresh_token"]})
    ).status_code == 401
    assert (
        await client.post(REFRESH, json={"refresh_token": here["refresh_token"]})
    ).status_code == 200
    old = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert old.status_code == 401
    await login(client, "alice", "another-long-one")


async def test_delete_me_needs_the_password_soft_deletes_ends_sessions_and_frees_the_email(
    client: AsyncClient, user: User, session: AsyncSession
) -> None:
    tokens = await login(client, "alice")
    other = await login(client, "alice")
    headers = bearer(tokens["access_token"])
    assert (await client.delete(ME, headers=headers)).status_code == 422  # no password
    wrong = await client.request(
        "DELETE", ME, json={"current_password": "not-my-password"}, headers=headers
    )
    assert wrong.status_code == 403
    deleted = await client.request(
        "DELETE", ME, json={"current_password": DEFAULT_PASSWORD}, headers=headers
    )
    assert deleted.status_code == 204
    # Every session ended in the deletion's own transaction: nothing waits on the queue.
    assert (await client.get(ME, headers=bearer(other["access_token"]))).status_code == 401
    assert (await client.get(ME, headers=headers)).status_code == 401
    assert (
        await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 401
    gone = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert gone.status_code == 401

    again = await client.post(
        "/api/v1/auth/register",
        json={
            "email": "ALICE@example.com",
            "username": "alice-again",
            "password": DEFAULT_PASSWORD,
        },
    )
    assert again.status_code == 202
    assert (
        await session.scalar(
            select(func.count()).select_from(User).where(User.username == "alice-again")
        )
        == 1
    )


async def test_admin_only_endpoints_are_403_and_other_users_404_for_users(
    client: AsyncClient, user: User, admin: User, user_headers: Headers
) -> None:
    assert (await client.get(USERS, headers=user_headers)).status_code == 403
    # Someone else's account answers exactly as a missing one: ids are not confirmed.
    missing = f"{USERS}/{uuid.uuid4()}"
    for url in (f"{USERS}/{admin.id}", missing):
        assert (await client.get(url, headers=user_headers)).status_code == 404
        assert (
            await client.patch(url, json={"username": "x1y"}, headers=user_headers)
        ).status_code == 404
        assert (await client.delete(url, headers=user_headers)).status_code == 404
    own = await client.patch(f"{USERS}/{user.id}", json={"role": "admin"}, headers=user_headers)
    assert own.status_code == 403
    assert (await client.get(f"{USERS}/{user.id}", headers=user_headers)).status_code == 200
    assert (await client.get(USERS)).status_code == 401


async def test_admin_manages_users(client: AsyncClient, user: User, admin_headers: Headers) -> None:
    shown = await client.get(f"{USERS}/{user.id}", headers=admin_headers)
    assert shown.status_code == 200
    promoted = await client.patch(
        f"{USERS}/{user.id}", json={"role": "admin", "is_verified": False}, headers=admin_headers
    )
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    assert promoted.json()["is_verified"] is False
    assert (await client.delete(f"{USERS}/{user.id}", headers=admin_headers)).status_code == 204
    missing = await client.get(f"{USERS}/{user.id}", headers=admin_headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    assert (await client.get(f"{USERS}/{uuid.uuid4()}", headers=admin_headers)).status_code == 404
    assert (await client.get(f"{USERS}/not-a-uuid", headers=admin_headers)).status_code == 422


async def test_list_sorts_filters_and_pages(
    client: AsyncClient, admin_headers: Headers, make_user: MakeUser
) -> None:
    for name in ("carol", "dave", "erin", "frank"):
        await make_user(username=name, email=f"{name}@example.com", is_active=name != "frank")
    page = await client.get(
        USERS, params={"sort": "username", "per_page": 2, "page": 2}, headers=admin_headers
    )
    assert page.status_code == 200
    body = page.json()
    assert body["total"] == 5
    assert body["pages"] == 3
    assert [item["username"] for item in body["items"]] == ["erin", "frank"]
    assert "password" not in page.text

    desc = await client.get(
        USERS, params={"sort": "-username", "per_page": 1}, headers=admin_headers
    )
    assert desc.json()["items"][0]["username"] == "root"

    inactive = await client.get(USERS, params={"filter[is_active]": "false"}, headers=admin_headers)
    assert [item["username"] for item in inactive.json()["items"]] == ["frank"]
    admins = await client.get(USERS, params={"filter[role]": "admin"}, headers=admin_headers)
    assert admins.json()["total"] == 1
    several = await client.get(
        USERS, params={"filter[username][in]": "carol,dave"}, headers=admin_headers
    )
    assert several.json()["total"] == 2


@pytest.mark.parametrize(
    "params",
    [
        {"sort": "password_hash"},
        {"filter[password_hash]": "x"},
        {"filter[role]": "emperor"},
        {"filter[is_active][gt]": "true"},
        {"per_page": "1000"},
        {"page": "0"},
    ],
)
async def test_list_rejects_unlisted_fields_and_bad_values(
    client: AsyncClient, admin_headers: Headers, params: dict[str, str]
) -> None:
    response = await client.get(USERS, params=params, headers=admin_headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"


async def test_self_delete_can_be_disabled(
    client: AsyncClient, user: User, user_headers: Headers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from app.main import create_app  # noqa: F401  (the app is already built; override the dep)
    from app.modules.users.config import UsersSettings, get_users_settings

    app = client._transport.app  # type: ignore[attr-defined]
    app.dependency_overrides[get_users_settings] = lambda: UsersSettings(
        _env_file=None,
        self_delete_allowed=False,
        password_hash_time_cost=1,
        password_hash_memory_kib=1024,
        password_hash_parallelism=1,
    )
    try:
        refused = await client.request(
            "DELETE", ME, json={"current_password": DEFAULT_PASSWORD}, headers=user_headers
        )
        assert refused.status_code == 403
    finally:
        app.dependency_overrides.pop(get_users_settings)


async def test_list_filters_on_dates(
    client: AsyncClient, admin_headers: Headers, make_user: MakeUser
) -> None:
    await make_user(username="carol", email="carol@example.com")
    since = await client.get(
        USERS, params={"filter[created_at][gte]": "2000-01-01T00:00:00Z"}, headers=admin_headers
    )
    assert since.json()["total"] == 2
    future = await client.get(
        USERS, params={"filter[created_at][gt]": "2999-01-01T00:00:00Z"}, headers=admin_headers
    )
    assert future.json()["total"] == 0
