from __future__ import annotations

import pytest
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


@pytest.mark.parametrize(
    ("broken", "checks"),
    [
        ({"redis_url": "redis://127.0.0.1:1/0"}, {"database": "ok", "redis": "fail"}),
        (
            {"database_url": "postgresql://postgres@127.0.0.1:1/none"},
            {"database": "fail", "redis": "ok"},
        ),
    ],
    ids=["redis down", "database down"],
)
async def test_ready_is_503_and_names_the_service_that_is_down(
    services: Services, broken: dict[str, str], checks: dict[str, str]
) -> None:
    app = create_app(make_settings(services, health_timeout=0.5, **broken))
    async with (
        LifespanManager(app),
        http_client(app) as http,
    ):
        response = await http.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "fail", "checks": checks}


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
