"""Facts the users module publishes; other modules react through listeners."""

from __future__ import annotations

import uuid

from app.core.events import BaseEvent


class UserRegistered(BaseEvent):
    user_id: uuid.UUID
    email: str
    username: str


class UserDeleted(BaseEvent):
    user_id: uuid.UUID


class UserPasswordChanged(BaseEvent):
    user_id: uuid.UUID
    # The sign-in session that made the change and stays signed in, if any.
    keep_session_id: uuid.UUID | None = None
