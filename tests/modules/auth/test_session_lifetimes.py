"""A sign-in session ends: after its idle timeout without a refresh, at its absolute lifetime
however often it is refreshed, and, in the same transaction, when the password changes."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select

from app.core.outbox import OutboxEntry, OutboxRelay
from app.modules.auth.config import AuthSettings
from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import bearer, login

REFRESH = "/api/v1/auth/refresh"
ME = "/api/v1/users/me"
START = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def short_sessions(auth_settings: Callable[..., AuthSettings]) -> AuthSettings:
    return auth_settings(
        session_lifetime_days=2,
        session_idle_timeout_hours=12,
        access_token_ttl_seconds=86_400,  # long enough to outlive the session in these tests
    )


async def test_a_session_ends_when_it_idles(
    client: AsyncClient, user: User, short_sessions: AuthSettings
) -> None:
    with time_machine.travel(START, tick=False) as clock:
        tokens = await login(client, "alice")
        clock.move_to(START + timedelta(hours=11))
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200
        clock.move_to(START + timedelta(hours=12, minutes=1))
        # No refresh for 12 hours: the access token, still unexpired, stands for nobody now.
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
        refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401


async def test_refreshing_keeps_a_session_alive_only_until_its_absolute_end(
    client: AsyncClient, user: User, short_sessions: AuthSettings
) -> None:
    with time_machine.travel(START, tick=False) as clock:
        tokens = await login(client, "alice")
        for hours in (10, 20, 30, 40):
            clock.move_to(START + timedelta(hours=hours))
            response = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
            assert response.status_code == 200, hours
            tokens = response.json()
        # The refresh token never outlives the session it belongs to.
        assert tokens["refresh_expires_in"] <= 8 * 3600
        clock.move_to(START + timedelta(days=2, minutes=1))
        assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 401
        refreshed = await client.post(REFRESH, json={"refresh_token": tokens["refresh_token"]})
        assert refreshed.status_code == 401
        # A new sign-in starts a new session.
        assert (await login(client, "alice"))["access_token"]


async def test_a_password_change_ends_the_other_sessions_without_the_queue(
    app: FastAPI, client: AsyncClient, user: User
) -> None:
    here = await login(client, "alice")
    elsewhere = await login(client, "alice")
    relay: OutboxRelay = app.state.outbox_relay
    await relay.stop()  # nothing reaches the queue meanwhile
    try:
        changed = await client.put(
            f"{ME}/password",
            json={"current_password": DEFAULT_PASSWORD, "new_password": "orbit-lantern-quietly"},
            headers=bearer(here["access_token"]),
        )
        assert changed.status_code == 204
        assert (await client.get(ME, headers=bearer(elsewhere["access_token"]))).status_code == 401
        assert (
            await client.post(REFRESH, json={"refresh_token": elsewhere["refresh_token"]})
        ).status_code == 401
        assert (await client.get(ME, headers=bearer(here["access_token"]))).status_code == 200
        async with app.state.database.sessionmaker() as session:
            waiting = (await session.scalars(select(OutboxEntry))).all()
        # The notice mail and the revocation of the account's API keys wait in the outbox,
        # committed with the change; nothing else did.
        assert sorted((entry.task_name, entry.status) for entry in waiting) == [
            ("core.mail.send_template", "pending"),
            ("listener:app.modules.auth.listeners.revoke_api_keys", "pending"),
        ]
    finally:
        relay.start()
