"""No request holds a pooled database connection (or an open transaction) while it waits on
something that is not the database: argon2id hashing or verification, Redis (rate limits),
SMTP or the task queue.

A hash takes 100 ms or more in production and a frozen Redis up to REDIS_TIMEOUT; a request
holding a connection meanwhile starves the pool under a burst. Every such wait below is
observed with the pool's count of checked-out connections. The app's outbox relay is stopped
while the requests run, so every connection checked out is a request's. Requests never talk to
SMTP or the queue at all: their mail goes through the outbox.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiosmtplib
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from redis.asyncio.client import Pipeline, Redis

from app.core.outbox import OutboxRelay
from app.core.queue import broker
from app.core.security import PasswordHasher
from app.modules.users.models import User
from tests.conftest import MailOutbox
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, bearer, login, token_from_link
from tests.support import queued_work_done

NEW_PASSWORD = "another-long-password"


class Waits(list[tuple[str, int]]):
    """(what was waited on, connections checked out at that moment), in order."""

    deliver: Callable[[], Awaitable[None]]  # let the outbox's work through, unobserved

    def kinds(self) -> set[str]:
        return {kind for kind, _ in self}

    def held(self) -> list[tuple[str, int]]:
        return [(kind, count) for kind, count in self if count]


@pytest.fixture
async def waits(app: FastAPI, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Waits]:
    pool = app.state.database.engine.pool
    seen = Waits()
    real: dict[str, Callable[..., Awaitable[Any]]] = {
        "hash": PasswordHasher.hash,
        "verify": PasswordHasher.verify,
        "redis": Redis.execute_command,
        "redis pipeline": Pipeline.execute,
    }

    def observed(kind: str) -> Any:
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append((kind, pool.checkedout()))
            return await real[kind](*args, **kwargs)

        return wrapper

    async def smtp(*args: Any, **kwargs: Any) -> Any:
        seen.append(("smtp", pool.checkedout()))
        raise AssertionError("a request talked to the SMTP server")

    async def queue(*args: Any, **kwargs: Any) -> Any:
        seen.append(("queue", pool.checkedout()))
        raise AssertionError("a request sent a task to the queue")

    def observe() -> None:
        monkeypatch.setattr(PasswordHasher, "hash", observed("hash"))
        monkeypatch.setattr(PasswordHasher, "verify", observed("verify"))
        monkeypatch.setattr(Redis, "execute_command", observed("redis"))
        monkeypatch.setattr(Pipeline, "execute", observed("redis pipeline"))
        monkeypatch.setattr(aiosmtplib, "send", smtp)
        monkeypatch.setattr(broker, "kick", queue)

    relay: OutboxRelay = app.state.outbox_relay

    async def deliver() -> None:
        monkeypatch.undo()
        await queued_work_done(app)
        observe()

    seen.deliver = deliver
    await relay.stop()
    observe()
    try:
        yield seen
    finally:
        monkeypatch.undo()
        relay.start()


async def test_registration_waits_with_no_connection_held(
    client: AsyncClient, user: User, waits: Waits
) -> None:
    for email in ("new@example.com", user.email):  # a new address, and a taken one
        body = {"email": email, "username": f"newcomer{len(waits)}", "password": "long-password-1"}
        assert (await client.post("/api/v1/auth/register", json=body)).status_code == 202
    assert {"hash", "redis pipeline"} <= waits.kinds()
    assert waits.held() == []


async def test_sign_in_waits_with_no_connection_held(
    client: AsyncClient, user: User, waits: Waits
) -> None:
    for login_, password in [
        (user.username, DEFAULT_PASSWORD),
        (user.username, "wrong-password"),
        ("nobody", "x" * 12),
    ]:
        await client.post("/api/v1/auth/login", data={"username": login_, "password": password})
    # The unknown login burns a verification too, as long as a real one.
    assert [kind for kind, _ in waits].count("verify") == 3
    assert {"redis", "redis pipeline"} <= waits.kinds()
    assert waits.held() == []


async def test_account_changes_wait_with_no_connection_held(
    client: AsyncClient, user: User, waits: Waits
) -> None:
    headers: Headers = bearer((await login(client, user.username))["access_token"])
    changed = await client.put(
        "/api/v1/users/me/password",
        json={"current_password": DEFAULT_PASSWORD, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 204, changed.text
    moved = await client.patch(
        "/api/v1/users/me",
        json={"email": "moved@example.com", "current_password": NEW_PASSWORD},
        headers=headers,
    )
    assert moved.status_code == 200, moved.text
    deleted = await client.request(
        "DELETE", "/api/v1/users/me", json={"current_password": NEW_PASSWORD}, headers=headers
    )
    assert deleted.status_code == 204, deleted.text
    assert [kind for kind, _ in waits if kind in ("hash", "verify")] == [
        "verify",  # sign-in
        "verify",  # password change: the current one...
        "hash",  # ...and the new one
        "verify",  # email change
        "verify",  # deletion
    ]
    assert waits.held() == []


async def test_password_recovery_waits_with_no_connection_held(
    client: AsyncClient, user: User, mail_outbox: MailOutbox, waits: Waits
) -> None:
    await client.post("/api/v1/auth/password/forgot", json={"email": user.email})
    assert len(mail_outbox) == 0  # the reset link waits in the outbox
    await waits.deliver()
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    reset = await client.post(
        "/api/v1/auth/password/reset", json={"token": token, "new_password": NEW_PASSWORD}
    )
    assert reset.status_code == 204, reset.text
    assert "hash" in waits.kinds()
    assert waits.held() == []
