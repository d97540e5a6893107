"""HTTP endpoints of the users module, /api/v1/users. Thin: parse, authorise, call, shape."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from app.core.db import FilterSpec, ListParams, Page, list_params, read_pool_of
from app.core.errors import Forbidden, NotFound, problems
from app.modules.auth import ActiveUser, CurrentSessionId, CurrentUser, require_role
from app.modules.users import policies
from app.modules.users.dependencies import Me, UserById, UserIdPath, UsersServiceDep
from app.modules.users.gateway import UsersDirectory
from app.modules.users.models import Role
from app.modules.users.schemas import (
    PasswordChange,
    UserDTO,
    UserUpdateAdmin,
    UserUpdateMe,
    changes,
)

router = APIRouter()

AUTH_ERRORS = (401, 403)

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


@router.get("/me", response_model=UserDTO, responses=problems(401))
async def read_me(me: CurrentUser) -> UserDTO:
    """The signed-in user."""
    return me


@router.patch("/me", response_model=UserDTO, responses=problems(401, 403, 409, 422))
async def update_me(body: UserUpdateMe, me: Me, service: UsersServiceDep) -> UserDTO:
    """Change your username or email (a new email must be verified again). Changing the email
    needs `current_password`: 422 when it is missing, 403 when it is wrong."""
    data = changes(body)
    current_password = data.pop("current_password", None)
    user = await service.update(actor=me, user=me, changes=data, current_password=current_password)
    return UserDTO.model_validate(user)


@router.delete("/me", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 409))
async def delete_me(me: Me, service: UsersServiceDep) -> Response:
    """Delete your account (soft delete) and end every session. The last active administrator
    cannot (409)."""
    await service.delete(actor=me, user=me)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put(
    "/me/password", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 422)
)
async def change_my_password(
    body: PasswordChange, me: Me, session_id: CurrentSessionId, service: UsersServiceDep
) -> Response:
    """Change your password; needs the current one. Every other session is signed out."""
    await service.change_password(
        user=me,
        current_password=body.current_password,
        new_password=body.new_password,
        keep_session_id=session_id,
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "",
    response_model=Page[UserDTO],
    responses=problems(401, 403, 422),
    dependencies=[Depends(require_role(Role.ADMIN))],
)
async def list_users(
    actor: ActiveUser, params: UserListParams, service: UsersServiceDep
) -> Page[UserDTO]:
    """Administrators: list users with sort, filters and pages."""
    users, total = await service.list(actor=actor, params=params)
    return Page[UserDTO].build(
        [UserDTO.model_validate(user) for user in users], total=total, params=params
    )


@router.get("/{user_id}", response_model=UserDTO, responses=problems(401, 403, 404, 422))
async def read_user(request: Request, user_id: UserIdPath, actor: ActiveUser) -> UserDTO:
    """A user, for administrators or the user themselves."""
    # The signed-in user was read a moment ago by authentication: no second lookup. The
    # directory is built here rather than injected: a dependency node costs as much as a read.
    user = (
        actor
        if user_id == actor.id
        else await UsersDirectory(read_pool_of(request)).get_live(user_id)
    )
    if user is None:
        raise NotFound("User not found")
    if not policies.can_view(actor, user):
        raise Forbidden("You may not view this user")
    return user


@router.patch("/{user_id}", response_model=UserDTO, responses=problems(401, 403, 404, 409, 422))
async def update_user(
    body: UserUpdateAdmin, user: UserById, actor: ActiveUser, service: UsersServiceDep
) -> UserDTO:
    """Change a user (role, activation and verification: administrators only). Changing your
    own email needs `current_password` (422 missing, 403 wrong); demoting or deactivating the
    last active administrator is refused (409)."""
    data = changes(body)
    current_password = data.pop("current_password", None)
    updated = await service.update(
        actor=actor, user=user, changes=data, current_password=current_password
    )
    return UserDTO.model_validate(updated)


@router.delete(
    "/{user_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problems(401, 403, 404, 409, 422),
)
async def delete_user(user: UserById, actor: ActiveUser, service: UsersServiceDep) -> Response:
    """Delete a user (soft delete) and end their sessions; not the last active
    administrator (409)."""
    await service.delete(actor=actor, user=user)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
