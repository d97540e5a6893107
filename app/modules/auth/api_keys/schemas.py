"""Request and response models of API keys."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.core.auth import Scope
from app.modules.users import Password

MAX_LIFETIME_DAYS = 365


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1, max_length=100)]
    scopes: Annotated[list[Scope], Field(min_length=1, max_length=len(Scope))] = Field(
        description="`read` (safe methods) and/or `write` (state-changing methods)"
    )
    expires_in_days: int = Field(default=90, ge=1, le=MAX_LIFETIME_DAYS)
    current_password: Password = Field(description="the account's password, checked again")

    @field_validator("name")
    @classmethod
    def _stripped(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("must not be blank")
        return value

    @field_validator("scopes")
    @classmethod
    def _distinct(cls, value: list[Scope]) -> list[Scope]:
        return sorted(set(value))


class ApiKeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, populate_by_name=True)

    id: uuid.UUID
    name: str
    prefix: str = Field(validation_alias="lookup", description="the key's public start")
    scopes: list[str]
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="the key itself: shown this once, stored only as a digest")
