"""A deleted account leaves its organizations (a queued listener of UserDeleted): its
memberships end, an organization it owned passes to its longest-standing admin (else member),
and one left with nobody is deleted."""

from __future__ import annotations

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.events import drain, listener, publish
from app.modules.organizations import MemberRemoved, OrganizationDeleted
from app.modules.organizations.models import Membership
from app.modules.users import UserDeleted
from tests.conftest import MailOutbox
from tests.factories.organizations import add_member, create_organization
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.conftest import Headers, token_from_link
from tests.modules.organizations.conftest import CURRENT_URL, ORGS_URL, SignIn, in_org
from tests.support import queued_work_done

ME = "/api/v1/users/me"
MEMBERS = f"{CURRENT_URL}/members"

PUBLISHED: list[MemberRemoved | OrganizationDeleted] = []


@listener(MemberRemoved)
@listener(OrganizationDeleted)
async def _record(event: MemberRemoved | OrganizationDeleted) -> None:
    PUBLISHED.append(event)


async def _delete_own_account(client: AsyncClient, headers: Headers) -> None:
    response = await client.request(
        "DELETE", ME, json={"current_password": DEFAULT_PASSWORD}, headers=headers
    )
    assert response.status_code == 204, response.text


async def _processed(app: FastAPI) -> None:
    """The deletion's queued listener has run, and the in-process listeners of its events."""
    await queued_work_done(app)
    await drain()


async def test_a_member_deleted_by_an_administrator_leaves_the_members_list(
    app: FastAPI,
    client: AsyncClient,
    sign_in: SignIn,
    session: AsyncSession,
    admin_headers: Headers,
) -> None:
    owner, owner_headers = await sign_in("ann")
    member, _ = await sign_in("cid")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    await add_member(session, organization, member.id)
    PUBLISHED.clear()

    deleted = await client.delete(f"/api/v1/users/{member.id}", headers=admin_headers)
    assert deleted.status_code == 204
    await _processed(app)

    members = await client.get(MEMBERS, headers=in_org(owner_headers, "acme"))
    assert [(m["username"], m["role"]) for m in members.json()] == [("ann", "owner")]
    assert list(PUBLISHED) == [
        MemberRemoved(organization_id=organization.id, user_id=member.id, by_id=member.id)
    ]
    left = select(Membership).where(Membership.user_id == member.id)
    assert (await session.execute(left)).first() is None


async def test_a_deleted_owners_organization_passes_to_the_longest_standing_admin(
    app: FastAPI,
    client: AsyncClient,
    sign_in: SignIn,
    session: AsyncSession,
    mail_outbox: MailOutbox,
) -> None:
    owner, owner_headers = await sign_in("ann")
    member, _ = await sign_in("cid")  # joined first, but admins come before members
    admin, admin_headers = await sign_in("bob")
    later_admin, _ = await sign_in("dan")
    organization = await create_organization(session, owner_id=owner.id, slug="acme", name="Acme")
    await add_member(session, organization, member.id)
    await add_member(session, organization, admin.id, role="admin")
    await add_member(session, organization, later_admin.id, role="admin")
    PUBLISHED.clear()

    await _delete_own_account(client, owner_headers)
    await _processed(app)

    as_new_owner = in_org(admin_headers, "acme")
    members = (await client.get(MEMBERS, headers=as_new_owner)).json()
    assert [(m["username"], m["role"]) for m in members] == [
        ("cid", "member"),
        ("bob", "owner"),
        ("dan", "admin"),
    ]
    promoted = await client.patch(
        f"{MEMBERS}/{member.id}", json={"role": "admin"}, headers=as_new_owner
    )  # owner only
    assert promoted.status_code == 200, promoted.text
    message = await mail_outbox.wait()
    assert str(message["To"]) == "bob@example.com"
    assert "You now own Acme" in str(message["Subject"])
    assert list(PUBLISHED) == [
        MemberRemoved(organization_id=organization.id, user_id=owner.id, by_id=owner.id)
    ]

    # The listener runs again (delivery is at least once): nothing more happens.
    publish(session, UserDeleted(user_id=owner.id))
    await session.commit()
    await _processed(app)
    members = (await client.get(MEMBERS, headers=as_new_owner)).json()
    assert [(m["username"], m["role"]) for m in members] == [
        ("cid", "admin"),
        ("bob", "owner"),
        ("dan", "admin"),
    ]
    assert len(PUBLISHED) == 1
    assert len(mail_outbox.arrived()) == 1


async def test_an_organization_whose_only_member_is_deleted_is_deleted(
    app: FastAPI,
    client: AsyncClient,
    sign_in: SignIn,
    session: AsyncSession,
    mail_outbox: MailOutbox,
) -> None:
    owner, owner_headers = await sign_in("ann")
    _, invitee_headers = await sign_in("bob")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    invited = await client.post(
        f"{CURRENT_URL}/invitations",
        json={"email": "bob@example.com"},
        headers=in_org(owner_headers, "acme"),
    )
    assert invited.status_code == 201, invited.text
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    PUBLISHED.clear()

    await _delete_own_account(client, owner_headers)
    await _processed(app)

    assert OrganizationDeleted(organization_id=organization.id) in PUBLISHED
    # Nobody can join it any more: it is gone, as an organization its owner deleted.
    accepted = await client.post(
        f"{ORGS_URL}/invitations/accept", json={"token": token}, headers=invitee_headers
    )
    assert accepted.status_code == 400, accepted.text
    assert (await client.get(ORGS_URL, headers=invitee_headers)).json() == []
