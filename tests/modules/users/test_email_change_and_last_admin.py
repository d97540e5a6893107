"""Regressions of the security review: an email change needs the password, and the last
active administrator cannot demote, deactivate or delete themselves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from httpx import AsyncClient

from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, bearer, login

ME = "/api/v1/users/me"
USERS = "/api/v1/users"
MakeUser = Callable[..., Awaitable[User]]


async def test_changing_my_email_needs_my_password(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    missing = await client.patch(ME, json={"email": "thief@example.com"}, headers=user_headers)
    assert missing.status_code == 422
    assert missing.headers["content-type"] == "application/problem+json"
    assert missing.json()["errors"][0]["loc"] == ["body", "current_password"]

    wrong = await client.patch(
        ME,
        json={"email": "thief@example.com", "current_password": "not-the-password"},
        headers=user_headers,
    )
    assert wrong.status_code == 403
    assert wrong.json()["detail"] == "The current password is wrong"
    assert (await client.get(ME, headers=user_headers)).json()["email"] == "alice@example.com"

    # The same address, or only a username change, needs no password.
    same = await client.patch(
        ME, json={"email": "alice@example.com", "username": "alice2"}, headers=user_headers
    )
    assert same.status_code == 200
    right = await client.patch(
        ME,
        json={"email": "alice@new.example", "current_password": DEFAULT_PASSWORD},
        headers=user_headers,
    )
    assert right.status_code == 200
    assert right.json()["email"] == "alice@new.example"
    assert "current_password" not in right.text


async def test_an_admin_changing_their_own_email_by_id_needs_the_password_too(
    client: AsyncClient, user: User, admin: User, admin_headers: Headers
) -> None:
    own = await client.patch(
        f"{USERS}/{admin.id}", json={"email": "boss@example.com"}, headers=admin_headers
    )
    assert own.status_code == 422
    other = await client.patch(
        f"{USERS}/{user.id}", json={"email": "alice@moved.example"}, headers=admin_headers
    )
    assert other.status_code == 200


async def test_the_last_active_admin_cannot_remove_themselves(
    client: AsyncClient, admin: User, admin_headers: Headers, make_user: MakeUser
) -> None:
    await make_user(username="retired", email="retired@example.com", role="admin", is_active=False)
    url = f"{USERS}/{admin.id}"
    for body in ({"role": "user"}, {"is_active": False}):
        refused = await client.patch(url, json=body, headers=admin_headers)
        assert refused.status_code == 409, body
        assert refused.headers["content-type"] == "application/problem+json"
        assert "last active administrator" in refused.json()["detail"]
    assert (await client.delete(url, headers=admin_headers)).status_code == 422  # no password
    by_id = await client.request(
        "DELETE", url, json={"current_password": DEFAULT_PASSWORD}, headers=admin_headers
    )
    assert by_id.status_code == 409
    with_password = {"current_password": DEFAULT_PASSWORD}
    refused = await client.request("DELETE", ME, json=with_password, headers=admin_headers)
    assert refused.status_code == 409
    me = (await client.get(ME, headers=admin_headers)).json()
    assert me["role"] == "admin"
    assert me["is_active"] is True
    # Changes that keep the admin an admin are fine.
    assert (
        await client.patch(url, json={"role": "admin", "username": "root2"}, headers=admin_headers)
    ).status_code == 200


async def test_an_admin_may_step_down_when_another_remains(
    client: AsyncClient, admin: User, admin_headers: Headers, make_user: MakeUser
) -> None:
    await make_user(username="second", email="second@example.com", role="admin")
    second_headers = bearer((await login(client, "second"))["access_token"])
    demoted = await client.patch(
        f"{USERS}/{admin.id}", json={"role": "user"}, headers=admin_headers
    )
    assert demoted.status_code == 200
    assert demoted.json()["role"] == "user"
    # Now "second" is the last one.
    last = await client.request(
        "DELETE", ME, json={"current_password": DEFAULT_PASSWORD}, headers=second_headers
    )
    assert last.status_code == 409
