"""Use cases of the organizations module. `OrganizationsService` owns the unit of work
(commit), publishes events after it and queues mail through the outbox in the same
transaction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import release_connection, utcnow
from app.core.errors import AppError, Conflict, Forbidden, NotFound
from app.core.events import publish
from app.core.mail import MailService
from app.core.ratelimit import RateLimiter
from app.core.security import hash_token, new_opaque_token
from app.core.tenancy import CurrentOrganization
from app.modules.organizations import policies
from app.modules.organizations.config import OrganizationsSettings
from app.modules.organizations.events import MemberJoined, MemberRemoved, OrganizationDeleted
from app.modules.organizations.models import Invitation, Membership, Organization, OrgRole
from app.modules.organizations.repositories import (
    InvitationRepository,
    MembershipRepository,
    OrganizationRepository,
)
from app.modules.organizations.schemas import InvitationSignUp, MemberOut, MyOrganization
from app.modules.users import EmailTaken, UserCreate, UserDTO, UsersGateway

log = structlog.get_logger("app.organizations")


class SlugTaken(Conflict):
    pass


class InvitationInvalid(AppError):
    """A token that matches no open invitation: unknown, expired, revoked or already used."""

    status_code = 400


_INVALID_INVITATION = "Invalid, expired or already used invitation"


class OrganizationsService:
    def __init__(
        self,
        session: AsyncSession,
        settings: OrganizationsSettings,
        *,
        users: UsersGateway,
        mailer: MailService | None = None,
        limiter: RateLimiter | None = None,
    ) -> None:
        self.session = session
        self.settings = settings
        self.users = users
        self.mailer = mailer
        self.limiter = limiter
        self.organizations = OrganizationRepository()
        self.memberships = MembershipRepository()
        self.invitations = InvitationRepository()

    # --- organizations -----------------------------------------------------------------------

    async def create(self, *, actor_id: uuid.UUID, name: str, slug: str) -> MyOrganization:
        """A new organization, owned by its creator."""
        if await self.organizations.slug_taken(self.session, slug=slug):
            raise SlugTaken("An organization with this slug exists")
        taken = SlugTaken("An organization with this slug exists")
        organization = Organization(id=uuid.uuid4(), name=name, slug=slug)
        self.session.add(organization)
        try:  # the organization before its first membership (no ORM relationship orders them)
            await self.session.flush()
        except IntegrityError:
            await self.session.rollback()
            raise taken from None
        owner = OrgRole.OWNER.value
        self.session.add(Membership(organization_id=organization.id, user_id=actor_id, role=owner))
        publish(
            self.session,
            MemberJoined(organization_id=organization.id, user_id=actor_id, role=owner),
        )
        await self._commit(taken)
        log.info("organization_created", organization_id=str(organization.id))
        return MyOrganization.model_validate({**_fields(organization), "role": owner})

    async def mine(self, *, actor_id: uuid.UUID) -> list[MyOrganization]:
        rows = await self.organizations.of_member(self.session, user_id=actor_id)
        return [MyOrganization.model_validate({**_fields(o), "role": r}) for o, r in rows]

    async def view(self, current: CurrentOrganization) -> MyOrganization:
        organization = await self.organizations.get(self.session, id=current.id)
        return MyOrganization.model_validate({**_fields(organization), "role": current.role})

    async def rename(self, current: CurrentOrganization, *, name: str) -> MyOrganization:
        if not policies.can_manage(current.role):
            raise Forbidden("Only admins may rename the organization")
        organization = await self.organizations.get(self.session, id=current.id)
        await self.organizations.update(self.session, organization, name=name)
        await self.session.commit()
        return MyOrganization.model_validate({**_fields(organization), "role": current.role})

    async def delete(self, current: CurrentOrganization, *, actor_id: uuid.UUID) -> None:
        """Soft delete: no member reaches it from this commit on; its data stays until the
        purge (ORGANIZATIONS_PURGE_AFTER_DAYS)."""
        await self._hold_role(current, actor_id, policies.can_delete, "Only the owner may delete")
        await self._soft_delete(current.id)
        await self.session.commit()
        log.info("organization_deleted", organization_id=str(current.id), by=str(actor_id))

    async def purge_deleted(self) -> int:
        """Remove the organizations deleted more than ORGANIZATIONS_PURGE_AFTER_DAYS ago, with
        everything that belongs to them."""
        before = utcnow() - timedelta(days=self.settings.purge_after_days)
        purged = await self.organizations.purge_deleted(self.session, before=before)
        await self.session.commit()
        if purged:
            log.info("organizations_purged", count=purged)
        return purged

    # --- members -----------------------------------------------------------------------------

    async def members(self, current: CurrentOrganization) -> list[MemberOut]:
        """Oldest first; their accounts read in one query, however many they are (a deleted
        account's membership, until it ends, is not shown)."""
        found = await self.memberships.of_organization(self.session, organization_id=current.id)
        users = await self.users.get_many([membership.user_id for membership in found])
        return [
            _member_out(membership, users[membership.user_id])
            for membership in found
            if membership.user_id in users
        ]

    async def remove(
        self, current: CurrentOrganization, *, actor_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        """Access ends with the commit: every request checks membership afresh."""
        actor = await self._hold_role(current, actor_id, policies.can_manage, "Admins only")
        target = await self._member(current, user_id)
        if target.user_id == actor_id:
            raise Conflict("Leave the organization instead of removing yourself")
        if not policies.can_remove(actor.role, target.role):
            raise Forbidden("You may not remove this member")
        await self.memberships.hard_delete(self.session, target)
        publish(
            self.session,
            MemberRemoved(organization_id=current.id, user_id=user_id, by_id=actor_id),
        )
        await self.session.commit()

    async def leave(self, current: CurrentOrganization, *, actor_id: uuid.UUID) -> None:
        membership = await self._member(current, actor_id, lock=True)
        if not policies.can_leave(membership.role):
            raise Conflict("The owner cannot leave: transfer ownership first")
        await self.memberships.hard_delete(self.session, membership)
        publish(
            self.session,
            MemberRemoved(organization_id=current.id, user_id=actor_id, by_id=actor_id),
        )
        await self.session.commit()

    async def end_memberships(self, *, user_id: uuid.UUID) -> None:
        """A deleted account leaves every organization, in one transaction (`UserDeleted`).

        - Idempotent: a second run finds no membership left and changes nothing.
        - Each membership of a live organization is deleted, with a MemberRemoved by the account
          itself; those of deleted organizations go with the purge.
        - An owned organization passes to the longest-standing admin, else the longest-standing
          member, who is told by mail (their own template: nobody transferred it, nobody stays).
        - An heir whose account is deleted too passes it on when their own deletion is
          processed; a deleted account gets no mail.
        - An owned organization with no member left is soft-deleted as its owner would delete it.
        """
        ended = await self.memberships.of_user(self.session, user_id=user_id)
        for membership in ended:
            await self.memberships.hard_delete(self.session, membership)
            if membership.role == OrgRole.OWNER:  # stepped down above: one owner at a time
                await self._pass_ownership(membership.organization_id)
            publish(
                self.session,
                MemberRemoved(
                    organization_id=membership.organization_id, user_id=user_id, by_id=user_id
                ),
            )
        await self.session.commit()
        if ended:
            log.info("memberships_ended", user_id=str(user_id), count=len(ended))

    async def change_role(
        self, current: CurrentOrganization, *, actor_id: uuid.UUID, user_id: uuid.UUID, role: str
    ) -> MemberOut:
        await self._hold_role(current, actor_id, policies.can_change_roles, "Owner only")
        target = await self._member(current, user_id, lock=True)
        if target.role == OrgRole.OWNER:
            raise Conflict("Transfer ownership to change the owner's role")
        await self.memberships.update(self.session, target, role=role)
        await self.session.commit()
        return await self._member_out(target)

    async def transfer(
        self, current: CurrentOrganization, *, actor_id: uuid.UUID, user_id: uuid.UUID
    ) -> None:
        """The member becomes the owner, the owner an admin, in one transaction; both are told
        by mail when it commits."""
        owner = await self._hold_role(current, actor_id, policies.can_transfer, "Owner only")
        target = await self._member(current, user_id, lock=True)
        if target.user_id == owner.user_id:
            raise Conflict("You already own this organization")
        # One owner at a time (a unique index): the old one steps down first.
        await self.memberships.update(self.session, owner, role=OrgRole.ADMIN.value)
        await self.memberships.update(self.session, target, role=OrgRole.OWNER.value)
        organization = await self.organizations.get(self.session, id=current.id)
        new_owner = await self.users.get_by_id(target.user_id)
        old_owner = await self.users.get_by_id(owner.user_id)
        for user in (new_owner, old_owner):
            if user is not None:
                self._mail(
                    user.email,
                    "organizations/ownership_transferred",
                    organization=organization.name,
                    new_owner=new_owner.username if new_owner else "",
                    old_owner=old_owner.username if old_owner else "",
                )
        await self.session.commit()
        log.info("ownership_transferred", organization_id=str(current.id), to=str(user_id))

    # --- invitations -------------------------------------------------------------------------

    async def invite(
        self, current: CurrentOrganization, *, actor_id: uuid.UUID, email: str, role: str
    ) -> Invitation:
        if not policies.can_invite_as(current.role, role):
            raise Forbidden("You may not invite members with this role")
        existing = await self.users.get_by_email(email)
        if existing is not None and await self.memberships.find(
            self.session, organization_id=current.id, user_id=existing.id
        ):
            raise Conflict("This address belongs to a member already")
        if await self.invitations.open_for(self.session, organization_id=current.id, email=email):
            raise Conflict("This address is invited already; resend the invitation")
        token = new_opaque_token()
        invitation = Invitation(
            organization_id=current.id,
            email=email,
            role=role,
            token_hash=hash_token(token),
            expires_at=utcnow() + timedelta(hours=self.settings.invitation_ttl_hours),
            invited_by_id=actor_id,
        )
        self.session.add(invitation)
        await self._mail_invitation(current, invitation, token)
        await self._commit(Conflict("This address is invited already; resend the invitation"))
        return invitation

    async def open_invitations(self, current: CurrentOrganization) -> list[Invitation]:
        if not policies.can_manage(current.role):
            raise Forbidden("Only admins may see invitations")
        return await self.invitations.open_in(self.session, organization_id=current.id)

    async def resend(self, current: CurrentOrganization, *, invitation_id: uuid.UUID) -> Invitation:
        """A new link with a new expiry; the old link stops working."""
        invitation = await self._open_invitation(current, invitation_id)
        token = new_opaque_token()
        invitation.token_hash = hash_token(token)
        invitation.expires_at = utcnow() + timedelta(hours=self.settings.invitation_ttl_hours)
        await self._mail_invitation(current, invitation, token)
        await self.session.commit()
        return invitation

    async def revoke(self, current: CurrentOrganization, *, invitation_id: uuid.UUID) -> None:
        invitation = await self._open_invitation(current, invitation_id)
        invitation.revoked_at = utcnow()
        await self.session.commit()

    async def accept(self, *, actor_id: uuid.UUID, token: str) -> MyOrganization:
        """The signed-in account joins, if the invitation is for its address."""
        user = await self.users.get_by_id(actor_id)
        invitation = await self.invitations.claim(
            self.session, token_hash=hash_token(token), now=utcnow()
        )
        if user is None or invitation is None:
            raise InvitationInvalid(_INVALID_INVITATION)
        if invitation.email.lower() != user.email.lower():
            raise Forbidden("This invitation is for another email address")
        return await self._join(invitation, user.id)

    async def sign_up(self, data: InvitationSignUp) -> MyOrganization:
        """A new account for the invited address joins. Its address is verified: the link was
        mailed to it."""
        invitation = await self.invitations.peek(
            self.session, token_hash=hash_token(data.token), now=utcnow()
        )
        if invitation is None:
            raise InvitationInvalid(_INVALID_INVITATION)
        if await self.users.get_by_email(invitation.email) is not None:
            raise EmailTaken("An account with this address exists: sign in and accept")
        email = invitation.email
        await release_connection(self.session)  # no transaction held while the password hashes
        user = await self.users.create(
            UserCreate(
                email=email, username=data.username, password=data.password, is_verified=True
            )
        )
        claimed = await self.invitations.claim(
            self.session, token_hash=hash_token(data.token), now=utcnow()
        )
        if claimed is None:  # spent by someone else meanwhile; the account stays
            raise InvitationInvalid(_INVALID_INVITATION)
        return await self._join(claimed, user.id)

    # --- helpers -----------------------------------------------------------------------------

    async def _join(self, invitation: Invitation, user_id: uuid.UUID) -> MyOrganization:
        organization = await self.organizations.get_or_none(
            self.session, id=invitation.organization_id
        )
        if organization is None:
            raise InvitationInvalid(_INVALID_INVITATION)
        membership = await self.memberships.find(
            self.session, organization_id=organization.id, user_id=user_id
        )
        if membership is None:
            membership = Membership(
                organization_id=organization.id, user_id=user_id, role=invitation.role
            )
            self.session.add(membership)
            publish(
                self.session,
                MemberJoined(
                    organization_id=organization.id, user_id=user_id, role=invitation.role
                ),
            )
        await self._commit(Conflict("Already a member"))
        return MyOrganization.model_validate({**_fields(organization), "role": membership.role})

    async def _soft_delete(self, organization_id: uuid.UUID) -> None:
        organization = await self.organizations.get(self.session, id=organization_id)
        await self.organizations.delete(self.session, organization)
        publish(self.session, OrganizationDeleted(organization_id=organization_id))

    async def _pass_ownership(self, organization_id: uuid.UUID) -> None:
        """To the organization's heir, told by mail with the commit; with no member left, the
        organization is deleted."""
        heir = await self.memberships.heir(self.session, organization_id=organization_id)
        if heir is None:
            await self._soft_delete(organization_id)
            log.info("organization_deleted", organization_id=str(organization_id), no_member=True)
            return
        was = heir.role
        await self.memberships.update(self.session, heir, role=OrgRole.OWNER.value)
        user = await self.users.get_by_id(heir.user_id)
        if user is not None:
            organization = await self.organizations.get(self.session, id=organization_id)
            self._mail(
                user.email,
                "organizations/ownership_inherited",
                organization=organization.name,
                username=user.username,
                role=was,
            )
        log.info("ownership_inherited", organization_id=str(organization_id), to=str(heir.user_id))

    async def _hold_role(
        self,
        current: CurrentOrganization,
        actor_id: uuid.UUID,
        allowed: Callable[[str], bool],
        message: str,
    ) -> Membership:
        """The caller's membership, locked until the commit, checked again under the lock: a
        concurrent demotion or transfer cannot slip between the check and the change."""
        membership = await self._member(current, actor_id, lock=True)
        if not allowed(membership.role):
            raise Forbidden(message)
        return membership

    async def _member(
        self, current: CurrentOrganization, user_id: uuid.UUID, *, lock: bool = False
    ) -> Membership:
        membership = await self.memberships.find(
            self.session, organization_id=current.id, user_id=user_id, lock=lock
        )
        if membership is None:  # of another organization, or of none: alike
            raise NotFound("Member not found")
        return membership

    async def _member_out(self, membership: Membership) -> MemberOut:
        user = await self.users.get_by_id(membership.user_id)
        if user is None:
            raise NotFound("Member not found")
        return _member_out(membership, user)

    async def _open_invitation(
        self, current: CurrentOrganization, invitation_id: uuid.UUID
    ) -> Invitation:
        if not policies.can_manage(current.role):
            raise Forbidden("Only admins may manage invitations")
        found = await self.invitations.open_in(
            self.session, organization_id=current.id, id=invitation_id
        )
        if not found:
            raise NotFound("Invitation not found")
        return found[0]

    async def _mail_invitation(
        self, current: CurrentOrganization, invitation: Invitation, token: str
    ) -> None:
        """Within the organization's budget of invitation mails (429 beyond it)."""
        if self.limiter is None:
            raise RuntimeError("invitation mails are budgeted; this use case needs the limiter")
        await self.limiter.hit(
            key=str(current.id),
            limit=self.settings.invitation_mail_limit,
            scope="organization_invitations",
        )
        organization = await self.organizations.get(self.session, id=current.id)
        # In the fragment: a browser sends it to no server, Referer and access logs included.
        self._mail(
            invitation.email,
            "organizations/invitation",
            organization=organization.name,
            role=invitation.role,
            link=f"{self.settings.invitation_url}#token={token}",
            ttl_hours=self.settings.invitation_ttl_hours,
        )

    def _mail(self, to: str, template: str, **context: Any) -> None:
        """Through the outbox: sent if, and only if, the use case commits."""
        if self.mailer is None:
            raise RuntimeError("this use case mails; it needs the mailer")
        self.mailer.queue_template(self.session, to=to, template=template, context=context)

    async def _commit(self, conflict: Conflict) -> None:
        try:
            await self.session.commit()
        except IntegrityError:
            await self.session.rollback()
            raise conflict from None


def _member_out(membership: Membership, user: UserDTO) -> MemberOut:
    return MemberOut(
        user_id=user.id,
        username=user.username,
        email=user.email,
        role=membership.role,
        joined_at=membership.created_at,
    )


def _fields(organization: Organization) -> dict[str, Any]:
    return {
        "id": organization.id,
        "name": organization.name,
        "slug": organization.slug,
        "created_at": organization.created_at,
    }
