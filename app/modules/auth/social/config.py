"""Settings of social sign-in (environment prefix AUTH_, beside the auth module's own)."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Literal

from fastapi import Depends
from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_settings import SettingsConfigDict

from app.core.config import AppSettings

GOOGLE_DISCOVERY_URL = "https://accounts.google.com/.well-known/openid-configuration"
GITHUB = {
    "authorize_url": "https://github.com/login/oauth/authorize",
    "token_url": "https://github.com/login/oauth/access_token",
    "api_base_url": "https://api.github.com/",
    "scope": "read:user user:email",
}


class SocialProvider(BaseModel):
    """One provider. `google` and `github` need only the client's id and secret; any other
    name is an OpenID Connect issuer and needs its `discovery_url`. Every URL may be
    overridden (a GitHub Enterprise server, a test provider), and `link_by_email` set."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    client_id: str = Field(min_length=1)
    client_secret: str = ""
    kind: Literal["oidc", "github"] = "oidc"
    discovery_url: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    api_base_url: str | None = None
    scope: str = "openid email profile"
    # Whether a verified address this provider vouches for signs in to the existing account
    # with that address. True by default for Google and GitHub only: any other issuer may
    # let its users claim any address ("nOAuth"), so it is trusted with none unless told.
    link_by_email: bool = False


def _with_presets(name: str, config: SocialProvider) -> SocialProvider:
    given = config.model_dump(exclude_unset=True)
    if name == "github":
        return SocialProvider.model_validate(
            {"kind": "github", "link_by_email": True, **GITHUB, **given}
        )
    if name == "google":
        return SocialProvider.model_validate(
            {"discovery_url": GOOGLE_DISCOVERY_URL, "link_by_email": True, **given}
        )
    return config


class SocialSettings(AppSettings):
    model_config = SettingsConfigDict(env_prefix="AUTH_")

    # JSON: {"google": {"client_id": "...", "client_secret": "..."}, "github": {...},
    # "corp": {"discovery_url": "https://id.example.com/.well-known/openid-configuration", ...}}
    social_providers: dict[str, SocialProvider] = Field(default_factory=dict)
    # Where providers send the browser back; "{provider}" is replaced. Empty: this API's own
    # callback, /api/v1/auth/social/<provider>/callback.
    social_redirect_url: str = ""
    social_flow_ttl_seconds: int = Field(default=600, ge=60, le=3600)

    @model_validator(mode="after")
    def _presets(self) -> SocialSettings:
        for name, config in list(self.social_providers.items()):
            provider = _with_presets(name, config)
            if provider.kind == "oidc" and provider.discovery_url is None:
                raise ValueError(f"AUTH_SOCIAL_PROVIDERS: {name!r} needs a discovery_url")
            if provider.kind == "github" and None in (provider.authorize_url, provider.token_url):
                raise ValueError(f"AUTH_SOCIAL_PROVIDERS: {name!r} needs its URLs")
            self.social_providers[name] = provider
        return self

    def providers_key(self) -> str:
        """The providers as one hashable value (the authlib registry is built once per value)."""
        return json.dumps(
            {name: p.model_dump() for name, p in self.social_providers.items()}, sort_keys=True
        )


@lru_cache(maxsize=1)
def load_social_settings() -> SocialSettings:
    return SocialSettings()


async def get_social_settings() -> SocialSettings:
    return load_social_settings()


SocialSettingsDep = Annotated[SocialSettings, Depends(get_social_settings)]
