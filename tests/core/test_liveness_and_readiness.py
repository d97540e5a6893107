from __future__ import annotations

from asgi_lifespan import LifespanManager
from httpx import AsyncClient

from app.main import create_app
from tests.conftest import Services, make_settings
from tests.support import http_client


async def test_live_answers_without_io(client: AsyncClient) -> None:
    response = await client.get("/health/live")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_checks_database_and_redis(client: AsyncClient) -> None:
    response = await client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "redis": "ok"}}


async def test_ready_is_503_when_redis_is_down(services: Services) -> None:
    settings = make_settings(services, redis_url="redis://127.0.0.1:1/0", health_timeout=0.5)
    app = create_app(settings)
    async with (
        LifespanManager(app),
        http_client(app) as http,
    ):
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": {"database": "ok", "redis": "fail"}}


async def test_ready_is_503_when_database_is_down(services: Services) -> None:
    settings = make_settings(
        services, database_url="postgresql://postgres@127.0.0.1:1/none", health_timeout=0.5
    )
    app = create_app(settings)
    async with (
        LifespanManager(app),
        http_client(app) as http,
    ):
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["checks"] == {"database": "fail", "redis": "ok"}


async def test_live_fast_path_handles_head_and_leaves_other_methods_to_the_router(
    client: AsyncClient,
) -> None:
    head = await client.head("/health/live")
    assert head.status_code == 200
    assert head.content == b""
    assert head.headers["x-content-type-options"] == "nosniff"
    post = await client.post("/health/live")
    assert post.status_code == 405
    assert post.headers["content-type"] == "application/problem+json"
