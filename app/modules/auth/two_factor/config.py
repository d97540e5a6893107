"""Settings of two-factor sign-in (environment prefix AUTH_, beside the auth module's own)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from app.core.config import AppSettings
from app.core.ratelimit import LimitSetting


class TwoFactorSettings(AppSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    # Administrators get no tokens until they have enrolled (sign-in answers an enrolment
    # challenge instead).
    admin_2fa_required: bool = False
    two_factor_issuer: str = Field(default="app", min_length=1, max_length=64)
    two_factor_challenge_ttl_seconds: int = Field(default=300, ge=30, le=1800)
    # Code attempts per account: a short window, and a long one that caps what a guesser
    # holding the password gets however long they keep at it (20 an hour: 480 guesses a day,
    # about a 0.15 % chance a day against a 6-digit code accepted one step either side).
    two_factor_rate_limit: LimitSetting = "5/minute"
    two_factor_hourly_rate_limit: LimitSetting = "20/hour"


@lru_cache(maxsize=1)
def load_two_factor_settings() -> TwoFactorSettings:
    return TwoFactorSettings()


async def get_two_factor_settings() -> TwoFactorSettings:
    return load_two_factor_settings()


TwoFactorSettingsDep = Annotated[TwoFactorSettings, Depends(get_two_factor_settings)]
