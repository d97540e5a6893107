"""Factories for the organizations module's models (ids of users must be set by the caller)."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from factory.base import Factory
from factory.declarations import LazyFunction, Sequence
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.core.security import hash_token, new_opaque_token
from app.modules.organizations.models import Invitation, Membership, Organization, OrgRole


class OrganizationFactory(Factory[Organization]):
    class Meta:
        model = Organization

    id = LazyFunction(uuid.uuid4)  # type: ignore[no-untyped-call]
    name = Sequence(lambda n: f"Organization {n}")  # type: ignore[no-untyped-call]
    slug = Sequence(lambda n: f"org-{n}")  # type: ignore[no-untyped-call]


class MembershipFactory(Factory[Membership]):
    class Meta:
        model = Membership

    role = OrgRole.MEMBER.value


class InvitationFactory(Factory[Invitation]):
    class Meta:
        model = Invitation

    email = Sequence(lambda n: f"invitee{n}@example.com")  # type: ignore[no-untyped-call]
    role = OrgRole.MEMBER.value
    token_hash = LazyFunction(lambda: hash_token(new_opaque_token()))  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(hours=72))  # type: ignore[no-untyped-call]


async def create_organization(
    session: AsyncSession, *, owner_id: uuid.UUID, **overrides: Any
) -> Organization:
    """An organization owned by `owner_id`, stored and committed."""
    organization: Organization = OrganizationFactory.build(**overrides)
    session.add(organization)
    await session.flush()
    session.add(
        MembershipFactory.build(
            organization_id=organization.id, user_id=owner_id, role=OrgRole.OWNER.value
        )
    )
    await session.commit()
    return organization


async def add_member(
    session: AsyncSession, organization: Organization, user_id: uuid.UUID, role: str = "member"
) -> Membership:
    membership: Membership = MembershipFactory.build(
        organization_id=organization.id, user_id=user_id, role=role
    )
    session.add(membership)
    await session.commit()
    return membership
