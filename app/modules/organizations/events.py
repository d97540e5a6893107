"""Facts the organizations module publishes; other modules react through listeners."""

from __future__ import annotations

import uuid

from app.core.events import BaseEvent


class MemberJoined(BaseEvent):
    organization_id: uuid.UUID
    user_id: uuid.UUID
    role: str


class MemberRemoved(BaseEvent):
    """A member left or was removed: their access ended with this commit."""

    organization_id: uuid.UUID
    user_id: uuid.UUID
    by_id: uuid.UUID  # the member themselves when they left


class OrganizationDeleted(BaseEvent):
    """Soft-deleted: unreachable from now on; its data is purged later."""

    organization_id: uuid.UUID
