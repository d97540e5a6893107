from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import Depends, FastAPI, Request
from httpx import ASGITransport, AsyncClient

from app.core.errors import RateLimited
from app.core.ratelimit import Limit, RateLimit, RateLimiter
from app.main import create_app
from tests.conftest import Services, make_settings


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


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 429)])
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
