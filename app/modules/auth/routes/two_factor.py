"""Two-factor sign-in endpoints, /api/v1/auth/2fa."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from app.core.auth import CurrentPrincipal, SignedInPrincipal
from app.core.errors import problems
from app.core.ratelimit import ClientAddress
from app.modules.auth.dependencies import AuthServiceDep, TwoFactorServiceDep
from app.modules.auth.routes.v1 import _no_store
from app.modules.auth.schemas import BrowserSession, TokenPair
from app.modules.auth.transport import SameSiteSignIn, TokenTransportDep
from app.modules.auth.two_factor.schemas import (
    ChallengeCodeIn,
    ChallengeIn,
    CodeIn,
    DisableIn,
    EnrolIn,
    EnrolledSignIn,
    Enrolment,
    RecoveryCodes,
    TwoFactorStatus,
)

router = APIRouter()


@router.get("", response_model=TwoFactorStatus, responses=problems(401))
async def two_factor_status(
    principal: CurrentPrincipal, service: TwoFactorServiceDep
) -> TwoFactorStatus:
    """Whether two-factor sign-in is on, and how many recovery codes are left."""
    return await service.status(principal.id)


@router.post("/enrol", response_model=Enrolment, responses=problems(401, 403, 409, 422, 429))
async def enrol(
    body: EnrolIn,
    principal: SignedInPrincipal,
    service: TwoFactorServiceDep,
    response: Response,
    client: ClientAddress,
) -> Enrolment:
    """Start enrolment: a new TOTP secret, its otpauth URI and a QR code (SVG) for an
    authenticator app. Needs a signed-in session (not an API key) and `current_password`
    (403 when wrong): a stolen access token alone cannot put its own second factor on the
    account. Nothing changes at sign-in until `/2fa/confirm` gets a first code."""
    _no_store(response)
    await service.check_password(principal.id, body.current_password, client=client)
    return await service.begin_enrolment(principal.id)


@router.post("/confirm", response_model=RecoveryCodes, responses=problems(401, 403, 409, 422, 429))
async def confirm(
    body: CodeIn, principal: SignedInPrincipal, service: TwoFactorServiceDep, response: Response
) -> RecoveryCodes:
    """Turn two-factor sign-in on with a first code from the app. The answer holds ten
    single-use recovery codes, shown this once (only their hashes are kept)."""
    _no_store(response)
    return RecoveryCodes(recovery_codes=await service.confirm(principal.id, body.code))


@router.post(
    "/disable", status_code=status.HTTP_204_NO_CONTENT, responses=problems(401, 403, 422, 429)
)
async def disable(
    body: DisableIn,
    principal: SignedInPrincipal,
    service: TwoFactorServiceDep,
    client: ClientAddress,
) -> Response:
    """Turn two-factor sign-in off: needs the password and a code (or a recovery code)."""
    await service.disable(principal.id, password=body.password, code=body.code, client=client)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/login",
    response_model=TokenPair | BrowserSession,
    responses=problems(401, 403, 422, 429),
    dependencies=[SameSiteSignIn],
)
async def second_step(
    body: ChallengeCodeIn,
    two_factor: TwoFactorServiceDep,
    auth: AuthServiceDep,
    response: Response,
    transport: TokenTransportDep,
) -> TokenPair | BrowserSession:
    """The second step of a sign-in: the challenge the first step answered, and a code from
    the app (each accepted once) or an unused recovery code. Attempts are limited per account.
    Refused from a page of another site, like `/login`."""
    _no_store(response)
    user = await two_factor.complete(body.challenge, body.code)
    return transport.issue(response, await auth.sign_in(user))


@router.post("/enrol/required", response_model=Enrolment, responses=problems(401, 409, 422))
async def enrol_required(
    body: ChallengeIn, service: TwoFactorServiceDep, response: Response
) -> Enrolment:
    """For an administrator whose sign-in answered `method: enrol` (AUTH_ADMIN_2FA_REQUIRED):
    start enrolment with that challenge instead of a session."""
    _no_store(response)
    user = await service.challenged_user(body.challenge, method="enrol")
    return await service.begin_enrolment(user.id)


@router.post(
    "/confirm/required",
    response_model=EnrolledSignIn,
    responses=problems(401, 403, 409, 422, 429),
    dependencies=[SameSiteSignIn],
)
async def confirm_required(
    body: ChallengeCodeIn,
    two_factor: TwoFactorServiceDep,
    auth: AuthServiceDep,
    response: Response,
    transport: TokenTransportDep,
) -> EnrolledSignIn:
    """Finish the enrolment an administrator's sign-in required: the recovery codes (shown
    once) and, now that a second factor is on, the tokens."""
    _no_store(response)
    user, codes = await two_factor.complete_enrolment(body.challenge, body.code)
    tokens = transport.issue(response, await auth.sign_in(user))
    return EnrolledSignIn(recovery_codes=codes, tokens=tokens)
