"""The users list at scale, through HTTP: cursor pages, bounded totals, and a plan per sort.

The index test seeds 10,050 users inside PostgreSQL (generate_series) and ANALYZEs them, then
EXPLAINs the statements the endpoint ran. At that size the planner already prefers an index
for a sorted LIMIT whenever one fits, and falls back to a sequential scan and a sort when none
does, so a whitelisted sort without its index fails here; `enable_seqscan = off` was not used,
since it hides a missing index behind a full scan of another index followed by a sort.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine

from app.modules.users.models import User
from bench.seed import SEED_USERS_SQL, newest_fraction_since, seed_users_params
from tests.factories.users import DEFAULT_PASSWORD_HASH
from tests.modules.conftest import Headers
from tests.support import sql_statements

USERS = "/api/v1/users"
MakeUser = Callable[..., Awaitable[User]]
SEEDED = 10_050
SORTABLE = ("created_at", "updated_at", "email", "username", "role")


async def _walk(
    client: AsyncClient, headers: Headers, params: dict[str, Any], link: str
) -> tuple[list[str], list[dict[str, Any]]]:
    """Follow `link` (next_cursor or prev_cursor) from the first response to the end."""
    ids: list[str] = []
    bodies = []
    query = dict(params)
    while True:
        response = await client.get(USERS, params=query, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        bodies.append(body)
        ids.extend(item["id"] for item in body["items"])
        if body[link] is None:
            return ids, bodies
        query = {**{k: v for k, v in params.items() if k != "page"}, "cursor": body[link]}


@pytest.mark.parametrize("sort", ["username", "-created_at", "role", "role,-created_at", "-email"])
async def test_cursors_walk_every_row_once_forward_and_back(
    client: AsyncClient, admin_headers: Headers, make_user: MakeUser, sort: str
) -> None:
    for index, name in enumerate(("carol", "dave", "erin", "frank", "grace", "heidi")):
        await make_user(
            username=name, email=f"{name}@example.com", role="admin" if index % 3 else "user"
        )
    everything = await client.get(
        USERS, params={"sort": sort, "per_page": 100}, headers=admin_headers
    )
    expected = [item["id"] for item in everything.json()["items"]]
    assert len(expected) == 7

    forward, bodies = await _walk(
        client, admin_headers, {"sort": sort, "per_page": 2}, "next_cursor"
    )
    assert forward == expected
    assert bodies[0]["page"] == 1
    assert bodies[0]["prev_cursor"] is None
    assert all(body["page"] is None for body in bodies[1:])  # read by cursor, not by number
    assert [len(body["items"]) for body in bodies] == [2, 2, 2, 1]
    assert all(body["total"] == 7 and body["total_is_exact"] for body in bodies)

    # From the last page back to the first, by prev_cursor: the same rows in the same order.
    last = {"sort": sort, "per_page": 2, "cursor": bodies[-2]["next_cursor"]}
    _, back_bodies = await _walk(client, admin_headers, last, "prev_cursor")
    pages = [[item["id"] for item in body["items"]] for body in reversed(back_bodies)]
    assert [row for page in pages for row in page] == expected
    assert back_bodies[-1]["prev_cursor"] is None
    assert back_bodies[-1]["next_cursor"] is not None


async def test_page_numbers_still_work_and_give_a_cursor_onward(
    client: AsyncClient, admin_headers: Headers, make_user: MakeUser
) -> None:
    for name in ("carol", "dave", "erin"):
        await make_user(username=name, email=f"{name}@example.com")
    second = await client.get(
        USERS, params={"sort": "username", "per_page": 2, "page": 2}, headers=admin_headers
    )
    body = second.json()
    assert [item["username"] for item in body["items"]] == ["erin", "root"]
    assert body["page"] == 2
    assert body["next_cursor"] is None
    before = await client.get(
        USERS,
        params={"sort": "username", "per_page": 2, "cursor": body["prev_cursor"]},
        headers=admin_headers,
    )
    assert [item["username"] for item in before.json()["items"]] == ["carol", "dave"]


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"cursor": "eyJzIjoxfQ"},  # valid base64 JSON, not a cursor
        {"page": "2", "cursor": "CURSOR"},
        {"sort": "username", "cursor": "CURSOR"},  # made for -created_at
        {"cursor": "TAMPERED"},
    ],
)
async def test_bad_cursors_are_422(
    client: AsyncClient, admin_headers: Headers, make_user: MakeUser, params: dict[str, str]
) -> None:
    import base64
    import json

    await make_user(username="carol", email="carol@example.com")
    first = await client.get(USERS, params={"per_page": 1}, headers=admin_headers)
    cursor = first.json()["next_cursor"]
    data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    data["v"][0] = "not a date"
    tampered = base64.urlsafe_b64encode(json.dumps(data).encode()).decode()
    values = {"CURSOR": cursor, "TAMPERED": tampered}
    query = {key: values.get(value, value) for key, value in params.items()}
    response = await client.get(USERS, params=query, headers=admin_headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.fixture
async def seeded(owner_engine: AsyncEngine, admin: User) -> dict[str, Any]:
    """10,050 users made by PostgreSQL, analyzed (the clean slate deletes them after)."""
    params = seed_users_params(SEEDED, DEFAULT_PASSWORD_HASH)
    async with owner_engine.begin() as connection:
        await connection.exec_driver_sql(SEED_USERS_SQL, params)
        await connection.exec_driver_sql("ANALYZE users")
    return params


async def test_total_is_exact_up_to_the_limit_and_estimated_above(
    client: AsyncClient, admin_headers: Headers, seeded: dict[str, Any]
) -> None:
    everyone = (await client.get(USERS, headers=admin_headers)).json()
    assert everyone["total_is_exact"] is False
    # The planner's estimate from the analyzed table, never below what the capped count saw.
    assert 10_001 <= everyone["total"] <= SEEDED * 1.2
    admins = (
        await client.get(USERS, params={"filter[role]": "admin"}, headers=admin_headers)
    ).json()
    assert admins["total_is_exact"] is True
    assert admins["total"] == SEEDED // 100 + 1  # one in a hundred, and root

    # Deep in the list by cursor: a page from 500 pages in carries on in order.
    page = await client.get(USERS, params={"page": 500, "per_page": 20}, headers=admin_headers)
    onward = await client.get(
        USERS, params={"per_page": 20, "cursor": page.json()["next_cursor"]}, headers=admin_headers
    )
    by_number = await client.get(USERS, params={"page": 501, "per_page": 20}, headers=admin_headers)
    assert onward.json()["items"] == by_number.json()["items"]


@pytest.fixture
def statements(app: FastAPI) -> Iterator[list[tuple[str, Any]]]:
    """The SQL the app sends while the test runs, with its parameters."""
    with sql_statements(app) as captured:
        yield captured


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", ()):
        yield from _nodes(child)


def _sorts() -> list[str]:
    return [f"{sign}{name}" for name in SORTABLE for sign in ("", "-")]


async def test_every_whitelisted_sort_and_selective_filter_is_served_by_an_index(
    client: AsyncClient,
    admin_headers: Headers,
    seeded: dict[str, Any],
    statements: list[tuple[str, Any]],
    owner_engine: AsyncEngine,
) -> None:
    recent = newest_fraction_since(SEEDED, 0.01, seeded).isoformat()
    filters: list[dict[str, str]] = [
        {"filter[role]": "admin"},
        {"filter[role]": "admin", "filter[created_at][gte]": recent},
        {"filter[created_at][gte]": recent},
        {"filter[email]": "seed77@example.com"},
        {"filter[username][in]": "seed7,seed8"},
    ]
    cases: list[tuple[str, dict[str, str], bool]] = []
    for sort in _sorts():
        cases.append((f"sort={sort}", {"sort": sort}, True))
    for query in filters:
        cases.append((str(query), query, False))

    failures = []
    for label, query, ordered_by_index in cases:
        first = await client.get(USERS, params={**query, "per_page": 20}, headers=admin_headers)
        assert first.status_code == 200, first.text
        cursor = first.json()["next_cursor"]
        requests = [label]
        if cursor is not None:  # the cursor's page: the range scan on the same index
            onward = {k: v for k, v in query.items() if k != "sort"}
            response = await client.get(
                USERS, params={**onward, "cursor": cursor, "per_page": 20}, headers=admin_headers
            )
            assert response.status_code == 200, response.text
            requests.append(label + " by cursor")
        for statement, parameters in statements:
            if "FROM users" not in statement or statement.startswith("EXPLAIN"):
                continue
            is_page = "ORDER BY" in statement
            if not is_page and ordered_by_index:
                continue  # the capped count of every user may well read the table itself
            async with owner_engine.connect() as connection:
                plan = (
                    await connection.exec_driver_sql(
                        "EXPLAIN (FORMAT JSON) " + statement, parameters
                    )
                ).scalar_one()[0]["Plan"]
            nodes = list(_nodes(plan))
            seq = [
                n
                for n in nodes
                if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == "users"
            ]
            sorted_after = (
                ordered_by_index and is_page and any("Sort" in n["Node Type"] for n in nodes)
            )
            if seq or sorted_after:
                failures.append((label, statement, [n["Node Type"] for n in nodes]))
        statements.clear()
    assert not failures, failures
