"""Data access for organizations, memberships and invitations. Never commits.

Not tenant-owned tables: every query names its organization explicitly."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import RowMapping, bindparam, case, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.db import BaseRepository, rows_affected
from app.modules.organizations.models import Invitation, Membership, Organization, OrgRole

# Who the caller is in a live organization, by slug: the one read behind every request that
# names an organization (compiled once, prepared by psycopg).
_MEMBERSHIP_BY_SLUG = (
    select(Organization.id, Organization.slug, Membership.role)
    .join(Membership, Membership.organization_id == Organization.id)
    .where(
        Organization.slug == bindparam("slug"),
        Organization.deleted_at.is_(None),
        Membership.user_id == bindparam("user_id"),
    )
)


class OrganizationRepository(BaseRepository[Organization]):
    model = Organization
    not_found_message = "Organization not found"

    async def slug_taken(self, session: AsyncSession, *, slug: str) -> bool:
        query = select(Organization.id).where(Organization.slug == slug)
        return (await session.execute(query)).first() is not None

    async def of_member(
        self, session: AsyncSession, *, user_id: uuid.UUID
    ) -> list[tuple[Organization, str]]:
        query = (
            select(Organization, Membership.role)
            .join(Membership, Membership.organization_id == Organization.id)
            .where(Membership.user_id == user_id, Organization.deleted_at.is_(None))
            .order_by(Organization.name, Organization.id)
        )
        return [(org, role) for org, role in (await session.execute(query)).all()]

    async def purge_deleted(self, session: AsyncSession, *, before: datetime) -> int:
        """Remove organizations deleted before `before`; their memberships, invitations and
        tenant-owned rows go with them (foreign keys cascade)."""
        result = await session.execute(
            delete(Organization).where(
                Organization.deleted_at.is_not(None), Organization.deleted_at < before
            )
        )
        return rows_affected(result)


class MembershipRepository(BaseRepository[Membership]):
    model = Membership
    not_found_message = "Member not found"

    async def read_by_slug(
        self, connection: AsyncConnection, *, user_id: uuid.UUID, slug: str
    ) -> RowMapping | None:
        result = await connection.execute(_MEMBERSHIP_BY_SLUG, {"slug": slug, "user_id": user_id})
        return result.mappings().first()

    async def find(
        self,
        session: AsyncSession,
        *,
        organization_id: uuid.UUID,
        user_id: uuid.UUID,
        lock: bool = False,
    ) -> Membership | None:
        query = select(Membership).where(
            Membership.organization_id == organization_id, Membership.user_id == user_id
        )
        if lock:
            query = query.with_for_update()
        return (await session.execute(query)).scalar_one_or_none()

    async def of_organization(
        self, session: AsyncSession, *, organization_id: uuid.UUID
    ) -> list[Membership]:
        query = (
            select(Membership)
            .where(Membership.organization_id == organization_id)
            .order_by(Membership.created_at, Membership.id)
        )
        return list((await session.execute(query)).scalars().all())

    async def of_user(self, session: AsyncSession, *, user_id: uuid.UUID) -> list[Membership]:
        """The account's memberships of live organizations, oldest first, locked until the
        transaction ends."""
        query = (
            select(Membership)
            .join(Organization, Organization.id == Membership.organization_id)
            .where(Membership.user_id == user_id, Organization.deleted_at.is_(None))
            .order_by(Membership.created_at, Membership.id)
            .with_for_update(of=Membership)
        )
        return list((await session.execute(query)).scalars())

    async def heir(self, session: AsyncSession, *, organization_id: uuid.UUID) -> Membership | None:
        """Who inherits the ownership: the longest-standing admin, else the longest-standing
        member; locked until the transaction ends."""
        query = (
            select(Membership)
            .where(
                Membership.organization_id == organization_id,
                Membership.role != OrgRole.OWNER.value,
            )
            .order_by(
                case((Membership.role == OrgRole.ADMIN.value, 0), else_=1),
                Membership.created_at,
                Membership.id,
            )
            .limit(1)
            .with_for_update()
        )
        return (await session.execute(query)).scalar_one_or_none()


class InvitationRepository(BaseRepository[Invitation]):
    model = Invitation
    not_found_message = "Invitation not found"

    async def open_in(
        self, session: AsyncSession, *, organization_id: uuid.UUID, id: uuid.UUID | None = None
    ) -> list[Invitation]:
        """The organization's invitations not yet accepted or revoked (expired included)."""
        query = select(Invitation).where(
            Invitation.organization_id == organization_id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        if id is not None:
            query = query.where(Invitation.id == id)
        return list((await session.execute(query.order_by(Invitation.created_at))).scalars())

    async def open_for(
        self, session: AsyncSession, *, organization_id: uuid.UUID, email: str
    ) -> Invitation | None:
        query = select(Invitation).where(
            Invitation.organization_id == organization_id,
            func.lower(Invitation.email) == email.lower(),
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def claim(
        self, session: AsyncSession, *, token_hash: str, now: datetime
    ) -> Invitation | None:
        """Spend the open, unexpired invitation with this token, in one statement: of two
        acceptances at once, one gets it."""
        result = await session.execute(
            update(Invitation)
            .where(
                Invitation.token_hash == token_hash,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
            )
            .values(accepted_at=now, updated_at=now)
            .returning(Invitation)
            .execution_options(synchronize_session=False)
        )
        return result.scalar_one_or_none()

    async def peek(
        self, session: AsyncSession, *, token_hash: str, now: datetime
    ) -> Invitation | None:
        """The open, unexpired invitation with this token, unspent."""
        query = select(Invitation).where(
            Invitation.token_hash == token_hash,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        return (await session.execute(query)).scalar_one_or_none()
