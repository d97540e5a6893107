"""Periodic purge of organizations deleted long enough ago (sent by `app scheduler`)."""

from __future__ import annotations

from typing import Annotated

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import get_session
from app.core.queue import TaskiqDepends, broker
from app.modules.organizations.config import load_organizations_settings
from app.modules.organizations.services import OrganizationsService
from app.modules.users import UsersGateway


@broker.task(task_name="organizations.purge_deleted", schedule=[{"cron": "41 3 * * *"}])
async def purge_deleted_organizations(
    session: Annotated[AsyncSession, TaskiqDepends(get_session)],
) -> int:
    """Deleted organizations past ORGANIZATIONS_PURGE_AFTER_DAYS go, with their memberships,
    invitations and tenant-owned rows (foreign keys cascade)."""
    service = OrganizationsService(
        session, load_organizations_settings(), users=UsersGateway(session)
    )
    return await service.purge_deleted()
