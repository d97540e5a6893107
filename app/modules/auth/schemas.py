"""Request and response models of the auth module."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.modules.users import Email, Password, Username

OpaqueToken = Annotated[str, Field(min_length=16, max_length=256)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterIn(_Input):
    email: Email
    username: Username
    password: Password


class TokenPair(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105
    expires_in: int = Field(description="seconds until the access token expires")
    refresh_token: str
    refresh_expires_in: int = Field(description="seconds until the refresh token expires")


class RefreshIn(_Input):
    refresh_token: OpaqueToken


class TokenIn(_Input):
    token: OpaqueToken


class EmailIn(_Input):
    email: Email


class PasswordResetIn(_Input):
    token: OpaqueToken
    new_password: Password


class Accepted(BaseModel):
    detail: str
