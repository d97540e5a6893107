from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request
from httpx import ASGITransport, AsyncClient
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from app.core.config import AppSettings, Settings
from app.core.errors import RateLimited
from app.core.ratelimit import Limit, LimitSetting, RateLimit, RateLimiter
from app.main import create_app
from tests.conftest import Services, make_settings

# Requests here are counted against fixed-window rate limits.
pytestmark = pytest.mark.usefixtures("one_rate_window")


def _app(services: Services, **overrides: Any) -> FastAPI:
    app = create_app(make_settings(services, **overrides))

    @app.get("/limited", dependencies=[Depends(RateLimit("2/minute", scope="t"))])
    async def limited(request: Request) -> dict[str, str]:
        return {"client": request.app.state.rate_limiter.client_key(request)}

    return app


@pytest.fixture
async def limited(services: Services) -> AsyncIterator[FastAPI]:
    app = _app(services, trusted_proxies=["10.0.0.0/8"])
    async with LifespanManager(app):
        yield app
        await app.state.redis.flushdb()


def _client(app: FastAPI, ip: str) -> AsyncClient:
    return AsyncClient(transport=ASGITransport(app=app, client=(ip, 1234)), base_url="http://t")


async def test_429_problem_with_headers_after_the_limit(limited: FastAPI) -> None:
    async with _client(limited, "1.1.1.1") as http:
        first = await http.get("/limited")
        assert first.headers["RateLimit-Limit"] == "2"
        assert first.headers["RateLimit-Remaining"] == "1"
        await http.get("/limited")
        third = await http.get("/limited")
    assert third.status_code == 429
    assert third.headers["content-type"] == "application/problem+json"
    assert third.headers["RateLimit-Remaining"] == "0"
    assert 0 < int(third.headers["Retry-After"]) <= 60
    assert 0 < int(third.headers["RateLimit-Reset"]) <= 60


async def test_each_client_ip_has_its_own_bucket(limited: FastAPI) -> None:
    async with _client(limited, "1.1.1.1") as one, _client(limited, "2.2.2.2") as two:
        assert [(await one.get("/limited")).status_code for _ in range(3)] == [200, 200, 429]
        assert (await two.get("/limited")).status_code == 200


async def test_forwarded_for_only_from_trusted_proxies(limited: FastAPI) -> None:
    spoof = {"X-Forwarded-For": "9.9.9.9"}
    async with _client(limited, "1.1.1.1") as direct, _client(limited, "10.1.2.3") as proxy:
        assert (await direct.get("/limited", headers=spoof)).json() == {"client": "ip:1.1.1.1"}
        via_proxy = await proxy.get("/limited", headers={"X-Forwarded-For": "6.6.6.6, 10.0.0.9"})
        assert via_proxy.json() == {"client": "ip:6.6.6.6"}


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_redis_down_fails_open_or_closed(
    services: Services, fail_open: bool, status: int
) -> None:
    app = _app(
        services,
        redis_url="redis://127.0.0.1:1/0",
        redis_timeout=0.2,
        rate_limit_fail_open=fail_open,
    )
    async with LifespanManager(app), _client(app, "1.1.1.1") as http:
        assert (await http.get("/limited")).status_code == status


async def test_programmatic_hit_per_key(app: FastAPI) -> None:
    limiter: RateLimiter = app.state.rate_limiter
    await limiter.hit(key="account:1", limit="1/hour", scope="login")
    with pytest.raises(RateLimited) as caught:
        await limiter.hit(key="account:1", limit="1/hour", scope="login")
    assert caught.value.headers is not None
    assert "Retry-After" in caught.value.headers
    await limiter.hit(key="account:2", limit="1/hour", scope="login")


def test_limit_parsing() -> None:
    assert Limit.parse("5/minute") == Limit(5, 60)
    assert Limit.parse("100 / 2 hours") == Limit(100, 7200)
    with pytest.raises(ValueError, match="invalid rate limit"):
        Limit.parse("lots")


class _LimitedSettings(AppSettings):
    attempts: LimitSetting = "5/minute"


def test_a_limit_setting_that_does_not_parse_is_refused_as_it_loads() -> None:
    assert _LimitedSettings(attempts="10 / 2 hours").attempts == "10 / 2 hours"
    with pytest.raises(ValidationError, match="invalid rate limit 'often'"):
        _LimitedSettings(attempts="often")


@pytest.fixture
def limiter(app: FastAPI, settings: Settings) -> RateLimiter:
    return RateLimiter(app.state.redis, settings)


