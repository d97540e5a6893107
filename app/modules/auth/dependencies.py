"""FastAPI dependencies of the auth module. Who is calling comes from `app.core.auth`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from app.core.config import SettingsDep
from app.core.db import DBSession
from app.core.ratelimit import RateLimits
from app.core.redis import RedisClient
from app.modules.auth.config import AuthSettingsDep
from app.modules.auth.services import AuthService
from app.modules.auth.two_factor.config import TwoFactorSettingsDep
from app.modules.auth.two_factor.services import TwoFactorService
from app.modules.users import UsersGatewayDep


async def get_two_factor_service(
    session: DBSession,
    settings: TwoFactorSettingsDep,
    auth_settings: AuthSettingsDep,
    app_settings: SettingsDep,
    users: UsersGatewayDep,
    limiter: RateLimits,
    redis: RedisClient,
) -> TwoFactorService:
    return TwoFactorService(
        session=session,
        settings=settings,
        auth_settings=auth_settings,
        secret_key=app_settings.secret_key,
        users=users,
        limiter=limiter,
        redis=redis,
    )


TwoFactorServiceDep = Annotated[TwoFactorService, Depends(get_two_factor_service)]


async def get_auth_service(
    session: DBSession,
    settings: AuthSettingsDep,
    app_settings: SettingsDep,
    users: UsersGatewayDep,
    limiter: RateLimits,
    two_factor: TwoFactorServiceDep,
) -> AuthService:
    return AuthService(
        session=session,
        settings=settings,
        secret_key=app_settings.secret_key,
        users=users,
        limiter=limiter,
        two_factor=two_factor,
    )


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]
