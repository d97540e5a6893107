"""Who may do what to a user. Routes and services both ask these functions."""

from __future__ import annotations

import uuid
from typing import Protocol

from app.modules.users.config import UsersSettings
from app.modules.users.models import Role


class Actor(Protocol):
    @property
    def id(self) -> uuid.UUID: ...

    @property
    def role(self) -> str: ...


def is_admin(actor: Actor) -> bool:
    return actor.role == Role.ADMIN


def can_list(actor: Actor) -> bool:
    return is_admin(actor)


def can_view(actor: Actor, target: Actor) -> bool:
    return is_admin(actor) or actor.id == target.id


def can_update(actor: Actor, target: Actor) -> bool:
    return is_admin(actor) or actor.id == target.id


def can_manage(actor: Actor) -> bool:
    """Change role, activation or verification: admins only."""
    return is_admin(actor)


def can_delete(actor: Actor, target: Actor, settings: UsersSettings) -> bool:
    if actor.id == target.id:
        return settings.self_delete_allowed
    return is_admin(actor)
