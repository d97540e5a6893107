"""Organizations through the HTTP API: who may do what, and what strangers get (a 404, as for
an organization that does not exist)."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.events import listener
from app.core.queue import broker
from app.modules.organizations import MemberJoined, MemberRemoved, OrganizationDeleted
from app.modules.organizations.models import Membership, Organization
from app.modules.organizations.tasks import purge_deleted_organizations
from tests.conftest import MailOutbox
from tests.factories.organizations import add_member, create_organization
from tests.modules.organizations.conftest import CURRENT_URL, ORGS_URL, SignIn, create_org, in_org

REMOVED: list[MemberRemoved] = []
PUBLISHED: list[MemberJoined | OrganizationDeleted] = []


@listener(MemberRemoved)
async def _record_removal(event: MemberRemoved) -> None:
    REMOVED.append(event)


@listener(MemberJoined)
@listener(OrganizationDeleted)
async def _record(event: MemberJoined | OrganizationDeleted) -> None:
    PUBLISHED.append(event)


async def test_the_creator_owns_the_organization_and_switches_between_organizations(
    client: AsyncClient, sign_in: SignIn
) -> None:
    ann, headers = await sign_in("ann")
    PUBLISHED.clear()
    acme = await create_org(client, headers, "acme")
    await create_org(client, headers, "Globex")  # slugs are lower-cased
    joined = [e for e in PUBLISHED if isinstance(e, MemberJoined)]
    assert (joined[0].organization_id, joined[0].user_id, joined[0].role) == (
        uuid.UUID(acme["id"]),
        ann.id,
        "owner",
    )

    mine = (await client.get(ORGS_URL, headers=headers)).json()
    assert sorted((item["slug"], item["role"]) for item in mine) == [
        ("acme", "owner"),
        ("globex", "owner"),
    ]
    # One sign-in, two organizations: the header picks one per request.
    for slug in ("acme", "globex"):
        current = await client.get(CURRENT_URL, headers=in_org(headers, slug))
        assert current.status_code == 200, current.text
        assert current.json()["slug"] == slug


async def test_slugs_are_unique_and_well_formed(client: AsyncClient, sign_in: SignIn) -> None:
    _, headers = await sign_in("ann")
    await create_org(client, headers, "acme")
    again = await client.post(ORGS_URL, json={"name": "Other", "slug": "ACME"}, headers=headers)
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    for slug in ("-acme", "a", "acme corp", "x" * 51, "acme/../b"):
        bad = await client.post(ORGS_URL, json={"name": "X", "slug": slug}, headers=headers)
        assert bad.status_code == 422, slug


async def test_a_non_member_gets_404_as_for_an_organization_that_does_not_exist(
    client: AsyncClient, sign_in: SignIn
) -> None:
    _, owner = await sign_in("ann")
    _, stranger = await sign_in("bob")
    await create_org(client, owner, "acme")

    for headers in (in_org(stranger, "acme"), in_org(owner, "no-such-org")):
        for method, path in (
            ("GET", CURRENT_URL),
            ("GET", f"{CURRENT_URL}/members"),
            ("POST", f"{CURRENT_URL}/leave"),
            ("DELETE", CURRENT_URL),
        ):
            response = await client.request(method, path, headers=headers)
            assert response.status_code == 404, (method, path, response.text)
            assert response.json()["detail"] == "Organization not found"
    missing = await client.get(CURRENT_URL, headers=owner)  # no X-Organization at all
    assert missing.status_code == 422
    anonymous = await client.get(CURRENT_URL, headers={"X-Organization": "acme"})
    assert anonymous.status_code == 401


async def test_a_member_cannot_invite_rename_or_delete(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner, _ = await sign_in("ann")
    member, member_headers = await sign_in("bob")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    await add_member(session, organization, member.id)
    headers = in_org(member_headers, "acme")

    invite = await client.post(
        f"{CURRENT_URL}/invitations", json={"email": "x@example.com"}, headers=headers
    )
    assert invite.status_code == 403
    assert (
        await client.patch(CURRENT_URL, json={"name": "Mine"}, headers=headers)
    ).status_code == 403
    assert (await client.delete(CURRENT_URL, headers=headers)).status_code == 403
    members = await client.get(f"{CURRENT_URL}/members", headers=headers)
    assert members.status_code == 200
    assert {item["username"]: item["role"] for item in members.json()} == {
        "ann": "owner",
        "bob": "member",
    }


async def test_an_admin_cannot_remove_the_owner_and_a_removed_member_loses_access_at_once(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner, _ = await sign_in("ann")
    admin, admin_headers = await sign_in("bob")
    member, member_headers = await sign_in("cid")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    await add_member(session, organization, admin.id, role="admin")
    await add_member(session, organization, member.id)
    REMOVED.clear()

    as_admin = in_org(admin_headers, "acme")
    assert (
        await client.delete(f"{CURRENT_URL}/members/{owner.id}", headers=as_admin)
    ).status_code == 403
    assert (
        await client.get(CURRENT_URL, headers=in_org(member_headers, "acme"))
    ).status_code == 200

    removed = await client.delete(f"{CURRENT_URL}/members/{member.id}", headers=as_admin)
    assert removed.status_code == 204
    # The same access token, the very next request: no longer a member.
    assert (
        await client.get(CURRENT_URL, headers=in_org(member_headers, "acme"))
    ).status_code == 404
    assert [(e.user_id, e.by_id) for e in REMOVED] == [(member.id, admin.id)]


async def test_ids_of_another_organization_in_a_path_or_a_body_are_not_found(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner_a, headers_a = await sign_in("ann")
    owner_b, _ = await sign_in("bob")
    member_b, _ = await sign_in("cid")
    await create_organization(session, owner_id=owner_a.id, slug="acme")
    globex = await create_organization(session, owner_id=owner_b.id, slug="globex")
    await add_member(session, globex, member_b.id)
    as_a = in_org(headers_a, "acme")

    for user_id in (member_b.id, owner_b.id, uuid.uuid4()):
        response = await client.delete(f"{CURRENT_URL}/members/{user_id}", headers=as_a)
        assert response.status_code == 404, response.text
        patched = await client.patch(
            f"{CURRENT_URL}/members/{user_id}", json={"role": "admin"}, headers=as_a
        )
        assert patched.status_code == 404
        transfer = await client.post(
            f"{CURRENT_URL}/transfer", json={"user_id": str(user_id)}, headers=as_a
        )
        assert transfer.status_code == 404
    # Globex is untouched.
    roles = (
        await session.execute(
            select(Membership.role).where(Membership.organization_id == globex.id)
        )
    ).scalars()
    assert sorted(roles) == ["member", "owner"]


async def test_the_owner_leaves_only_after_transferring_ownership_and_both_are_mailed(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    admin, admin_headers = await sign_in("bob")
    organization = await create_organization(session, owner_id=owner.id, slug="acme", name="Acme")
    await add_member(session, organization, admin.id, role="admin")
    as_owner = in_org(owner_headers, "acme")

    refused = await client.post(f"{CURRENT_URL}/leave", headers=as_owner)
    assert refused.status_code == 409
    assert "transfer" in refused.json()["detail"]
    as_admin = in_org(admin_headers, "acme")
    stolen = await client.post(
        f"{CURRENT_URL}/transfer", json={"user_id": str(admin.id)}, headers=as_admin
    )
    assert stolen.status_code == 403

    moved = await client.post(
        f"{CURRENT_URL}/transfer", json={"user_id": str(admin.id)}, headers=as_owner
    )
    assert moved.status_code == 204, moved.text
    assert (await client.get(CURRENT_URL, headers=as_admin)).json()["role"] == "owner"
    assert (await client.get(CURRENT_URL, headers=as_owner)).json()["role"] == "admin"
    await mail_outbox.wait(2)
    assert sorted(str(m["To"]) for m in mail_outbox) == ["ann@example.com", "bob@example.com"]
    assert all("Acme has a new owner" in str(m["Subject"]) for m in mail_outbox)

    assert (await client.post(f"{CURRENT_URL}/leave", headers=as_owner)).status_code == 204
    assert (await client.get(CURRENT_URL, headers=as_owner)).status_code == 404
    members = (await client.get(f"{CURRENT_URL}/members", headers=as_admin)).json()
    assert [(m["username"], m["role"]) for m in members] == [("bob", "owner")]


async def test_only_the_owner_changes_roles_and_the_owners_role_only_moves_by_transfer(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner, owner_headers = await sign_in("ann")
    admin, admin_headers = await sign_in("bob")
    member, _ = await sign_in("cid")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    await add_member(session, organization, admin.id, role="admin")
    await add_member(session, organization, member.id)

    path = f"{CURRENT_URL}/members/{member.id}"
    by_admin = await client.patch(
        path, json={"role": "admin"}, headers=in_org(admin_headers, "acme")
    )
    assert by_admin.status_code == 403
    as_owner = in_org(owner_headers, "acme")
    promoted = await client.patch(path, json={"role": "admin"}, headers=as_owner)
    assert promoted.status_code == 200
    assert promoted.json()["role"] == "admin"
    to_owner = await client.patch(path, json={"role": "owner"}, headers=as_owner)
    assert to_owner.status_code == 422


async def test_a_deleted_organization_is_gone_at_once_and_purged_with_its_data_later(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner, owner_headers = await sign_in("ann")
    member, member_headers = await sign_in("bob")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    organization_id = organization.id
    await add_member(session, organization, member.id, role="admin")
    as_admin = in_org(member_headers, "acme")
    assert (await client.delete(CURRENT_URL, headers=as_admin)).status_code == 403

    PUBLISHED.clear()
    deleted = await client.delete(CURRENT_URL, headers=in_org(owner_headers, "acme"))
    assert deleted.status_code == 204
    assert list(PUBLISHED) == [OrganizationDeleted(organization_id=organization_id)]
    assert (await client.get(CURRENT_URL, headers=as_admin)).status_code == 404
    assert (await client.get(ORGS_URL, headers=member_headers)).json() == []

    async def stored() -> list[Any]:
        session.expire_all()
        return list((await session.execute(select(Organization.id, Organization.deleted_at))).all())

    # Kept until ORGANIZATIONS_PURGE_AFTER_DAYS have passed.
    await purge_deleted_organizations.kiq()  # type: ignore[call-overload]
    await broker.wait_all()
    assert len(await stored()) == 1
    row = await session.get(Organization, organization_id)
    assert row is not None
    row.deleted_at = utcnow().replace(year=utcnow().year - 1)
    await session.commit()

    await purge_deleted_organizations.kiq()  # type: ignore[call-overload]
    await broker.wait_all()
    assert await stored() == []
    assert (await session.execute(select(Membership))).first() is None
