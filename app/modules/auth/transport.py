"""How sign-in tokens travel to the client (AUTH_TRANSPORT): in the response body for bearer
clients, in cookies for browsers, or both.

Browser sessions get three cookies:
- `__Secure-refresh_token`: HttpOnly, Secure, SameSite=Lax, Path=<the auth routes>: sent
  only to refresh and logout, never readable by a script;
- `__Host-access_token`: HttpOnly, Secure, SameSite=Lax, Path=/: core reads it
  (`app.core.auth`); no script can read it either, so an XSS can use the session while the
  page is open but cannot carry its tokens away;
- `__Host-csrf_token`: readable (not HttpOnly), signed for the session (`app.core.csrf`); the
  page sends it back in `X-CSRF-Token` on state-changing requests. It is in the response body
  too, for a page on another host, which cannot read the API's cookies.

The prefixes make browsers refuse such cookies from anywhere but a secure page of this host
(`__Host-`; the refresh cookie's path rules that one out, so `__Secure-`). Where cookies are
not Secure (development over http on localhost) the names are bare.

Tokens travel back the way they came: a refresh token presented in a cookie is answered with
cookies only, never with tokens a script could read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request, Response

from app.core.auth import ACCESS_COOKIE, cookie_name, cookies_secure
from app.core.config import AuthTransport, Settings, SettingsDep
from app.core.csrf import CSRF_COOKIE, CSRF_HEADER, double_submitted, new_csrf_token
from app.core.errors import Forbidden, Unauthorized
from app.modules.auth.authenticator import read_access_token
from app.modules.auth.config import AuthSettings, AuthSettingsDep
from app.modules.auth.schemas import BrowserSession, RefreshIn, TokenPair

REFRESH_COOKIE = "refresh_token"


def refresh_cookie_name(*, secure: bool) -> str:
    """`__Host-` needs Path=/, and this cookie goes to the auth routes only."""
    return f"__Secure-{REFRESH_COOKIE}" if secure else REFRESH_COOKIE


@dataclass(frozen=True, slots=True)
class TokenTransport:
    settings: Settings
    auth_settings: AuthSettings
    # Where the refresh cookie goes: the folder of the auth routes (login, refresh, logout).
    auth_path: str
    secure: bool

    @property
    def cookies(self) -> bool:
        return self.settings.auth_transport is not AuthTransport.BEARER

    def issue(
        self, response: Response, pair: TokenPair, *, cookies_only: bool = False
    ) -> TokenPair | BrowserSession:
        """Write a new pair for the configured transport; the body to answer with."""
        if not self.cookies:
            return pair
        claims = read_access_token(
            pair.access_token, key=self.settings.secret_key, settings=self.auth_settings
        )
        if claims is None:  # we signed it a moment ago
            raise RuntimeError("a freshly issued access token does not verify")
        csrf = new_csrf_token(self.settings.secret_key, claims.session_id)
        self._set(response, self._access, pair.access_token, "/", pair.expires_in)
        self._set(
            response, self._refresh, pair.refresh_token, self.auth_path, pair.refresh_expires_in
        )
        self._set(response, self._csrf, csrf, "/", pair.refresh_expires_in, http_only=False)
        if cookies_only or self.settings.auth_transport is AuthTransport.COOKIE:
            return BrowserSession(
                expires_in=pair.expires_in,
                refresh_expires_in=pair.refresh_expires_in,
                csrf_token=csrf,
            )
        return pair.model_copy(update={"csrf_token": csrf})

    def clear(self, response: Response) -> None:
        """Delete the session cookies (with the attributes they were set with)."""
        if not self.cookies:
            return
        for name, path in (
            (self._access, "/"),
            (self._refresh, self.auth_path),
            (self._csrf, "/"),
        ):
            response.delete_cookie(
                name,
                path=path,
                secure=self.secure,
                httponly=name != self._csrf,
                samesite="lax",
            )

    @property
    def _access(self) -> str:
        return cookie_name(ACCESS_COOKIE, secure=self.secure)

    @property
    def _refresh(self) -> str:
        return refresh_cookie_name(secure=self.secure)

    @property
    def _csrf(self) -> str:
        return cookie_name(CSRF_COOKIE, secure=self.secure)

    def _set(
        self, response: Response, name: str, value: str, path: str, max_age: int, *,
        http_only: bool = True,
    ) -> None:  # fmt: skip
        response.set_cookie(
            name,
            value,
            max_age=max_age,
            path=path,
            secure=self.secure,
            httponly=http_only,
            samesite="lax",
        )


async def get_token_transport(
    request: Request, settings: SettingsDep, auth_settings: AuthSettingsDep
) -> TokenTransport:
    # The refresh cookie's path is the folder of the refresh route, wherever the sign-in
    # happened (password, second factor, social callback).
    refresh_path = request.app.url_path_for("refresh")
    return TokenTransport(
        settings=settings,
        auth_settings=auth_settings,
        auth_path=str(refresh_path).rsplit("/", 1)[0] or "/",
        secure=cookies_secure(request, settings),
    )


TokenTransportDep = Annotated[TokenTransport, Depends(get_token_transport)]

CROSS_SITE_SIGN_IN = "Sign-in from another site is refused: sign in from the app's own pages"


def _trusted_origin(origin: str, request: Request, settings: Settings) -> bool:
    """The request's own origin, or one of CORS_ORIGINS (the app's frontends; `*` is none)."""
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    trusted = {entry.rstrip("/").lower() for entry in settings.cors_origins if entry != "*"}
    return origin.rstrip("/").lower() in trusted | {own}


async def refuse_cross_site_sign_in(request: Request, settings: SettingsDep) -> None:
    """403 for a sign-in that would set session cookies from a page of another site (login
    CSRF: a forged form would sign the victim's browser in to the attacker's account). A
    browser says where a request comes from (`Sec-Fetch-Site`, `Origin`); a client without
    an Origin header (curl, a server) is no browser of a victim and passes."""
    if settings.auth_transport is AuthTransport.BEARER:
        return  # no cookie is set: nothing to plant in a browser
    origin = request.headers.get("origin")
    cross_site = request.headers.get("sec-fetch-site") == "cross-site"
    if cross_site or (origin is not None and not _trusted_origin(origin, request, settings)):
        raise Forbidden(CROSS_SITE_SIGN_IN)


SameSiteSignIn = Depends(refuse_cross_site_sign_in)


@dataclass(frozen=True, slots=True)
class PresentedRefreshToken:
    token: str
    from_cookie: bool
    # By cookie: the CSRF token sent with it, to be checked against the token's session.
    csrf_token: str | None = None


async def get_presented_refresh_token(
    request: Request,
    settings: SettingsDep,
    body: RefreshIn | None = None,
    csrf_header: Annotated[str | None, Header(alias=CSRF_HEADER)] = None,
) -> PresentedRefreshToken:
    """The refresh token from the body (bearer clients) or from its cookie, which, like every
    cookie-authenticated change, needs the CSRF token in `X-CSRF-Token` (else 403); that it is
    signed for the refresh token's session is checked once the token is found."""
    transport = settings.auth_transport
    secure = cookies_secure(request, settings)
    refresh_cookie = request.cookies.get(refresh_cookie_name(secure=secure))
    csrf_cookie = request.cookies.get(cookie_name(CSRF_COOKIE, secure=secure))
    if body is not None:
        if transport is AuthTransport.COOKIE:
            raise Unauthorized("Refresh tokens travel in the session cookie here")
        return PresentedRefreshToken(token=body.refresh_token, from_cookie=False)
    if refresh_cookie and transport is not AuthTransport.BEARER:
        if not double_submitted(csrf_cookie, csrf_header):
            raise Forbidden("Missing or wrong CSRF token")
        return PresentedRefreshToken(token=refresh_cookie, from_cookie=True, csrf_token=csrf_header)
    raise Unauthorized("No refresh token")


PresentedRefreshTokenDep = Annotated[PresentedRefreshToken, Depends(get_presented_refresh_token)]
