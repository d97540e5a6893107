"""Module discovery, repositories and list params, through a sample module under tests/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.modules import DEFAULT_PACKAGES
from app.main import create_app
from tests.conftest import Services, make_settings
from tests.core.sample_modules.widgets.models import WidgetBase
from tests.support import http_client

SAMPLE_PACKAGES = (*DEFAULT_PACKAGES, "tests.core.sample_modules")


@pytest.fixture(scope="module")
async def widgets_app(services: Services, owner_engine: AsyncEngine) -> AsyncIterator[FastAPI]:
    app = create_app(make_settings(services), module_packages=SAMPLE_PACKAGES)
    async with LifespanManager(app):
        async with owner_engine.begin() as connection:
            await connection.run_sync(WidgetBase.metadata.create_all)
        yield app
        async with owner_engine.begin() as connection:
            await connection.run_sync(WidgetBase.metadata.drop_all)


@pytest.fixture
async def http(widgets_app: FastAPI, owner_engine: AsyncEngine) -> AsyncIterator[AsyncClient]:
    async with http_client(widgets_app) as client:
        yield client
    async with owner_engine.begin() as connection:
        await connection.execute(text("TRUNCATE test_widgets"))


async def _seed(http: AsyncClient) -> list[dict[str, Any]]:
    rows = [
        ("bolt", "red", 3),
        ("anchor", "blue", 10),
        ("cog", "red", 7),
        ("dial", "green", 7),
        ("axle", "blue", 1),
    ]
    created = []
    for name, colour, size in rows:
        response = await http.post(
            "/api/v1/widgets", json={"name": name, "colour": colour, "size": size}
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created


def _names(response: Any) -> list[str]:
    return [item["name"] for item in response.json()["items"]]


async def test_module_under_tests_is_discovered_and_mounted(widgets_app: FastAPI) -> None:
    assert [spec.name for spec in widgets_app.state.modules][-1] == "widgets"
    paths = widgets_app.openapi()["paths"]
    assert set(paths["/api/v1/widgets"]) == {"get", "post"}


async def test_default_app_does_not_mount_test_modules(client: AsyncClient) -> None:
    response = await client.get("/api/v1/widgets")
    assert response.status_code == 404


async def test_multi_field_sort_with_direction(http: AsyncClient) -> None:
    await _seed(http)
    response = await http.get("/api/v1/widgets", params={"sort": "-size,name"})
    assert response.status_code == 200
    assert _names(response) == ["anchor", "cog", "dial", "bolt", "axle"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"filter[colour]": "red"}, ["bolt", "cog"]),
        ({"filter[colour][ne]": "red"}, ["anchor", "axle", "dial"]),
        ({"filter[colour][in]": "green,blue"}, ["anchor", "axle", "dial"]),
        ({"filter[size][gte]": "7"}, ["anchor", "cog", "dial"]),
        ({"filter[size][gt]": "3", "filter[size][lt]": "10"}, ["cog", "dial"]),
        ({"filter[size][lte]": "3"}, ["axle", "bolt"]),
        ({"filter[size]": "7", "filter[colour]": "green"}, ["dial"]),
    ],
)
async def test_filters(http: AsyncClient, query: dict[str, str], expected: list[str]) -> None:
    await _seed(http)
    response = await http.get("/api/v1/widgets", params={**query, "sort": "name"})
    assert response.status_code == 200, response.text
    assert _names(response) == expected
    assert response.json()["total"] == len(expected)


async def test_pagination_reports_totals(http: AsyncClient) -> None:
    await _seed(http)
    response = await http.get("/api/v1/widgets", params={"sort": "name", "page": 2, "per_page": 2})
    body = response.json()
    assert _names(response) == ["bolt", "cog"]
    assert {k: body[k] for k in ("total", "page", "per_page", "pages")} == {
        "total": 5,
        "page": 2,
        "per_page": 2,
        "pages": 3,
    }
    beyond = await http.get("/api/v1/widgets", params={"page": 99, "per_page": 2})
    assert beyond.json()["items"] == []
    assert beyond.json()["total"] == 5


@pytest.mark.parametrize(
    "query",
    [
        {"sort": "secret"},
        {"sort": "name,name"},
        {"sort": "name;drop table users"},
        {"filter[password]": "x"},
        {"filter[size][like]": "1"},
        {"filter[created_at][eq]": "2024-01-01T00:00:00Z"},
        {"filter[size]": "not-a-number"},
        {"filter[colour": "red"},
        {"filter[size][in]": ""},
        {"per_page": "51"},
        {"per_page": "0"},
        {"per_page": "-5"},
        {"page": "0"},
        {"page": "99999999999999999999"},
    ],
)
async def test_bad_list_params_are_422_problems(http: AsyncClient, query: dict[str, str]) -> None:
    response = await http.get("/api/v1/widgets", params=query)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 422


async def test_date_range_filter(http: AsyncClient) -> None:
    await _seed(http)
    response = await http.get(
        "/api/v1/widgets", params={"filter[created_at][gte]": "2000-01-01T00:00:00Z"}
    )
    assert response.json()["total"] == 5
    response = await http.get(
        "/api/v1/widgets", params={"filter[created_at][lte]": "2000-01-01T00:00:00Z"}
    )
    assert response.json()["total"] == 0


async def test_get_update_soft_and_hard_delete(http: AsyncClient, widgets_app: FastAPI) -> None:
    created = await _seed(http)
    first, second = created[0]["id"], created[1]["id"]
    assert (await http.get(f"/api/v1/widgets/{first}")).json()["name"] == "bolt"

    renamed = await http.patch(
        f"/api/v1/widgets/{first}", json={"name": "nut", "colour": "red", "size": 3}
    )
    assert renamed.json()["name"] == "nut"

    assert (await http.delete(f"/api/v1/widgets/{first}")).status_code == 204
    missing = await http.get(f"/api/v1/widgets/{first}")
    assert missing.status_code == 404
    assert missing.json()["detail"] == "Widget not found"
    assert (await http.get("/api/v1/widgets")).json()["total"] == 4
    async with widgets_app.state.database.engine.connect() as connection:
        kept = await connection.scalar(
            text("SELECT count(*) FROM test_widgets WHERE deleted_at IS NOT NULL")
        )
    assert kept == 1  # soft delete keeps the row

    assert (await http.delete(f"/api/v1/widgets/{second}?hard=true")).status_code == 204
    async with widgets_app.state.database.engine.connect() as connection:
        remaining = await connection.scalar(text("SELECT count(*) FROM test_widgets"))
    assert remaining == 4


async def test_total_is_counted_to_the_limit_then_estimated(
    http: AsyncClient, owner_engine: AsyncEngine
) -> None:
    created = await _seed(http)
    async with owner_engine.begin() as connection:
        await connection.execute(text("ANALYZE test_widgets"))
    # Five widgets, the planner knows it: more than twice the limit, so no count at all.
    estimated = (await http.get("/api/v1/widgets/bounded")).json()
    assert (estimated["total"], estimated["total_is_exact"]) == (5, False)

    async with owner_engine.begin() as connection:
        await connection.execute(text("DELETE FROM test_widgets WHERE name IN ('bolt', 'cog')"))
        await connection.execute(text("ANALYZE test_widgets"))
    # Three: not clearly above the limit, so counted; above it, so the total is the estimate.
    counted = (await http.get("/api/v1/widgets/bounded")).json()
    assert (counted["total"], counted["total_is_exact"]) == (3, False)

    async with owner_engine.begin() as connection:
        await connection.execute(text("DELETE FROM test_widgets WHERE name = 'dial'"))
    exact = (await http.get("/api/v1/widgets/bounded", params={"sort": "name"})).json()
    assert (exact["total"], exact["total_is_exact"]) == (2, True)
    assert [item["name"] for item in exact["items"]] == ["anchor", "axle"]
    assert len(created) == 5
