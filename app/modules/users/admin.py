"""The users' view in the admin panel: search, filters, and the changes an administrator may
make (role, activation, verification), through `UsersService` so its rules hold (the last
active administrator cannot be demoted or deactivated; a deactivated account is signed out)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import Request
from sqladmin import ModelView
from sqladmin.filters import BooleanFilter, StaticValuesFilter
from sqlalchemy import Select, select
from wtforms import SelectField

from app.core.admin import record_change
from app.modules.users.config import load_users_settings
from app.modules.users.models import Role, User
from app.modules.users.services import UsersService

MANAGED = ("role", "is_active", "is_verified")
ROLES = [(role.value, role.value) for role in Role]


class UserAdmin(ModelView, model=User):
    name = "User"
    name_plural = "Users"
    icon = "fa-solid fa-user"
    can_create = False  # accounts are made by sign-up or `app create-superuser`
    can_delete = False  # deletion ends sessions and publishes an event: the API does it
    can_export = False
    column_list = [
        User.username, User.email, User.role, User.is_active, User.is_verified, User.created_at
    ]  # fmt: skip
    column_searchable_list = [User.username, User.email]
    column_sortable_list = [User.username, User.email, User.created_at]
    column_default_sort = [(User.created_at, True)]
    column_filters = [
        StaticValuesFilter(User.role, values=ROLES),
        BooleanFilter(User.is_active),
        BooleanFilter(User.is_verified),
    ]
    column_details_exclude_list = [User.password_hash, User.version, User.avatar_key]
    form_columns = [User.role, User.is_active, User.is_verified]
    form_overrides = {"role": SelectField}
    form_args = {"role": {"choices": ROLES}}

    def list_query(self, request: Request) -> Select[Any]:
        return select(User).where(User.deleted_at.is_(None))

    def details_query(self, request: Request) -> Select[Any]:
        return super().details_query(request).where(User.deleted_at.is_(None))

    async def update_model(self, request: Request, pk: str, data: dict[str, Any]) -> Any:
        """Through the users service, acting as the signed-in administrator; a refusal (409,
        403) is shown on the form."""
        async with self.session_maker() as session:
            service = UsersService(session, load_users_settings())
            user = await service.get(user_id=uuid.UUID(pk))
            changes = {name: data[name] for name in MANAGED
                       if name in data and data[name] != getattr(user, name)}  # fmt: skip
            if changes:
                user = await service.update(
                    actor=request.state.principal, user=user, changes=dict(changes), client="admin"
                )
        record_change(request, action="update", identity=self.identity, pk=pk, changes=changes)
        return user
