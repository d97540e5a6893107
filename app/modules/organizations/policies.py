"""Who may do what in an organization. Roles, weakest first: member, admin, owner."""

from __future__ import annotations

from app.modules.organizations.models import OrgRole


def rank(role: str) -> int:
    return list(OrgRole).index(OrgRole(role))


def can_manage(role: str) -> bool:
    """Rename the organization, invite, resend and revoke invitations: admins and the owner."""
    return rank(role) >= rank(OrgRole.ADMIN)


def can_invite_as(role: str, invited_role: str) -> bool:
    return can_manage(role) and rank(invited_role) <= rank(role)


def can_remove(role: str, target_role: str) -> bool:
    """The owner removes anyone else; an admin removes members. Nobody removes the owner (the
    owner transfers ownership first): an organization always has one."""
    if target_role == OrgRole.OWNER:
        return False
    return rank(role) > rank(target_role)


def can_change_roles(role: str) -> bool:
    return role == OrgRole.OWNER


def can_transfer(role: str) -> bool:
    return role == OrgRole.OWNER


def can_delete(role: str) -> bool:
    return role == OrgRole.OWNER


def can_leave(role: str) -> bool:
    """The owner cannot leave: ownership is transferred first, so an owner always remains."""
    return role != OrgRole.OWNER
