"""Settings of the users module (environment prefix USERS_)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from fastapi import Depends
from pydantic import Field
from pydantic_settings import SettingsConfigDict

from app.core.config import AppSettings
from app.core.ratelimit import LimitSetting
from app.core.security import HashingParams


class UsersSettings(AppSettings):
    model_config = SettingsConfigDict(env_prefix="USERS_")

    password_min_length: int = Field(default=10, ge=8, le=128)
    # zxcvbn's score (0-4) a new password needs: 3 is "safely unguessable" by its measure.
    password_min_strength: int = Field(default=3, ge=0, le=4)
    # Password attempts (sign-in, and the checks of a password or email change or an account
    # deletion): per account and client, and per account from anywhere.
    password_attempts_per_client: LimitSetting = "5/minute"  # noqa: S105 (a rate)
    password_attempts_per_account: LimitSetting = "20/hour"  # noqa: S105 (a rate)
    self_delete_allowed: bool = True
    # The largest avatar image accepted (PUT /users/me/avatar), in bytes.
    avatar_max_bytes: int = Field(default=512 * 1024, ge=1024, le=50 * 1024 * 1024)
    password_hash_time_cost: int = Field(default=3, ge=1, le=20)
    password_hash_memory_kib: int = Field(default=65_536, ge=1_024, le=4_194_304)
    password_hash_parallelism: int = Field(default=4, ge=1, le=64)

    @property
    def hashing(self) -> HashingParams:
        return HashingParams(
            time_cost=self.password_hash_time_cost,
            memory_cost=self.password_hash_memory_kib,
            parallelism=self.password_hash_parallelism,
        )


@lru_cache(maxsize=1)
def load_users_settings() -> UsersSettings:
    """Read once from the environment; outside requests (tasks, the CLI) call this."""
    return UsersSettings()


async def get_users_settings() -> UsersSettings:
    """The dependency (async: FastAPI runs sync dependencies in a thread pool)."""
    return load_users_settings()


UsersSettingsDep = Annotated[UsersSettings, Depends(get_users_settings)]
