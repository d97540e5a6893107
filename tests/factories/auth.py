"""Factories for the auth module's models (owner ids must be set by the caller)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from factory.base import Factory
from factory.declarations import LazyFunction

from app.core.db import utcnow
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose


class RefreshTokenFactory(Factory[RefreshToken]):
    class Meta:
        model = RefreshToken

    family_id = LazyFunction(uuid.uuid4)  # type: ignore[no-untyped-call]
    token_hash = LazyFunction(lambda: uuid.uuid4().hex)  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(days=1))  # type: ignore[no-untyped-call]


class ActionTokenFactory(Factory[ActionToken]):
    class Meta:
        model = ActionToken

    purpose = TokenPurpose.VERIFY_EMAIL.value
    email = "alice@example.com"
    token_hash = LazyFunction(lambda: uuid.uuid4().hex)  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(hours=1))  # type: ignore[no-untyped-call]
