"""The organizations module: the tenants, their memberships, roles and invitations, and the
membership lookup behind core's `CurrentOrg` (`app.core.tenancy`).

Public API: everything other modules may import from here. Nothing else of this package is.
"""

from __future__ import annotations

from app.core.modules import ModuleSpec
from app.modules.organizations.events import MemberJoined, MemberRemoved, OrganizationDeleted
from app.modules.organizations.gateway import (
    OrganizationMemberships,
    OrganizationsGateway,
    OrganizationsGatewayDep,
    get_organizations_gateway,
)
from app.modules.organizations.routes.v1 import router as _router
from app.modules.organizations.schemas import MembershipDTO

module = ModuleSpec(
    name="organizations",
    router=_router,
    tags=("organizations",),
    memberships=OrganizationMemberships,
)

__all__ = [
    "MemberJoined",
    "MemberRemoved",
    "MembershipDTO",
    "OrganizationDeleted",
    "OrganizationMemberships",
    "OrganizationsGateway",
    "OrganizationsGatewayDep",
    "get_organizations_gateway",
    "module",
]
