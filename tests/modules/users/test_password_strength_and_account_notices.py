"""New passwords must be hard to guess and not made of the account's own names; changes to an
account's email or password are told to its address; failed password checks are security
events that name the targeted account."""

from __future__ import annotations

import logging

import pytest
from httpx import AsyncClient

from app.modules.users.models import User
from tests.conftest import MailOutbox
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, Headers

REGISTER = "/api/v1/auth/register"
ME = "/api/v1/users/me"


@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("password123456", "too weak"),  # a common password, whatever its length
        ("qwertyuiop1234", "too weak"),  # a keyboard walk
        ("carol-secret-2030", "username"),
        ("xyz-carolyn-mail-99", "username"),  # the name of the email address
    ],
)
async def test_weak_or_self_made_passwords_are_refused_at_registration(
    client: AsyncClient, password: str, why: str
) -> None:
    body = {"email": "carolyn.mail@example.com", "username": "carol", "password": password}
    response = await client.post(REGISTER, json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert why in response.json()["errors"][0]["msg"]


async def test_a_strong_passphrase_is_accepted(client: AsyncClient) -> None:
    body = {"email": "c@example.com", "username": "carol", "password": "orbit-lantern-quietly"}
    assert (await client.post(REGISTER, json=body)).status_code == 202


async def test_a_password_change_to_a_weak_one_is_refused(
    client: AsyncClient, user_headers: Headers
) -> None:
    response = await client.put(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "alice12345678"},
        headers=user_headers,
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "new_password"]


async def test_an_email_change_is_told_to_the_old_address(
    client: AsyncClient, user: User, user_headers: Headers, mail_outbox: MailOutbox
) -> None:
    moved = await client.patch(
        ME,
        json={"email": "elsewhere@example.com", "current_password": DEFAULT_PASSWORD},
        headers=user_headers,
    )
    assert moved.status_code == 200
    notice = await mail_outbox.wait()
    assert notice["To"] == "alice@example.com"
    assert "email address" in notice["Subject"]
    assert "elsewhere@example.com" in notice.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_a_password_change_is_told_to_the_address(
    client: AsyncClient, user: User, user_headers: Headers, mail_outbox: MailOutbox
) -> None:
    changed = await client.put(
        f"{ME}/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": "orbit-lantern-quietly"},
        headers=user_headers,
    )
    assert changed.status_code == 204
    notice = await mail_outbox.wait()
    assert notice["To"] == "alice@example.com"
    assert "password" in notice["Subject"]


async def test_a_failed_sign_in_is_a_security_event_naming_the_account(
    client: AsyncClient, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="app.security"):
        await client.post(LOGIN_URL, data={"username": "alice", "password": "not-the-one"})
    events = [
        record.msg
        for record in caplog.records
        if record.name == "app.security" and isinstance(record.msg, dict)
    ]
    [failed] = [event for event in events if event["event"] == "sign_in_failed"]
    assert failed["security_event"] is True
    assert failed["login"] == "alice"
    [checked] = [event for event in events if event["event"] == "password_check_failed"]
    assert checked["security_event"] is True
    assert checked["user_id"] == str(user.id)
    assert "not-the-one" not in str(events)
