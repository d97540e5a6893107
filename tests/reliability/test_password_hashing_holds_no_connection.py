"""No request holds a pooled database connection while argon2id hashes or verifies a password.

A hash takes 100 ms or more in production; a request holding a connection meanwhile starves
the pool under a burst (registrations, sign-ins). Every hash and verification below is
observed, and the pool must have no connection checked out while it runs.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient

from app.core.queue import broker
from app.core.security import PasswordHasher
from app.modules.users.models import User
from tests.conftest import MailOutbox
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, token_from_link

NEW_PASSWORD = "another-long-password"


@pytest.fixture
def hashing_checkouts(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of connections checked out of the pool at each hash or verification."""
    pool = app.state.database.engine.pool
    seen: list[int] = []
    real_hash, real_verify = PasswordHasher.hash, PasswordHasher.verify

    async def hash_(self: PasswordHasher, password: str) -> str:
        seen.append(pool.checkedout())
        return await real_hash(self, password)

    async def verify(self: PasswordHasher, password: str, password_hash: str) -> Any:
        seen.append(pool.checkedout())
        return await real_verify(self, password, password_hash)

    monkeypatch.setattr(PasswordHasher, "hash", hash_)
    monkeypatch.setattr(PasswordHasher, "verify", verify)
    return seen


async def test_registration_hashes_with_no_connection_held(
    client: AsyncClient, hashing_checkouts: list[int]
) -> None:
    body = {"email": "new@example.com", "username": "newcomer", "password": "long-password-1"}
    assert (await client.post("/api/v1/auth/register", json=body)).status_code == 202
    assert hashing_checkouts == [0]


async def test_sign_in_verifies_with_no_connection_held(
    client: AsyncClient, user: User, hashing_checkouts: list[int]
) -> None:
    for password in (DEFAULT_PASSWORD, "wrong-password"):
        await client.post(
            "/api/v1/auth/login", data={"username": user.username, "password": password}
        )
    await client.post("/api/v1/auth/login", data={"username": "nobody", "password": "x" * 12})
    assert len(hashing_checkouts) >= 3
    assert set(hashing_checkouts) == {0}


async def test_password_and_email_changes_hash_with_no_connection_held(
    client: AsyncClient, user_headers: Headers, hashing_checkouts: list[int]
) -> None:
    changed = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=user_headers,
    )
    assert changed.status_code == 204, changed.text
    await broker.wait_all()  # the queued notice mail is rendered and sent meanwhile
    moved = await client.patch(
        "/api/v1/users/me",
        json={"email": "moved@example.com", "current_password": NEW_PASSWORD},
        headers=user_headers,
    )
    assert moved.status_code == 200, moved.text
    assert len(hashing_checkouts) == 3  # verify + hash, then verify
    assert set(hashing_checkouts) == {0}


async def test_password_reset_hashes_with_no_connection_held(
    client: AsyncClient, user: User, mail_outbox: MailOutbox, hashing_checkouts: list[int]
) -> None:
    await client.post("/api/v1/auth/password/forgot", json={"email": user.email})
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    assert hashing_checkouts == [0]  # the new password's hash
