"""What other modules, and core, may ask of the organizations module. Answers are DTOs.

- `OrganizationMemberships` is core's `Memberships` (`ModuleSpec(memberships=...)`): whether an
  account is a member of a live organization, asked on every request that names one, in one
  statement on an autocommit connection.
- `OrganizationsGateway` works inside the caller's unit of work.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import Database, DBSession
from app.core.tenancy import CurrentOrganization
from app.modules.organizations.repositories import MembershipRepository
from app.modules.organizations.schemas import MembershipDTO


class OrganizationMemberships:
    def __init__(self, settings: Settings, database: Database) -> None:
        self._database = database
        self._memberships = MembershipRepository()

    async def find(self, *, user_id: uuid.UUID, slug: str) -> CurrentOrganization | None:
        async with self._database.engine.connect() as connection:
            row = await self._memberships.read_by_slug(connection, user_id=user_id, slug=slug)
        if row is None:
            return None
        return CurrentOrganization(id=row["id"], slug=row["slug"], role=row["role"])


class OrganizationsGateway:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._memberships = MembershipRepository()

    async def membership(
        self, organization_id: uuid.UUID, user_id: uuid.UUID
    ) -> MembershipDTO | None:
        """The account's membership of the organization, if any."""
        found = await self._memberships.find(
            self._session, organization_id=organization_id, user_id=user_id
        )
        return None if found is None else MembershipDTO.model_validate(found)


async def get_organizations_gateway(session: DBSession) -> OrganizationsGateway:
    return OrganizationsGateway(session)


OrganizationsGatewayDep = Annotated[OrganizationsGateway, Depends(get_organizations_gateway)]
