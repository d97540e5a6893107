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
    csrf_token: str | None = Field(
        default=None,
        description="set when the session cookies were set too (AUTH_TRANSPORT=both): send it "
        "in X-CSRF-Token with state-changing requests that the cookies authenticate",
    )


class BrowserSession(BaseModel):
    """A sign-in whose tokens are in HttpOnly cookies only (AUTH_TRANSPORT=cookie, or a
    refresh by cookie)."""

    token_type: Literal["cookie"] = "cookie"  # noqa: S105
    expires_in: int = Field(description="seconds until the access cookie expires")
    refresh_expires_in: int = Field(description="seconds until the refresh cookie expires")
    csrf_token: str = Field(
        description="send it in X-CSRF-Token with every state-changing request (it is also in "
        "the csrf_token cookie)"
    )


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
