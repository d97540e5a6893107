"""Request and response models of the organizations module, and its gateway's DTOs."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from app.modules.users import Email, Password, Username

Slug = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=2, max_length=50),
    AfterValidator(str.lower),
    Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$"),
]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
InvitableRole = Literal["member", "admin"]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Output(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class OrganizationCreate(_Input):
    name: Name
    slug: Slug


class OrganizationUpdate(_Input):
    name: Name


class OrganizationOut(_Output):
    id: uuid.UUID
    name: str
    slug: str
    created_at: datetime


class MyOrganization(OrganizationOut):
    """An organization as one of its members sees it: with their role."""

    role: str


class MemberOut(_Output):
    user_id: uuid.UUID
    username: str
    email: str
    role: str
    joined_at: datetime


class MemberRoleChange(_Input):
    role: InvitableRole


class OwnershipTransfer(_Input):
    user_id: uuid.UUID


class InvitationCreate(_Input):
    email: Email
    role: InvitableRole = "member"


class InvitationOut(_Output):
    id: uuid.UUID
    email: str
    role: str
    expires_at: datetime
    created_at: datetime


class InvitationToken(_Input):
    token: Annotated[str, Field(min_length=1, max_length=200)]


class InvitationSignUp(InvitationToken):
    """Accept an invitation with a new account, for the invited address."""

    username: Username
    password: Password


class MembershipDTO(_Output):
    """What other modules may learn about a membership."""

    organization_id: uuid.UUID
    user_id: uuid.UUID
    role: str
