"""HTTP endpoints of the users module, /api/v1/users. Thin: parse, authorise, call, shape."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, UploadFile, status

from app.core.auth import (
    ActivePrincipal,
    CurrentPrincipal,
    SignedInPrincipal,
    ensure_signed_in,
    require_role,
)
from app.core.db import FilterSpec, ListParams, Page, list_params
from app.core.errors import problems
from app.core.ratelimit import ClientAddress
from app.core.storage import StorageDep
from app.modules.users.dependencies import (
    Me,
    UserById,
    UserIdPath,
    UsersReaderDep,
    UsersServiceDep,
    present,
)
from app.modules.users.models import Role
from app.modules.users.schemas import (
    AccountDeletion,
    PasswordChange,
    UserDTO,
    UserOut,
    UserUpdate,
    UserUpdateMe,
    changes,
)

router = APIRouter()


UserListParams = Annotated[
    ListParams,
    Depends(
        list_params(
            sortable={"created_at", "updated_at", "email", "username", "role"},
            filterable={
                "role": FilterSpec(Role, frozenset({"eq", "ne", "in"})),
                "is_active": FilterSpec(bool, frozenset({"eq"})),
                "is_verified": FilterSpec(bool, frozenset({"eq"})),
                "email": FilterSpec(str, frozenset({"eq"})),
                "username": FilterSpec(str, frozenset({"eq", "in"})),
                "created_at": FilterSpec(datetime, frozenset({"gt", "gte", "lt", "lte"})),
            },
            default_sort="-created_at",
        )
    ),
]


@router.get("/me", response_model=UserOut, responses=problems(401, 404))
async def read_me(principal: CurrentPrincipal, reader: UsersReaderDep, request: Request) -> UserDTO:
    """The signed-in user."""
    return await present(request, await reader.view(actor=principal, user_id=principal.id))


@router.patch("/me", response_model=UserOut, responses=problems(401, 403, 409, 422))
async def update_me(
    body: UserUpdateMe,
    me: Me,
    principal: SignedInPrincipal,
    service: UsersServiceDep,
    client: ClientAddress,
    request: Request,
) -> UserDTO:
    """Change your username or email (a new email must be verified again, and the old one is
    told). Changing the email needs `current_password`: 422 when it is missing, 403 when it is
    wrong, 429 when the account's password attempts are spent."""
    data = changes(body)
    current_password = data.pop("current_password", None)
    user = await service.update(
        actor=principal, user=me, changes=data, current_password=current_password, client=client
    )
    return await present(request, user)


@router.delete(
    "/me", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 409, 422, 429)
)
async def delete_me(
    body: AccountDeletion,
    me: Me,
    principal: SignedInPrincipal,
    service: UsersServiceDep,
    client: ClientAddress,
) -> Response:
    """Delete your account (soft delete) and end every session; needs `current_password` (403
    when wrong). The last active administrator cannot (409)."""
    await service.delete(
        actor=principal, user=me, current_password=body.current_password, client=client
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/me/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 422, 429),
)
async def change_my_password(
    body: PasswordChange,
    me: Me,
    principal: SignedInPrincipal,
    service: UsersServiceDep,
    client: ClientAddress,
) -> Response:
    """Change your password; needs the current one. Every other session ends in the same
    transaction, and the account's address is told."""
    await service.change_password(
        user=me,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_session_id=principal.session_id,
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/me/avatar", response_model=UserOut, responses=problems(401, 413, 415, 422))
async def set_my_avatar(
    file: UploadFile, me: Me, service: UsersServiceDep, storage: StorageDep, request: Request
) -> UserDTO:
    """Upload your avatar (multipart field `file`): a PNG, JPEG, GIF or WebP image, told by
    its content (415 otherwise; the file's name and declared type are ignored), at most
    USERS_AVATAR_MAX_BYTES (413). The response's `avatar_url` downloads it for a while."""
    return await present(request, await service.set_avatar(user=me, upload=file, storage=storage))


@router.delete("/me/avatar", response_model=UserOut, responses=problems(401))
async def delete_my_avatar(
    me: Me, service: UsersServiceDep, storage: StorageDep, request: Request
) -> UserDTO:
    """Remove your avatar; its file is deleted."""
    return await present(request, await service.remove_avatar(user=me, storage=storage))


@router.get(
    "",
    response_model=Page[UserOut],
    responses=problems(401, 403, 422),
    dependencies=[Depends(require_role(Role.ADMIN))],
)
async def list_users(
    principal: ActivePrincipal, params: UserListParams, reader: UsersReaderDep, request: Request
) -> Page[UserOut]:
    """Administrators: list users with sort, filters, and pages by number or by cursor
    (`next_cursor`/`prev_cursor`: as fast deep in the list as at its start)."""
    result = await reader.list(actor=principal, params=params)
    items = [await present(request, UserDTO.model_validate(user)) for user in result.items]
    return Page[UserOut].build(
        [UserOut.model_validate(item, from_attributes=True) for item in items],
        result=result,
        params=params,
    )


@router.get("/{user_id}", response_model=UserOut, responses=problems(401, 403, 404, 422))
async def read_user(
    user_id: UserIdPath, principal: ActivePrincipal, reader: UsersReaderDep, request: Request
) -> UserDTO:
    """A user, for administrators or the user themselves."""
    return await present(request, await reader.view(actor=principal, user_id=user_id))


@router.patch("/{user_id}", response_model=UserOut, responses=problems(401, 403, 404, 409, 422))
async def update_user(
    body: UserUpdate,
    user: UserById,
    principal: ActivePrincipal,
    service: UsersServiceDep,
    client: ClientAddress,
    request: Request,
) -> UserDTO:
    """Change a user (role, activation and verification: administrators only). Changing your
    own email needs `current_password` (422 missing, 403 wrong); demoting or deactivating the
    last active administrator is refused (409)."""
    data = changes(body)
    current_password = data.pop("current_password", None)
    if user.id == principal.id and "email" in data:
        ensure_signed_in(principal)  # your own email is a credential: not with an API key
    updated = await service.update(
        actor=principal, user=user, changes=data, current_password=current_password, client=client
    )
    return await present(request, updated)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 422),
)
async def delete_user(
    user: UserById,
    principal: ActivePrincipal,
    service: UsersServiceDep,
    client: ClientAddress,
    body: AccountDeletion | None = None,
) -> Response:
    """Delete a user (soft delete) and end their sessions; not the last active
    administrator (409). Deleting your own account this way needs `current_password` too, and
    a sign-in (not an API key)."""
    if user.id == principal.id:
        ensure_signed_in(principal)
    await service.delete(
        actor=principal,
        user=user,
        current_password=body.current_password if body is not None else None,
        client=client,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)
