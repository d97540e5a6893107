"""Who may do what to a user. Routes and services both ask these functions."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Protocol

from app.modules.users.config import UsersSettings
from app.modules.users.models import Role


class Actor(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def role(self) -> str: ...


class Account(Actor, Protocol):
    @property
    def is_active(self) -> bool: ...


def is_admin(actor: Actor) -> bool:
    return actor.role == Role.ADMIN


def can_list(actor: Actor) -> bool:
    return is_admin(actor)


def can_view(actor: Actor, target_id: uuid.UUID) -> bool:
    return is_admin(actor) or actor.id == target_id


def can_update(actor: Actor, target: Actor) -> bool:
    return is_admin(actor) or actor.id == target.id


def can_manage(actor: Actor) -> bool:
    """Change role, activation or verification: admins only."""
    return is_admin(actor)


def removes_admin(target: Account, changes: Mapping[str, Any] | None) -> bool:
    """Whether `changes` (None: deletion) take an active administrator's powers away."""
    if not (is_admin(target) and target.is_active):
        return False
    if changes is None:
        return True
    demoted = "role" in changes and str(changes["role"]) != Role.ADMIN
    return demoted or changes.get("is_active") is False


def can_remove_admin(active_admins: int) -> bool:
    """An administrator may be demoted, deactivated or deleted only if another remains: the
    last one cannot lock everyone out of administration (by mistake or with a stolen token)."""
    return active_admins > 1


def needs_password(actor: Actor, target: Account, changes: Mapping[str, Any]) -> bool:
    """Changing your own email needs your password: else a stolen access token could move the
    account to the thief's address and take it over with a password reset."""
    email = changes.get("email")
    return actor.id == target.id and email is not None and email != getattr(target, "email", None)


def can_delete(actor: Actor, target: Actor, settings: UsersSettings) -> bool:
    if actor.id == target.id:
        return settings.self_delete_allowed
    return is_admin(actor)
