"""Invitations by email through the HTTP API: a single-use link that expires, for the invited
address only; accepting links an existing account or creates one; resend and revoke."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.modules.organizations.config import OrganizationsSettings, get_organizations_settings
from app.modules.organizations.models import Invitation
from tests.conftest import MailOutbox
from tests.factories.organizations import add_member, create_organization
from tests.modules.conftest import login, token_from_link
from tests.modules.organizations.conftest import CURRENT_URL, ORGS_URL, SignIn, in_org

# Requests here are counted against fixed-window rate limits.
pytestmark = pytest.mark.usefixtures("one_rate_window")

INVITATIONS_URL = f"{CURRENT_URL}/invitations"
ACCEPT_URL = f"{ORGS_URL}/invitations/accept"
SIGN_UP_URL = f"{ORGS_URL}/invitations/sign-up"


async def _invite(
    client: AsyncClient, headers: dict[str, str], email: str, role: str = "member"
) -> dict[str, str]:
    response = await client.post(
        INVITATIONS_URL, json={"email": email, "role": role}, headers=headers
    )
    assert response.status_code == 201, response.text
    body: dict[str, str] = response.json()
    return body


async def test_an_invited_account_accepts_once_and_joins_with_the_invited_role(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    _, bob_headers = await sign_in("bob")
    await create_organization(session, owner_id=owner.id, slug="acme", name="Acme")
    as_owner = in_org(owner_headers, "acme")

    invitation = await _invite(client, as_owner, "Bob@Example.com", role="admin")
    assert "token" not in invitation
    message = await mail_outbox.wait()
    assert str(message["To"]) == "Bob@example.com"
    assert "join Acme" in str(message["Subject"])
    token = token_from_link(mail_outbox.links()[0])

    accepted = await client.post(ACCEPT_URL, json={"token": token}, headers=bob_headers)
    assert accepted.status_code == 200, accepted.text
    assert (accepted.json()["slug"], accepted.json()["role"]) == ("acme", "admin")
    assert (await client.get(CURRENT_URL, headers=in_org(bob_headers, "acme"))).status_code == 200

    reused = await client.post(ACCEPT_URL, json={"token": token}, headers=bob_headers)
    assert reused.status_code == 400
    assert reused.headers["content-type"] == "application/problem+json"
    assert (await client.get(INVITATIONS_URL, headers=as_owner)).json() == []


async def test_an_invitation_creates_a_verified_account_for_a_new_address(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    await create_organization(session, owner_id=owner.id, slug="acme")
    await _invite(client, in_org(owner_headers, "acme"), "newcomer@example.com")
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])

    body = {"token": token, "username": "newcomer", "password": "a-long-unusual-passphrase-77"}
    joined = await client.post(SIGN_UP_URL, json=body)
    assert joined.status_code == 201, joined.text
    assert joined.json()["role"] == "member"
    tokens = await login(client, "newcomer@example.com", "a-long-unusual-passphrase-77")
    headers = in_org({"Authorization": f"Bearer {tokens['access_token']}"}, "acme")
    assert (await client.get(CURRENT_URL, headers=headers)).status_code == 200

    again = await client.post(SIGN_UP_URL, json={**body, "username": "other"})
    assert again.status_code == 400


async def test_sign_up_refuses_an_address_that_has_an_account(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    await sign_in("bob")
    await create_organization(session, owner_id=owner.id, slug="acme")
    await _invite(client, in_org(owner_headers, "acme"), "bob@example.com")
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])
    body = {"token": token, "username": "bob2", "password": "a-long-unusual-passphrase-77"}
    assert (await client.post(SIGN_UP_URL, json=body)).status_code == 409


async def test_an_expired_invitation_is_refused(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    _, bob_headers = await sign_in("bob")
    await create_organization(session, owner_id=owner.id, slug="acme")
    await _invite(client, in_org(owner_headers, "acme"), "bob@example.com")
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])

    # 72 hours later (ORGANIZATIONS_INVITATION_TTL_HOURS), and bob signed in again since.
    await session.execute(update(Invitation).values(expires_at=utcnow() - timedelta(seconds=1)))
    await session.commit()
    expired = await client.post(ACCEPT_URL, json={"token": token}, headers=bob_headers)
    assert expired.status_code == 400
    assert (await client.get(CURRENT_URL, headers=in_org(bob_headers, "acme"))).status_code == 404


async def test_an_invitation_for_another_address_is_refused(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    _, eve_headers = await sign_in("eve")
    await create_organization(session, owner_id=owner.id, slug="acme")
    await _invite(client, in_org(owner_headers, "acme"), "bob@example.com")
    token = token_from_link(mail_outbox.links(await mail_outbox.wait())[0])

    forwarded = await client.post(ACCEPT_URL, json={"token": token}, headers=eve_headers)
    assert forwarded.status_code == 403
    assert (await client.get(CURRENT_URL, headers=in_org(eve_headers, "acme"))).status_code == 404
    # Not spent by the refusal: bob may still use it.
    _, bob_headers = await sign_in("bob")
    assert (
        await client.post(ACCEPT_URL, json={"token": token}, headers=bob_headers)
    ).status_code == 200


async def test_resend_replaces_the_link_and_revoke_ends_it(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    owner, owner_headers = await sign_in("ann")
    _, bob_headers = await sign_in("bob")
    await create_organization(session, owner_id=owner.id, slug="acme")
    as_owner = in_org(owner_headers, "acme")
    invitation = await _invite(client, as_owner, "bob@example.com")
    first = token_from_link(mail_outbox.links(await mail_outbox.wait(1))[0])
    duplicate = await client.post(
        INVITATIONS_URL, json={"email": "BOB@example.com"}, headers=as_owner
    )
    assert duplicate.status_code == 409

    resent = await client.post(f"{INVITATIONS_URL}/{invitation['id']}/resend", headers=as_owner)
    assert resent.status_code == 200
    second = token_from_link(mail_outbox.links(await mail_outbox.wait(2))[0])
    assert second != first
    old = await client.post(ACCEPT_URL, json={"token": first}, headers=bob_headers)
    assert old.status_code == 400

    revoked = await client.delete(f"{INVITATIONS_URL}/{invitation['id']}", headers=as_owner)
    assert revoked.status_code == 204
    new = await client.post(ACCEPT_URL, json={"token": second}, headers=bob_headers)
    assert new.status_code == 400
    assert (await client.get(INVITATIONS_URL, headers=as_owner)).json() == []


async def test_invitations_of_another_organization_cannot_be_seen_resent_or_revoked(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession, mail_outbox: MailOutbox
) -> None:
    ann, ann_headers = await sign_in("ann")
    bob, bob_headers = await sign_in("bob")
    await create_organization(session, owner_id=ann.id, slug="acme")
    await create_organization(session, owner_id=bob.id, slug="globex")
    theirs = await _invite(client, in_org(bob_headers, "globex"), "x@example.com")
    as_ann = in_org(ann_headers, "acme")

    assert (await client.get(INVITATIONS_URL, headers=as_ann)).json() == []
    resend = await client.post(f"{INVITATIONS_URL}/{theirs['id']}/resend", headers=as_ann)
    assert resend.status_code == 404
    revoke = await client.delete(f"{INVITATIONS_URL}/{theirs['id']}", headers=as_ann)
    assert revoke.status_code == 404
    assert (
        len((await client.get(INVITATIONS_URL, headers=in_org(bob_headers, "globex"))).json()) == 1
    )


async def test_members_cannot_invite_and_admins_cannot_invite_owners(
    client: AsyncClient, sign_in: SignIn, session: AsyncSession
) -> None:
    owner, _ = await sign_in("ann")
    member, member_headers = await sign_in("bob")
    admin, admin_headers = await sign_in("cid")
    organization = await create_organization(session, owner_id=owner.id, slug="acme")
    await add_member(session, organization, member.id)
    await add_member(session, organization, admin.id, role="admin")

    by_member = await client.post(
        INVITATIONS_URL, json={"email": "x@example.com"}, headers=in_org(member_headers, "acme")
    )
    assert by_member.status_code == 403
    as_owner_role = await client.post(
        INVITATIONS_URL,
        json={"email": "x@example.com", "role": "owner"},
        headers=in_org(admin_headers, "acme"),
    )
    assert as_owner_role.status_code == 422
    existing = await client.post(
        INVITATIONS_URL, json={"email": "bob@example.com"}, headers=in_org(admin_headers, "acme")
    )
    assert existing.status_code == 409


async def test_an_organization_has_a_budget_of_invitation_mails(
    app: FastAPI,
    client: AsyncClient,
    sign_in: SignIn,
    session: AsyncSession,
    mail_outbox: MailOutbox,
) -> None:
    owner, owner_headers = await sign_in("ann")
    await create_organization(session, owner_id=owner.id, slug="acme")
    as_owner = in_org(owner_headers, "acme")
    budget = OrganizationsSettings(_env_file=None, invitation_mail_limit="2/hour")
    app.dependency_overrides[get_organizations_settings] = lambda: budget
    try:
        first = await _invite(client, as_owner, "one@example.com")
        await _invite(client, as_owner, "two@example.com")
        over = await client.post(f"{INVITATIONS_URL}/{first['id']}/resend", headers=as_owner)
        assert over.status_code == 429
        assert over.headers["content-type"] == "application/problem+json"
        assert "Retry-After" in over.headers
        third = await client.post(
            INVITATIONS_URL, json={"email": "3@example.com"}, headers=as_owner
        )
        assert third.status_code == 429
    finally:
        app.dependency_overrides.pop(get_organizations_settings, None)
    await mail_outbox.wait(2)
    assert len(mail_outbox.arrived()) == 2
    listed = (await client.get(INVITATIONS_URL, headers=as_owner)).json()
    assert sorted(item["email"] for item in listed) == ["one@example.com", "two@example.com"]