async def test_each_client_key_scope_and_window_gets_its_own_counter(
    limiter: RateLimiter, redis: Redis
) -> None:
    with time_machine.travel(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC), tick=False):
        for key in ("user:1", "ip:1.1.1.1"):
            await limiter.hit(key=key, limit="1/minute", scope="s")
            with pytest.raises(RateLimited):
                await limiter.hit(key=key, limit="1/minute", scope="s")
        await limiter.hit(key="user:1", limit="1/minute", scope="other")
        await limiter.hit(key="user:1", limit="1/hour", scope="s")
    found = [
        *await redis.keys(f"{limiter.prefix}:s:*"),
        *await redis.keys(f"{limiter.prefix}:other:*"),
    ]
    keys = sorted(key if isinstance(key, str) else key.decode() for key in found)
    minute, hour = 1_767_268_830 // 60, 1_767_268_830 // 3600
    assert keys == [
        f"{limiter.prefix}:other:user:1:60s:{minute}",
        f"{limiter.prefix}:s:ip:1.1.1.1:60s:{minute}",
        f"{limiter.prefix}:s:user:1:3600s:{hour}",
        f"{limiter.prefix}:s:user:1:60s:{minute}",
    ]
    # Idle counters expire on their own, a few seconds after their window.
    assert 0 < await redis.ttl(keys[0]) <= 60 + 5


async def test_a_new_window_starts_the_count_again(limiter: RateLimiter) -> None:
    with time_machine.travel(datetime(2026, 1, 1, 12, 0, 15, tzinfo=UTC), tick=False) as clock:
        first = await limiter.hit(key="k", limit="2/minute")
        assert (first.remaining, first.reset) == (1, 45)
        second = await limiter.hit(key="k", limit="2/minute")
        assert (second.remaining, second.reset) == (0, 45)
        refused = await limiter.peek_hit(key="k", limit="2/minute")
        assert not refused.allowed
        assert refused.headers["Retry-After"] == refused.headers["RateLimit-Reset"] == "45"
        clock.move_to(datetime(2026, 1, 1, 12, 1, 0, tzinfo=UTC))
        again = await limiter.hit(key="k", limit="2/minute")
        assert (again.allowed, again.remaining, again.reset) == (True, 1, 60)


async def test_cost_counts_units(limiter: RateLimiter) -> None:
    assert (await limiter.hit(key="k", limit="5/minute", cost=3)).remaining == 2
    refused = await limiter.peek_hit(key="k", limit="5/minute", cost=3)
    assert (refused.allowed, refused.remaining) == (False, 0)


async def test_concurrent_hits_never_overshoot_the_limit(limiter: RateLimiter) -> None:
    # All in one window: a slow machine must not carry the 50 hits across a minute's end.
    with time_machine.travel(datetime(2026, 1, 1, 12, 0, 5, tzinfo=UTC), tick=False):
        states = await asyncio.gather(
            *(limiter.peek_hit(key="k", limit="5/minute", scope="race") for _ in range(50))
        )
    assert sum(state.allowed for state in states) == 5


async def test_one_round_trip_per_check(
    limiter: RateLimiter, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    execute_command: Callable[..., Awaitable[Any]] = redis.execute_command
    make_pipeline = redis.pipeline

    async def command(*args: Any, **options: Any) -> Any:
        calls.append(str(args[0]))
        return await execute_command(*args, **options)

    def pipeline(transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        calls.append("PIPELINE")  # each one is sent once, as one round trip
        return make_pipeline(transaction, shard_hint)

    monkeypatch.setattr(redis, "execute_command", command)
    monkeypatch.setattr(redis, "pipeline", pipeline)
    await limiter.hit(key="k", limit="1/minute")
    assert not (await limiter.peek_hit(key="k", limit="1/minute")).allowed
    assert calls == ["PIPELINE", "PIPELINE"]


async def test_disabled_never_limits_nor_touches_redis(app: FastAPI, settings: Settings) -> None:
    disabled = settings.model_copy(update={"rate_limit_enabled": False})
    limiter = RateLimiter(app.state.redis, disabled)
    for _ in range(3):
        assert (await limiter.hit(key="k", limit="1/minute")).allowed
    assert await app.state.redis.keys(f"{limiter.prefix}:custom:*") == []


async def test_the_default_limit_counts_every_api_route_per_client(services: Services) -> None:
    app = create_app(make_settings(services, rate_limit_default="2/minute"))
    async with LifespanManager(app), _client(app, "1.1.1.1") as one, _client(app, "2.2.2.2") as two:
        try:
            statuses = [(await one.get("/api/v1/users/me")).status_code for _ in range(3)]
            assert statuses == [401, 401, 429]
            assert (await two.get("/api/v1/users/me")).status_code == 401
            assert (await one.get("/health/ready")).status_code == 200  # not an API route
        finally:
            await app.state.redis.flushdb()
