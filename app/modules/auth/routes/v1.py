"""HTTP endpoints of the auth module, /api/v1/auth."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from fastapi.security import OAuth2PasswordRequestForm

from app.core.auth import SignedInPrincipal
from app.core.errors import problems
from app.core.ratelimit import ClientAddress
from app.modules.auth.api_keys.routes import router as api_keys_router
from app.modules.auth.dependencies import AuthServiceDep
from app.modules.auth.mail import AccountMail
from app.modules.auth.schemas import (
    Accepted,
    BrowserSession,
    EmailIn,
    PasswordResetIn,
    RegisterIn,
    TokenIn,
    TokenPair,
)
from app.modules.auth.transport import (
    PresentedRefreshTokenDep,
    SameSiteSignIn,
    TokenTransportDep,
)
from app.modules.auth.two_factor.schemas import SecondFactorRequired

router = APIRouter()
router.include_router(api_keys_router, prefix="/api-keys")

EMAIL_SENT = "If the address belongs to an account, an email is on its way."
REGISTERED = "Check your inbox: the next step is in an email to that address."


def _no_store(response: Response) -> None:
    """Token responses are never stored by a cache or a browser (RFC 6749, 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


@router.post(
    "/register",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=problems(409, 422, 429),
)
async def register(body: RegisterIn, service: AuthServiceDep, client: ClientAddress) -> Accepted:
    """Create an account and mail a verification link. The answer is the same for an address
    that already has an account (its owner is mailed instead): nobody learns who is
    registered. A taken username is still a 409."""
    await service.register(body, client=client)
    return Accepted(detail=REGISTERED)


@router.post(
    "/login",
    response_model=TokenPair | BrowserSession | SecondFactorRequired,
    responses=problems(401, 403, 422, 429, 503),
    dependencies=[SameSiteSignIn],
)
async def login(
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    service: AuthServiceDep,
    client: ClientAddress,
    response: Response,
    transport: TokenTransportDep,
) -> TokenPair | BrowserSession | SecondFactorRequired:
    """OAuth2 password flow: `username` is the username or the email address. Attempts are
    limited per client address, and per account (per account and client, and per account from
    anywhere over a longer window). The tokens come in the body, in HttpOnly cookies, or both
    (AUTH_TRANSPORT); an account with two-factor sign-in gets a `second_factor_required`
    challenge instead (`POST /auth/2fa/login`). Where cookies are set, a sign-in from a page of
    another site (`Sec-Fetch-Site: cross-site`, or an `Origin` that is neither this API's nor
    one of CORS_ORIGINS) is a 403."""
    _no_store(response)
    signed_in = await service.login(login=form.username, password=form.password, client=client)
    if isinstance(signed_in, SecondFactorRequired):
        return signed_in
    return transport.issue(response, signed_in)


@router.post(
    "/refresh", response_model=TokenPair | BrowserSession, responses=problems(401, 403, 422)
)
async def refresh(
    presented: PresentedRefreshTokenDep,
    service: AuthServiceDep,
    response: Response,
    transport: TokenTransportDep,
) -> TokenPair | BrowserSession:
    """Trade a refresh token (in the body, or the session cookie with `X-CSRF-Token`) for a new
    pair, answered the way it came; the presented one is spent."""
    _no_store(response)
    pair = await service.refresh(refresh_token=presented.token, csrf_token=presented.csrf_token)
    return transport.issue(response, pair, cookies_only=presented.from_cookie)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403))
async def logout(
    principal: SignedInPrincipal, service: AuthServiceDep, transport: TokenTransportDep
) -> Response:
    """End this session: its refresh and access tokens stop working, its cookies are cleared."""
    await service.logout(user_id=principal.id, session_id=principal.session_id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    transport.clear(response)
    return response


@router.post("/logout-all", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403))
async def logout_all(
    principal: SignedInPrincipal, service: AuthServiceDep, transport: TokenTransportDep
) -> Response:
    """End every session of the signed-in user (and clear this browser's cookies)."""
    await service.logout_all(user_id=principal.id)
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    transport.clear(response)
    return response


@router.post("/verify-email", status_code=status.HTTP_204_NO_CONTENT, responses=problems(400, 422))
async def verify_email(body: TokenIn, service: AuthServiceDep) -> Response:
    """Confirm the email address with the token from the verification link (single use)."""
    await service.verify_email(token=body.token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/verify-email/resend",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=problems(422, 429),
)
async def resend_verification(
    body: EmailIn, service: AuthServiceDep, client: ClientAddress
) -> Accepted:
    """Mail a new verification link to an unverified account. Same answer, and the same work,
    for any address."""
    await service.request_mail(AccountMail.VERIFY_EMAIL, email=body.email, client=client)
    return Accepted(detail=EMAIL_SENT)


@router.post(
    "/password/forgot",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    responses=problems(422, 429),
)
async def forgot_password(
    body: EmailIn, service: AuthServiceDep, client: ClientAddress
) -> Accepted:
    """Mail a password reset link. Same answer, and the same work, for any address; links
    mailed earlier stay valid until used or expired."""
    await service.request_mail(AccountMail.RESET_PASSWORD, email=body.email, client=client)
    return Accepted(detail=EMAIL_SENT)


@router.post(
    "/password/reset", status_code=status.HTTP_204_NO_CONTENT, responses=problems(400, 422)
)
async def reset_password(body: PasswordResetIn, service: AuthServiceDep) -> Response:
    """Set a new password with the token from the reset link; every session is signed out."""
    await service.reset_password(token=body.token, new_password=body.new_password)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
