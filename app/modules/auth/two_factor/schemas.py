"""Request and response models of two-factor sign-in."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from app.modules.auth.schemas import BrowserSession, TokenPair
from app.modules.users import Password

# A 6-digit TOTP code, or a recovery code (dashes and spaces ignored).
Code = Annotated[str, Field(min_length=6, max_length=32, examples=["123456", "3f9a1-c07d2"])]
Challenge = Annotated[str, Field(min_length=16, max_length=2048)]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SecondFactorRequired(BaseModel):
    """What sign-in answers instead of tokens when a second step is needed: a code for an
    enrolled account (`totp`), or, for an administrator who must enrol first
    (AUTH_ADMIN_2FA_REQUIRED), enrolment (`enrol`)."""

    second_factor_required: Literal[True] = True
    method: Literal["totp", "enrol"]
    challenge: str = Field(description="send it back with the code; single sign-in, short-lived")
    expires_in: int = Field(description="seconds the challenge stays valid")


class Enrolment(BaseModel):
    secret: str = Field(description="base32 TOTP secret, for typing into an authenticator app")
    otpauth_uri: str = Field(description="otpauth://totp/... as the QR code encodes it")
    qr_svg: str = Field(description="the otpauth URI as an inline SVG QR code")


class EnrolIn(_Input):
    current_password: Password


class CodeIn(_Input):
    code: Code


class ChallengeIn(_Input):
    challenge: Challenge


class ChallengeCodeIn(_Input):
    challenge: Challenge
    code: Code


class DisableIn(_Input):
    password: Password
    code: Code


class RecoveryCodes(BaseModel):
    recovery_codes: list[str] = Field(description="shown once: each works once instead of a code")


class EnrolledSignIn(RecoveryCodes):
    tokens: TokenPair | BrowserSession


class TwoFactorStatus(BaseModel):
    enabled: bool
    pending: bool = Field(description="enrolment started, not confirmed yet")
    recovery_codes_left: int
