"""Data access for social identities. Never commits."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.modules.auth.social.models import SocialIdentity


class SocialIdentityRepository:
    async def find(
        self, session: AsyncSession, *, provider: str, subject: str
    ) -> SocialIdentity | None:
        query = select(SocialIdentity).where(
            SocialIdentity.provider == provider, SocialIdentity.subject == subject
        )
        return (await session.execute(query)).scalar_one_or_none()

    async def add(self, session: AsyncSession, identity: SocialIdentity) -> None:
        session.add(identity)
        await session.flush()
