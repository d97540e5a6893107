"""Social sign-in endpoints, /api/v1/auth/social/<provider>/..."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Cookie, Depends, Query, Request, Response
from fastapi.responses import RedirectResponse

from app.core.auth import cookies_secure
from app.core.config import SettingsDep
from app.core.db import DBSession
from app.core.errors import problems
from app.core.redis import RedisClient
from app.modules.auth.dependencies import AuthServiceDep
from app.modules.auth.routes.v1 import _no_store
from app.modules.auth.schemas import BrowserSession, TokenPair
from app.modules.auth.social.config import SocialSettingsDep
from app.modules.auth.social.services import SocialService, SocialSignInFailed
from app.modules.auth.transport import TokenTransportDep
from app.modules.auth.two_factor.schemas import SecondFactorRequired
from app.modules.users import UsersGatewayDep

router = APIRouter()

FLOW_COOKIE = "social_flow"


async def get_social_service(
    session: DBSession, settings: SocialSettingsDep, redis: RedisClient, users: UsersGatewayDep
) -> SocialService:
    return SocialService(session=session, settings=settings, redis=redis, users=users)


SocialServiceDep = Annotated[SocialService, Depends(get_social_service)]


def _cookie_path(request: Request) -> str:
    """/api/v1/auth/social: the flow cookie goes to this router's paths only."""
    return request.url.path.rsplit("/", 2)[0]


@router.get(
    "/{provider}/authorize",
    status_code=302,
    response_class=RedirectResponse,
    responses={302: {"description": "to the provider's sign-in page"}, **problems(404, 503)},
)
async def social_authorize(
    provider: str,
    request: Request,
    service: SocialServiceDep,
    social: SocialSettingsDep,
    app_settings: SettingsDep,
) -> RedirectResponse:
    """Open in the browser (a navigation, not a fetch): redirects to the provider with an
    authorization code request (PKCE S256, `state`, and for OpenID Connect a `nonce`), and
    binds the flow to this browser with an HttpOnly cookie."""
    if social.social_redirect_url:
        redirect_uri = social.social_redirect_url.replace("{provider}", provider)
    else:
        redirect_uri = str(request.url_for("social_callback", provider=provider))
    url, binding = await service.start(provider, redirect_uri=redirect_uri)
    response = RedirectResponse(url, status_code=302)
    response.set_cookie(
        FLOW_COOKIE,
        binding,
        max_age=social.social_flow_ttl_seconds,
        path=_cookie_path(request),
        httponly=True,
        secure=cookies_secure(request, app_settings),  # as the session cookies
        samesite="lax",
    )
    return response


@router.get(
    "/{provider}/callback",
    name="social_callback",
    response_model=TokenPair | BrowserSession | SecondFactorRequired,
    responses=problems(400, 403, 404, 409, 502, 503),
)
async def social_callback(
    provider: str,
    request: Request,
    response: Response,
    service: SocialServiceDep,
    auth: AuthServiceDep,
    code: Annotated[str, Query(min_length=1, max_length=2048)] = "",
    state: Annotated[str, Query(min_length=1, max_length=512)] = "",
    error: Annotated[str | None, Query(max_length=256)] = None,
    flow: Annotated[str | None, Cookie(alias=FLOW_COOKIE, max_length=256)] = None,
    *,
    transport: TokenTransportDep,
    app_settings: SettingsDep,
) -> TokenPair | BrowserSession | SecondFactorRequired:
    """Where the provider sends the browser back (or where your frontend's callback page
    forwards `code` and `state`, with credentials). Signs in as the linked account, the
    account of the address the provider verified, or a new one; the same tokens as a password
    sign-in, or its two-factor challenge."""
    _no_store(response)
    response.delete_cookie(
        FLOW_COOKIE,
        path=_cookie_path(request),
        secure=cookies_secure(request, app_settings),
        httponly=True,
        samesite="lax",
    )
    if error is not None or not code or not state:
        raise SocialSignInFailed(f"The provider did not sign you in: {error or 'no code'}")
    identity = await service.finish(provider, code=code, state=state, binding=flow)
    user = await service.account_for(provider, identity)
    signed_in = await auth.second_step_or_sign_in(user)
    if isinstance(signed_in, SecondFactorRequired):
        return signed_in
    return transport.issue(response, signed_in)
