"""Sign-in to the admin panel (core's `AdminSignIn`): the API's own sign-in, so the panel
gets every check it makes (password budgets, inactive and unverified accounts) and a sign-in
session that ends like any other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from app.core.admin import AdminCredentials
from app.core.auth import Principal
from app.core.errors import AppError
from app.modules.auth.config import load_auth_settings
from app.modules.auth.services import AuthService
from app.modules.users import UsersGateway


class AuthAdminSignIn:
    def __init__(self, app: FastAPI) -> None:
        self.app = app

    @asynccontextmanager
    async def _service(self) -> AsyncIterator[AuthService]:
        state = self.app.state
        async with state.database.sessionmaker() as session:
            yield AuthService(
                session=session,
                settings=load_auth_settings(),
                secret_key=state.settings.secret_key,
                users=UsersGateway(session, limiter=state.rate_limiter, mailer=state.mailer),
                limiter=state.rate_limiter,
            )

    async def sign_in(self, *, login: str, password: str, client: str) -> AdminCredentials | None:
        """The one place the panel checks credentials: a second factor, once the auth module
        has one, is asked for here too."""
        async with self._service() as service:
            try:
                pair = await service.login(login=login, password=password, client=client)
            except AppError:  # wrong, inactive, unverified, or too many attempts: refused alike
                return None
        return AdminCredentials(access_token=pair.access_token, refresh_token=pair.refresh_token)

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
