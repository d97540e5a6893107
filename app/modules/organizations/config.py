"""Settings of the organizations module (environment prefix ORGANIZATIONS_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from pydantic import Field, field_validator
from pydantic_settings import SettingsConfigDict

from app.core.config import AppSettings
from app.core.ratelimit import LimitSetting


class OrganizationsSettings(AppSettings):
    model_config = SettingsConfigDict(env_prefix="ORGANIZATIONS_")

    invitation_ttl_hours: int = Field(default=72, ge=1, le=24 * 30)
    # The frontend page an invitation links to; the token goes in its fragment.
    invitation_url: str = "http://localhost:3000/invitations/accept"
    # Invitation mails (invitations and resends) per organization: an admin's account, or a
    # stolen token, cannot turn the app into a mailer to arbitrary addresses.
    invitation_mail_limit: LimitSetting = "30/hour"
    # A deleted organization's data is kept this long, then purged by a scheduled task.
    purge_after_days: int = Field(default=30, ge=0, le=3650)

    @field_validator("invitation_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value


@lru_cache(maxsize=1)
def load_organizations_settings() -> OrganizationsSettings:
    """Read once from the environment; outside requests (tasks, the CLI) call this."""
    return OrganizationsSettings()


async def get_organizations_settings() -> OrganizationsSettings:
    return load_organizations_settings()


OrganizationsSettingsDep = Annotated[OrganizationsSettings, Depends(get_organizations_settings)]
