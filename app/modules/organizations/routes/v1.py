"""HTTP endpoints of the organizations module, /api/v1/organizations. Thin.

The organization a request acts in is named by the `X-Organization` header (its slug) and
checked against the caller's membership (`CurrentOrg`: 404 for a non-member)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from app.core.auth import ActivePrincipal, SignedInPrincipal
from app.core.errors import problems
from app.core.tenancy import CurrentOrg, CurrentOrganization, require_org_role
from app.modules.organizations.dependencies import (
    InvitationIdPath,
    MemberIdPath,
    OrganizationsServiceDep,
)
from app.modules.organizations.schemas import (
    InvitationCreate,
    InvitationOut,
    InvitationSignUp,
    InvitationToken,
    MemberOut,
    MemberRoleChange,
    MyOrganization,
    OrganizationCreate,
    OrganizationUpdate,
    OwnershipTransfer,
)

router = APIRouter()

OrgAdmin = Annotated[CurrentOrganization, Depends(require_org_role("admin"))]
OrgOwner = Annotated[CurrentOrganization, Depends(require_org_role("owner"))]
_NO_CONTENT = status.HTTP_204_NO_CONTENT


@router.get("", response_model=list[MyOrganization], responses=problems(401))
async def list_my_organizations(
    principal: ActivePrincipal, service: OrganizationsServiceDep
) -> list[MyOrganization]:
    """The organizations the caller belongs to, with their role in each."""
    return await service.mine(actor_id=principal.id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=MyOrganization,
    responses=problems(401, 409, 422),
)
async def create_organization(
    body: OrganizationCreate, principal: ActivePrincipal, service: OrganizationsServiceDep
) -> MyOrganization:
    """A new organization; the caller owns it."""
    return await service.create(actor_id=principal.id, name=body.name, slug=body.slug)


@router.get("/current", response_model=MyOrganization, responses=problems(401, 404, 422))
async def read_current(
    organization: CurrentOrg, service: OrganizationsServiceDep
) -> MyOrganization:
    """The organization named by X-Organization."""
    return await service.view(organization)


@router.patch("/current", response_model=MyOrganization, responses=problems(401, 403, 404, 422))
async def rename_current(
    body: OrganizationUpdate, organization: OrgAdmin, service: OrganizationsServiceDep
) -> MyOrganization:
    return await service.rename(organization, name=body.name)


@router.delete("/current", status_code=_NO_CONTENT, responses=problems(401, 403, 404))
async def delete_current(
    principal: SignedInPrincipal, organization: OrgOwner, service: OrganizationsServiceDep
) -> Response:
    """Soft delete (owner only, signed in: not with an API key): members lose access now; the
    data is purged later."""
    await service.delete(organization, actor_id=principal.id)
    return Response(status_code=_NO_CONTENT)


@router.get("/current/members", response_model=list[MemberOut], responses=problems(401, 404))
async def list_members(
    organization: CurrentOrg, service: OrganizationsServiceDep
) -> list[MemberOut]:
    return await service.members(organization)


@router.patch(
    "/current/members/{user_id}",
    response_model=MemberOut,
    responses=problems(401, 403, 404, 409, 422),
)
async def change_member_role(
    user_id: MemberIdPath,
    body: MemberRoleChange,
    organization: OrgOwner,
    principal: ActivePrincipal,
    service: OrganizationsServiceDep,
) -> MemberOut:
    """Make a member an admin or an admin a member (owner only)."""
    return await service.change_role(
        organization, actor_id=principal.id, user_id=user_id, role=body.role
    )


@router.delete(
    "/current/members/{user_id}", status_code=_NO_CONTENT, responses=problems(401, 403, 404, 409)
)
async def remove_member(
    user_id: MemberIdPath,
    organization: OrgAdmin,
    principal: ActivePrincipal,
    service: OrganizationsServiceDep,
) -> Response:
    """Remove a member (admins remove members, the owner anyone but themselves); their access
    ends at once."""
    await service.remove(organization, actor_id=principal.id, user_id=user_id)
    return Response(status_code=_NO_CONTENT)


@router.post("/current/leave", status_code=_NO_CONTENT, responses=problems(401, 404, 409))
async def leave(
    organization: CurrentOrg, principal: ActivePrincipal, service: OrganizationsServiceDep
) -> Response:
    """Leave the organization (the owner transfers ownership first)."""
    await service.leave(organization, actor_id=principal.id)
    return Response(status_code=_NO_CONTENT)


@router.post(
    "/current/transfer", status_code=_NO_CONTENT, responses=problems(401, 403, 404, 409, 422)
)
async def transfer_ownership(
    body: OwnershipTransfer,
    principal: SignedInPrincipal,
    organization: OrgOwner,
    service: OrganizationsServiceDep,
) -> Response:
    """Hand the ownership to another member (signed in: not with an API key); the owner stays
    as an admin."""
    await service.transfer(organization, actor_id=principal.id, user_id=body.user_id)
    return Response(status_code=_NO_CONTENT)


@router.get(
    "/current/invitations", response_model=list[InvitationOut], responses=problems(401, 403, 404)
)
async def list_invitations(
    organization: OrgAdmin, service: OrganizationsServiceDep
) -> list[InvitationOut]:
    invitations = await service.open_invitations(organization)
    return [InvitationOut.model_validate(item) for item in invitations]


@router.post(
    "/current/invitations",
    status_code=status.HTTP_201_CREATED,
    response_model=InvitationOut,
    responses=problems(401, 403, 404, 409, 422, 429),
)
async def invite(
    body: InvitationCreate,
    organization: OrgAdmin,
    principal: ActivePrincipal,
    service: OrganizationsServiceDep,
) -> InvitationOut:
    """Mail a single-use invitation link to an address."""
    invitation = await service.invite(
        organization, actor_id=principal.id, email=str(body.email), role=body.role
    )
    return InvitationOut.model_validate(invitation)


@router.post(
    "/current/invitations/{invitation_id}/resend",
    response_model=InvitationOut,
    responses=problems(401, 403, 404, 429),
)
async def resend_invitation(
    invitation_id: InvitationIdPath, organization: OrgAdmin, service: OrganizationsServiceDep
) -> InvitationOut:
    """Mail a new link with a new expiry; the previous link stops working."""
    invitation = await service.resend(organization, invitation_id=invitation_id)
    return InvitationOut.model_validate(invitation)


@router.delete(
    "/current/invitations/{invitation_id}",
    status_code=_NO_CONTENT,
    responses=problems(401, 403, 404),
)
async def revoke_invitation(
    invitation_id: InvitationIdPath, organization: OrgAdmin, service: OrganizationsServiceDep
) -> Response:
    await service.revoke(organization, invitation_id=invitation_id)
    return Response(status_code=_NO_CONTENT)


@router.post(
    "/invitations/accept", response_model=MyOrganization, responses=problems(400, 401, 403, 422)
)
async def accept_invitation(
    body: InvitationToken, principal: ActivePrincipal, service: OrganizationsServiceDep
) -> MyOrganization:
    """Join with the signed-in account, whose address the invitation was mailed to."""
    return await service.accept(actor_id=principal.id, token=body.token)


@router.post(
    "/invitations/sign-up",
    status_code=status.HTTP_201_CREATED,
    response_model=MyOrganization,
    responses=problems(400, 409, 422),
)
async def accept_invitation_with_new_account(
    body: InvitationSignUp, service: OrganizationsServiceDep
) -> MyOrganization:
    """Join with a new account for the invited address (verified: the link reached it)."""
    return await service.sign_up(body)
