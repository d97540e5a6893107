"""Factories for the auth module's models (owner ids must be set by the caller)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from factory.base import Factory
from factory.declarations import LazyFunction

from app.core.db import utcnow
from app.core.sessions import SignInSession
from app.modules.auth.models import ActionToken, RefreshToken, TokenPurpose


class SignInSessionFactory(Factory[SignInSession]):
    class Meta:
        model = SignInSession

    id = LazyFunction(uuid.uuid4)  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(days=30))  # type: ignore[no-untyped-call]
    idle_expires_at = LazyFunction(lambda: utcnow() + timedelta(days=7))  # type: ignore[no-untyped-call]


class RefreshTokenFactory(Factory[RefreshToken]):
    """Give it the `session_id` of a stored `SignInSessionFactory` session."""

    class Meta:
        model = RefreshToken

    token_hash = LazyFunction(lambda: uuid.uuid4().hex)  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(days=1))  # type: ignore[no-untyped-call]


class ActionTokenFactory(Factory[ActionToken]):
    class Meta:
        model = ActionToken

    purpose = TokenPurpose.VERIFY_EMAIL.value
    email = "alice@example.com"
    token_hash = LazyFunction(lambda: uuid.uuid4().hex)  # type: ignore[no-untyped-call]
    expires_at = LazyFunction(lambda: utcnow() + timedelta(hours=1))  # type: ignore[no-untyped-call]
