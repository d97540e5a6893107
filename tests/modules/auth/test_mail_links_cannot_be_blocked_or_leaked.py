"""Asking for reset or verification links cannot void someone's link nor, from one client,
spend an address's budget; the token of a link travels in its fragment and never through
the task queue."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from taskiq import BrokerMessage

from app.core.queue import broker
from app.modules.auth.config import AuthSettings
from app.modules.users.models import User
from tests.conftest import MailOutbox
from tests.modules.conftest import login, token_from_link
from tests.support import queued_work_done

# Requests here are counted against fixed-window rate limits.
pytestmark = pytest.mark.usefixtures("one_rate_window")

FORGOT = "/api/v1/auth/password/forgot"
RESET = "/api/v1/auth/password/reset"


async def test_requests_from_elsewhere_neither_void_nor_block_the_owners_link(
    app: FastAPI,
    client: AsyncClient,
    user: User,
    mail_outbox: MailOutbox,
    behind_a_trusted_proxy: None,
) -> None:
    owner = {"X-Forwarded-For": "198.51.100.7"}
    assert (await client.post(FORGOT, json={"email": user.email}, headers=owner)).status_code == 202
    link = mail_outbox.links(await mail_outbox.wait())[0]

    # One client is stopped by its own budget before it can spend the address's.
    spammer = {"X-Forwarded-For": "203.0.113.66"}
    statuses = [
        (await client.post(FORGOT, json={"email": user.email}, headers=spammer)).status_code
        for _ in range(4)
    ]
    assert statuses == [202, 202, 202, 429]
    # Many clients spend the address's budget: they get the same answer, no more mail goes.
    for n in range(5):
        headers = {"X-Forwarded-For": f"203.0.113.{n}"}
        response = await client.post(FORGOT, json={"email": user.email}, headers=headers)
        assert response.status_code == 202
    await mail_outbox.wait(3)  # the owner's, then two of the spammer's: 3 per address an hour
    await queued_work_done(app)
    mail_outbox.links()  # reads what has arrived since
    assert len(mail_outbox) == 3

    # The owner's link, mailed first, still works: asking for more links voided nothing.
    reset = await client.post(
        RESET, json={"token": token_from_link(link), "new_password": "orbit-lantern-quietly"}
    )
    assert reset.status_code == 204
    # Using one spends the others.
    later = mail_outbox.links(mail_outbox[1])[0]
    again = await client.post(
        RESET, json={"token": token_from_link(later), "new_password": "another-quiet-lantern"}
    )
    assert again.status_code == 400


async def test_no_token_is_written_to_the_queue(
    client: AsyncClient, user: User, mail_outbox: MailOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    queued: list[bytes] = []
    kick = broker.kick

    async def record(message: BrokerMessage) -> Any:
        queued.append(message.message)
        return await kick(message)

    monkeypatch.setattr(broker, "kick", record)
    await client.post(FORGOT, json={"email": user.email})
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    assert queued  # the request queued the mail...
    assert not any(token.encode() in payload for payload in queued)  # ...but not its token
    assert all(b"reset_password" in payload for payload in queued)


async def test_a_link_carries_its_token_in_the_fragment(
    client: AsyncClient, user: User, mail_outbox: MailOutbox
) -> None:
    await client.post(FORGOT, json={"email": user.email})
    [link] = mail_outbox.links(await mail_outbox.wait())
    assert link.startswith("http://localhost:3000/reset-password#token=")
    assert "?" not in link
    await login(client, "alice")  # the request changed nothing of the account


async def test_a_mail_retried_after_an_smtp_failure_is_not_charged_to_the_address_again(
    app: FastAPI,
    client: AsyncClient,
    user: User,
    mail_outbox: MailOutbox,
    auth_settings: Callable[..., AuthSettings],
) -> None:
    """The address's budget counts mails asked for, not attempts: with a budget of one, a
    reset mail that the SMTP server refused at first still goes at its retry."""
    auth_settings(email_rate_limit="1/hour")
    mail_outbox.fail_next(1)
    assert (await client.post(FORGOT, json={"email": user.email})).status_code == 202
    await queued_work_done(app)
    (message,) = mail_outbox.arrived()
    assert message["To"] == user.email
    assert len(mail_outbox.links(message)) == 1
