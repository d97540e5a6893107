"""Settings of the auth module (environment prefix AUTH_). The JWT key is the core SECRET_KEY."""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from app.core.config import AppSettings
from app.core.ratelimit import LimitSetting


class AuthSettings(AppSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    access_token_ttl_seconds: int = Field(default=900, ge=30, le=86_400)
    refresh_token_ttl_days: int = Field(default=30, ge=1, le=365)
    # A sign-in session ends this long after sign-in, however often it is refreshed...
    session_lifetime_days: int = Field(default=30, ge=1, le=365)
    # ... and this long after its last refresh.
    session_idle_timeout_hours: int = Field(default=168, ge=1, le=8760)
    jwt_issuer: str = "app"
    jwt_audience: str = "app-api"
    verify_email_ttl_hours: int = Field(default=48, ge=1, le=720)
    password_reset_ttl_minutes: int = Field(default=30, ge=5, le=1440)
    unverified_login_allowed: bool = True
    frontend_url: str = "http://localhost:3000"
    login_rate_limit_ip: LimitSetting = "20/minute"
    register_rate_limit_ip: LimitSetting = "10/hour"
    email_rate_limit: LimitSetting = "3/hour"
    token_retention_days: int = Field(default=7, ge=0, le=365)

    @property
    def session_lifetime(self) -> timedelta:
        return timedelta(days=self.session_lifetime_days)

    @property
    def session_idle_timeout(self) -> timedelta:
        return timedelta(hours=self.session_idle_timeout_hours)

    @field_validator("frontend_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


@lru_cache(maxsize=1)
def load_auth_settings() -> AuthSettings:
    """Read once from the environment; outside requests (tasks, the CLI) call this."""
    return AuthSettings()


async def get_auth_settings() -> AuthSettings:
    """The dependency (async: FastAPI runs sync dependencies in a thread pool)."""
    return load_auth_settings()


AuthSettingsDep = Annotated[AuthSettings, Depends(get_auth_settings)]
