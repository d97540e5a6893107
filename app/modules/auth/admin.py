"""Sign-in to the admin panel (core's `AdminSignIn`): the API's own sign-in, so the panel
gets every check it makes (password budgets, inactive and unverified accounts, the second
factor of an enrolled account with its replay and attempt limits, AUTH_ADMIN_2FA_REQUIRED) and
a sign-in session that ends like any other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.core.admin import AdminCredentials
from app.core.auth import Principal
from app.core.errors import AppError
from app.modules.auth.config import load_auth_settings
from app.modules.auth.services import AuthService
from app.modules.auth.two_factor.config import load_two_factor_settings
from app.modules.auth.two_factor.schemas import SecondFactorRequired
from app.modules.auth.two_factor.services import TwoFactorService
from app.modules.users import UsersGateway


class AuthAdminSignIn:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @asynccontextmanager
    async def _service(self) -> AsyncIterator[AuthService]:
        state = self.app.state
        auth_settings = load_auth_settings()
        async with state.database.sessionmaker() as session:
            users = UsersGateway(session, limiter=state.rate_limiter, mailer=state.mailer)
            two_factor = TwoFactorService(
                session=session,
                settings=load_two_factor_settings(),
                auth_settings=auth_settings,
                secret_key=state.settings.secret_key,
                users=users,
                limiter=state.rate_limiter,
                redis=state.redis,
            )
            yield AuthService(
                session=session,
                settings=auth_settings,
                secret_key=state.settings.secret_key,
                users=users,
                limiter=state.rate_limiter,
                two_factor=two_factor,
            )

    async def sign_in(
        self, *, login: str, password: str, code: str | None, client: str
    ) -> AdminCredentials | None:
        """The one place the panel checks credentials. An account with two-factor sign-in
        needs its code (or a recovery code) in the same form; an administrator who must enrol
        first (AUTH_ADMIN_2FA_REQUIRED) enrols through the API, not here."""
        async with self._service() as service:
            try:
                signed_in = await service.login(login=login, password=password, client=client)
                if isinstance(signed_in, SecondFactorRequired):
                    if signed_in.method != "totp" or not code:
                        return None
                    user = await service.two_factor.complete(signed_in.challenge, code)
                    signed_in = await service.sign_in(user)
            except AppError:  # wrong, inactive, unverified, or too many attempts: refused alike
                return None
        return AdminCredentials(
            access_token=signed_in.access_token, refresh_token=signed_in.refresh_token
        )

    async def refresh(self, *, refresh_token: str) -> AdminCredentials | None:
        async with self._service() as service:
            try:
                pair = await service.refresh(refresh_token=refresh_token)
            except AppError:
                return None
        return AdminCredentials(access_token=pair.access_token, refresh_token=pair.refresh_token)

    async def sign_out(self, principal: Principal) -> None:
        async with self._service() as service:
            await service.logout(user_id=principal.id, session_id=principal.session_id)
