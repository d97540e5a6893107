"""Online guessing: every password attempt is counted before it is checked, per account and
client and per account from anywhere; a right one gives its count back; clients are keyed by
address (IPv6 by /64); the budgets fail closed without Redis.

The budgets are fixed windows: each test runs at a frozen moment, so no window ends mid-test.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import time_machine
from fastapi import FastAPI, Request
from httpx import AsyncClient

from app.core.ratelimit import RateLimiter
from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import LOGIN_URL, Headers, bearer, login

ME = "/api/v1/users/me"
WRONG = "not-the-password"


@pytest.fixture(autouse=True)
def _mid_window() -> Iterator[None]:
    with time_machine.travel(datetime(2031, 3, 1, 12, 0, 30, tzinfo=UTC), tick=False):
        yield


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _sign_in(client: AsyncClient, password: str, address: str) -> int:
    response = await client.post(
        LOGIN_URL, data={"username": "alice", "password": password}, headers=_from(address)
    )
    return response.status_code


async def test_parallel_wrong_passwords_from_many_clients_get_at_most_the_budget_of_401s(
    client: AsyncClient, user: User, behind_a_trusted_proxy: None
) -> None:
    # 50 guesses at once, 5 from each of 10 addresses: each address is within its own budget
    # (5/minute), so only the account's budget (20/hour) is left to stop them, and it must,
    # although none of them had failed when all of them were checked.
    guesses = [_sign_in(client, WRONG, f"198.51.100.{n % 10}") for n in range(50)]
    statuses = Counter(await asyncio.gather(*guesses))
    assert statuses == {401: 20, 429: 30}, statuses


async def test_a_right_password_gives_its_attempt_back(
    client: AsyncClient, user: User, behind_a_trusted_proxy: None
) -> None:
    for _ in range(10):
        assert await _sign_in(client, DEFAULT_PASSWORD, "198.51.100.1") == 200
    assert [await _sign_in(client, WRONG, "198.51.100.1") for _ in range(6)] == [401] * 5 + [429]


async def test_a_guesser_elsewhere_does_not_lock_the_owner_out_of_their_own_device(
    client: AsyncClient, user: User, behind_a_trusted_proxy: None
) -> None:
    attacker = [await _sign_in(client, WRONG, "203.0.113.9") for _ in range(6)]
    assert attacker == [401] * 5 + [429]
    assert await _sign_in(client, DEFAULT_PASSWORD, "198.51.100.1") == 200


async def test_the_hourly_account_ceiling_holds_across_clients_but_not_the_owners_device(
    client: AsyncClient, user: User, behind_a_trusted_proxy: None
) -> None:
    assert await _sign_in(client, DEFAULT_PASSWORD, "198.51.100.1") == 200  # the owner's device
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3", "203.0.113.4"):
        assert [await _sign_in(client, WRONG, address) for _ in range(5)] == [401] * 5
    # 20 wrong guesses this hour from anywhere: the account takes no more from a new client,
    # right or wrong...
    assert await _sign_in(client, WRONG, "203.0.113.5") == 429
    assert await _sign_in(client, DEFAULT_PASSWORD, "192.0.2.200") == 429
    # ...while a client that gave the right password before answers to its own budget only.
    assert await _sign_in(client, DEFAULT_PASSWORD, "198.51.100.1") == 200


async def test_password_and_email_changes_spend_the_sign_in_budget(
    client: AsyncClient, user: User, user_headers: Headers
) -> None:
    for _ in range(3):
        wrong = await client.put(
            f"{ME}/password",
            json={"current_password": WRONG, "new_password": "orbit-lantern-quietly"},
            headers=user_headers,
        )
        assert wrong.status_code == 403
    for _ in range(2):
        moved = await client.patch(
            ME, json={"email": "new@example.com", "current_password": WRONG}, headers=user_headers
        )
        assert moved.status_code == 403
    # Five wrong answers from this client, whichever form asked: sign-in is out too.
    assert (
        await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    ).status_code == 429
    deleting = await client.request(
        "DELETE", ME, json={"current_password": DEFAULT_PASSWORD}, headers=user_headers
    )
    assert deleting.status_code == 429


async def test_unknown_accounts_have_budgets_too(client: AsyncClient) -> None:
    statuses = [
        (await client.post(LOGIN_URL, data={"username": "ghost", "password": WRONG})).status_code
        for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]


def _request(address: str) -> Request:
    return Request({"type": "http", "headers": [], "client": (address, 1234), "state": {}})


def test_ipv6_clients_are_keyed_by_their_64(app: FastAPI) -> None:
    limiter: RateLimiter = app.state.rate_limiter
    one = limiter.address_key(_request("2001:db8:1:2::1"))
    assert one == "ip:2001:db8:1:2::/64"
    assert limiter.address_key(_request("2001:db8:1:2:ffff:ffff:ffff:ffff")) == one
    assert limiter.address_key(_request("2001:db8:1:3::1")) != one
    assert limiter.address_key(_request("::ffff:192.0.2.7")) == "ip:192.0.2.7"
    assert limiter.address_key(_request("192.0.2.7")) == "ip:192.0.2.7"


async def test_sign_in_without_redis_is_refused_not_unlimited(
    app: FastAPI, client: AsyncClient, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    limiter: RateLimiter = app.state.rate_limiter
    monkeypatch.setattr(limiter, "redis", _RedisDown())
    assert limiter.fail_open  # the general limits let requests through without Redis...
    refused = await client.post(LOGIN_URL, data={"username": "alice", "password": DEFAULT_PASSWORD})
    assert refused.status_code == 503  # ...password checks do not: RATE_LIMIT_CREDENTIALS_...
    assert refused.headers["retry-after"] == "5"


async def test_sign_in_without_redis_may_be_let_through_by_setting(
    app: FastAPI,
    client: AsyncClient,
    user: User,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limiter: RateLimiter = app.state.rate_limiter
    monkeypatch.setattr(limiter, "redis", _RedisDown())
    monkeypatch.setattr(limiter, "credentials_fail_open", True)
    tokens = await login(client, "alice")
    assert (await client.get(ME, headers=bearer(tokens["access_token"]))).status_code == 200


class _RedisDown:
    """A Redis client whose every command fails as when the server is unreachable."""

    def pipeline(self, *args: object, **kwargs: object) -> _RedisDown:
        return self

    async def __aenter__(self) -> _RedisDown:
        return self

    async def __aexit__(self, *args: object) -> None:
        return None

    def incrby(self, *args: object) -> None:
        return None

    def expire(self, *args: object) -> None:
        return None

    async def execute(self) -> list[int]:
        raise ConnectionError("Redis is down")

    def decrby(self, *args: object) -> None:
        return None

    async def set(self, *args: object, **kwargs: object) -> None:
        raise ConnectionError("Redis is down")

    async def exists(self, *args: object) -> int:
        raise ConnectionError("Redis is down")
