"""The members list reads its accounts in one query: its SQL does not grow with the members."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.modules.users.models import User
from tests.factories.organizations import add_member, create_organization
from tests.modules.organizations.conftest import CURRENT_URL, SignIn, in_org
from tests.support import sql_statements

MEMBERS = f"{CURRENT_URL}/members"


async def test_the_members_list_costs_as_many_statements_for_six_members_as_for_one(
    app: FastAPI,
    client: AsyncClient,
    sign_in: SignIn,
    make_user: Callable[..., Awaitable[User]],
    session: AsyncSession,
) -> None:
    owner, headers = await sign_in("ann")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    as_owner = in_org(headers, "acme")
    assert (await client.get(MEMBERS, headers=as_owner)).status_code == 200  # warmed up

    with sql_statements(app) as alone:
        response = await client.get(MEMBERS, headers=as_owner)
    assert [member["username"] for member in response.json()] == ["ann"]

    for n in range(5):
        member = await make_user(email=f"member{n}@example.com", username=f"member{n}")
        await add_member(session, organization, member.id, role="admin" if n == 0 else "member")
    # A deleted account whose membership has not ended yet is not listed.
    gone = await make_user(email="gone@example.com", username="gone", deleted_at=utcnow())
    await add_member(session, organization, gone.id)

    with sql_statements(app) as crowded:
        response = await client.get(MEMBERS, headers=as_owner)
    assert response.status_code == 200, response.text
    assert [(member["username"], member["role"]) for member in response.json()] == [
        ("ann", "owner"),
        ("member0", "admin"),
        *((f"member{n}", "member") for n in range(1, 5)),
    ]
    assert len(_of_request(crowded)) == len(_of_request(alone)), _of_request(crowded)


def _of_request(statements: list[tuple[str, Any]]) -> list[str]:
    """The statements, less the outbox relay's: it polls on its own meanwhile."""
    return [statement for statement, _ in statements if "outbox_entries" not in statement]
