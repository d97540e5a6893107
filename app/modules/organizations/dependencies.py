"""FastAPI dependencies of the organizations module. Who is calling, and in which
organization, come from `app.core.auth` and `app.core.tenancy`."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends, Path

from app.core.db import DBSession
from app.core.mail import Mailer
from app.core.ratelimit import RateLimits
from app.modules.organizations.config import OrganizationsSettingsDep
from app.modules.organizations.services import OrganizationsService
from app.modules.users import UsersGatewayDep


async def get_organizations_service(
    session: DBSession,
    settings: OrganizationsSettingsDep,
    users: UsersGatewayDep,
    mailer: Mailer,
    limiter: RateLimits,
) -> OrganizationsService:
    return OrganizationsService(session, settings, users=users, mailer=mailer, limiter=limiter)


OrganizationsServiceDep = Annotated[OrganizationsService, Depends(get_organizations_service)]

MemberIdPath = Annotated[uuid.UUID, Path(description="the member's user id")]
InvitationIdPath = Annotated[uuid.UUID, Path(description="invitation id")]
