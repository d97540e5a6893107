"""HTTP endpoints of API keys, /api/v1/auth/api-keys. Only a signed-in session manages keys:
a key never mints, lists or revokes keys."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from app.core.auth import SignedInPrincipal
from app.core.db import DBSession, ListParams, Page, list_params
from app.core.errors import problems
from app.core.ratelimit import ClientAddress
from app.modules.auth.api_keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut
from app.modules.auth.api_keys.service import ApiKeyService
from app.modules.auth.dependencies import TwoFactorServiceDep
from app.modules.users import UsersGatewayDep

router = APIRouter()


async def get_api_key_service(session: DBSession, users: UsersGatewayDep) -> ApiKeyService:
    return ApiKeyService(session, users)


ApiKeyServiceDep = Annotated[ApiKeyService, Depends(get_api_key_service)]
ApiKeyListParams = Annotated[
    ListParams,
    Depends(
        list_params(
            sortable={"created_at", "expires_at", "last_used_at", "name"},
            default_sort="-created_at",
        )
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problems(401, 403, 409, 422, 429),
)
async def create_api_key(
    body: ApiKeyCreate,
    principal: SignedInPrincipal,
    service: ApiKeyServiceDep,
    response: Response,
    client: ClientAddress,
    two_factor: TwoFactorServiceDep,
) -> ApiKeyCreated:
    """Create a named key with scopes and an expiry; needs `current_password` (403 when
    wrong), and an administrator two-factor sign-in when AUTH_ADMIN_2FA_REQUIRED (403). The
    key is in this answer only: it is stored as a digest and cannot be shown
    again. Every key of the account is revoked when its password is changed or reset."""
    response.headers["Cache-Control"] = "no-store"
    await two_factor.ensure_not_required(principal.id, principal.role)
    return await service.create(user_id=principal.id, data=body, client=client)


@router.get("", response_model=Page[ApiKeyOut], responses=problems(401, 403, 422))
async def list_api_keys(
    principal: SignedInPrincipal, params: ApiKeyListParams, service: ApiKeyServiceDep
) -> Page[ApiKeyOut]:
    """Your keys that are not revoked, with their last use (recorded to the minute)."""
    result = await service.list(user_id=principal.id, params=params)
    return Page[ApiKeyOut].build(
        [ApiKeyOut.model_validate(key) for key in result.items], result=result, params=params
    )


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 404, 422)
)
async def revoke_api_key(
    key_id: Annotated[uuid.UUID, Path()], principal: SignedInPrincipal, service: ApiKeyServiceDep
) -> Response:
    """Revoke a key of yours: it stops working at once."""
    await service.revoke(user_id=principal.id, key_id=key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
