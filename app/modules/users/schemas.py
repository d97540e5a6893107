"""Request and response models of the users module, and the DTOs its gateway returns."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints

from app.modules.users.models import Role

Username = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$"
    ),
    AfterValidator(str.lower),
]
# The upper bound keeps a hash request from becoming a denial of service.
Password = Annotated[str, Field(min_length=1, max_length=128)]
Email = Annotated[EmailStr, Field(max_length=320)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class UserDTO(BaseModel):
    """A user as other modules and clients see it: never the password hash."""

    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: uuid.UUID
    email: str
    username: str
    role: Role
    is_active: bool
    is_verified: bool
    created_at: datetime
    updated_at: datetime
    # Where the avatar is stored; clients get a download URL instead (UserOut.avatar_url).
    avatar_key: str | None = Field(default=None, exclude=True)


class UserOut(UserDTO):
    """A user as the API shows it: with a download URL of the avatar, good for a while."""

    avatar_url: str | None = None


class UserCreate(_Input):
    email: Email
    username: Username
    password: Password
    role: Role = Role.USER
    is_active: bool = True
    is_verified: bool = False


class UserUpdateMe(_Input):
    """What users may change about themselves. A new email must be verified again, and
    changing your own email needs `current_password`."""

    email: Email | None = None
    username: Username | None = None
    current_password: Password | None = None


class UserUpdate(UserUpdateMe):
    """What may change about a user: role, activation and verification by administrators."""

    role: Role | None = None
    is_active: bool | None = None
    is_verified: bool | None = None


class PasswordChange(_Input):
    current_password: Password
    new_password: Password


class AccountDeletion(_Input):
    """Deleting your own account needs your password."""

    current_password: Password


def changes(model: BaseModel) -> dict[str, Any]:
    """The fields the client actually sent, without explicit nulls."""
    return {
        name: value
        for name, value in model.model_dump(exclude_unset=True).items()
        if value is not None
    }
