"""Social sign-in: the authorization code flow with PKCE through authlib's client, and the
account it signs in as.

The flow's secrets (state, nonce, PKCE verifier) stay on the server, in Redis under the
state, for AUTH_SOCIAL_FLOW_TTL_SECONDS and one use; the browser that started the flow holds
a random binding in an HttpOnly cookie, so a callback URL carried to another browser (login
CSRF) is refused. No provider is called while a database connection is held.

Accounts: a provider identity already linked signs in as its account. Otherwise the provider
must vouch for the address (OIDC `email_verified`, GitHub's /user/emails `verified`): then an
account with that address is linked (only for a provider with `link_by_email`: Google and
GitHub by default, a generic OIDC issuer only when configured so; else 409), or a new
verified account made. An address the provider
did not verify takes over nothing and creates nothing.
"""

from __future__ import annotations

import hmac
import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx2
import structlog
from authlib.integrations.base_client import OAuthError
from authlib.integrations.starlette_client import OAuth, StarletteOAuth2App
from joserfc.errors import JoseError
from opentelemetry import trace
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import AppError, Conflict, Forbidden, NotFound, ServiceUnavailable
from app.core.security import hash_token, new_opaque_token
from app.modules.auth.social.config import SocialProvider, SocialSettings
from app.modules.auth.social.models import SocialIdentity
from app.modules.auth.social.repositories import SocialIdentityRepository
from app.modules.users import EmailTaken, UserDTO, UsersGateway

log = structlog.get_logger("app.auth")
security_log = structlog.get_logger("app.security")

INVALID_STATE = "This sign-in is invalid, expired or was started in another browser: start again"
UNVERIFIED_EMAIL = (
    "The provider has not verified this email address: verify it there, or sign in with "
    "your password"
)


NOT_LINKED_BY_EMAIL = (
    "An account with this address already exists, and this provider is not trusted to sign "
    "in to it by address: sign in with your password"
)


class SocialSignInFailed(AppError):
    status_code = 400
    title = "Social Sign-In Failed"


class ProviderReplyInvalid(AppError):
    """The provider answered, but not as its API says it does."""

    status_code = 502
    title = "Bad Gateway"


# As stored (`SocialIdentity`, the users' email column): longer is refused, not truncated.
MAX_SUBJECT_LENGTH = 255
MAX_EMAIL_LENGTH = 320


@dataclass(frozen=True, slots=True)
class ProviderIdentity:
    subject: str
    email: str | None
    email_verified: bool
    username_hint: str


@lru_cache(maxsize=4)
def _registry(providers_key: str) -> OAuth:
    """authlib's clients, one per provider, built once per configuration: each keeps the
    provider's discovery document and keys once fetched."""
    oauth = OAuth()
    for name, raw in json.loads(providers_key).items():
        provider = SocialProvider.model_validate(raw)
        client_kwargs: dict[str, Any] = {"scope": provider.scope, "code_challenge_method": "S256"}
        if not provider.client_secret:  # a public client: PKCE alone
            client_kwargs["token_endpoint_auth_method"] = "none"  # noqa: S105
        oauth.register(
            name,
            client_id=provider.client_id,
            client_secret=provider.client_secret or None,
            server_metadata_url=provider.discovery_url,
            authorize_url=provider.authorize_url,
            access_token_url=provider.token_url,
            api_base_url=provider.api_base_url,
            client_kwargs=client_kwargs,
        )
    return oauth


def _provider_span(name: str, step: str) -> AbstractContextManager[trace.Span]:
    """A client span around a step's calls to the provider: authlib makes them with httpx2,
    which OpenTelemetry's httpx instrumentation does not see."""
    return trace.get_tracer("app.auth.social").start_as_current_span(
        f"social {name} {step}", kind=trace.SpanKind.CLIENT, attributes={"provider": name}
    )


def _flow_key(state: str) -> str:
    return f"auth:social:{hash_token(state)}"


class SocialService:
    def __init__(
        self,
        *,
        session: AsyncSession,
        settings: SocialSettings,
        redis: Redis,
        users: UsersGateway,
    ) -> None:
        self.session = session
        self.settings = settings
        self.redis = redis
        self.users = users
        self.identities = SocialIdentityRepository()

    def _client(self, name: str) -> tuple[SocialProvider, StarletteOAuth2App]:
        provider = self.settings.social_providers.get(name)
        if provider is None:
            raise NotFound("No such sign-in provider")
        client = _registry(self.settings.providers_key()).create_client(name)  # type: ignore[no-untyped-call]
        return provider, client

    # --- the flow --------------------------------------------------------------------------

    async def start(self, name: str, *, redirect_uri: str) -> tuple[str, str]:
        """(the provider's authorization URL, the browser binding for the flow cookie)."""
        _, client = self._client(name)
        try:
            with _provider_span(name, "authorize"):  # discovery, on the first sign-in
                started = await client.create_authorization_url(redirect_uri)
        except httpx2.HTTPError:
            raise ServiceUnavailable("The sign-in provider cannot be reached") from None
        binding = new_opaque_token()
        flow = {
            "provider": name,
            "binding": hash_token(binding),
            "redirect_uri": redirect_uri,
            "code_verifier": started["code_verifier"],
            "nonce": started.get("nonce"),
        }
        try:
            await self.redis.set(
                _flow_key(started["state"]),
                json.dumps(flow),
                ex=self.settings.social_flow_ttl_seconds,
            )
        except RedisError:
            raise ServiceUnavailable("Social sign-in is unavailable right now") from None
        return str(started["url"]), binding

    async def finish(
        self, name: str, *, code: str, state: str, binding: str | None
    ) -> ProviderIdentity:
        """The identity the provider vouches for, once the state is this browser's (single
        use), the code traded with the PKCE verifier and, for OIDC, the ID token checked
        (signature by the issuer's keys, issuer, audience, expiry and our nonce)."""
        provider, client = self._client(name)
        try:
            raw = await self.redis.getdel(_flow_key(state))
        except RedisError:
            raise ServiceUnavailable("Social sign-in is unavailable right now") from None
        flow = json.loads(raw) if raw else None
        if (
            flow is None
            or flow["provider"] != name
            or binding is None
            or not hmac.compare_digest(hash_token(binding), flow["binding"])
        ):
            security_log.warning("social_state_refused", security_event=True, provider=name)
            raise SocialSignInFailed(INVALID_STATE)
        try:
            with _provider_span(name, "callback"):
                token = await client.fetch_access_token(  # type: ignore[no-untyped-call]
                    redirect_uri=flow["redirect_uri"],
                    code=code,
                    code_verifier=flow["code_verifier"],
                )
                if provider.kind == "github":
                    identity = await self._github_identity(client, token)
                else:
                    identity = await self._oidc_identity(client, token, nonce=flow["nonce"])
        except OAuthError as error:
            raise SocialSignInFailed(f"The provider refused the sign-in: {error.error}") from None
        except JoseError:
            security_log.warning("social_id_token_refused", security_event=True, provider=name)
            raise SocialSignInFailed("The provider's ID token did not check out") from None
        except httpx2.HTTPError:
            raise ServiceUnavailable("The sign-in provider cannot be reached") from None
        if len(identity.subject) > MAX_SUBJECT_LENGTH or (
            identity.email is not None and len(identity.email) > MAX_EMAIL_LENGTH
        ):
            raise SocialSignInFailed("The provider's account id or email address is too long")
        return identity

    @staticmethod
    async def _oidc_identity(
        client: StarletteOAuth2App, token: dict[str, Any], *, nonce: str | None
    ) -> ProviderIdentity:
        if "id_token" not in token or not nonce:
            raise SocialSignInFailed("The provider sent no ID token")
        claims: dict[str, Any] = dict(await client.parse_id_token(token, nonce=nonce))
        if "email" not in claims:  # some issuers put it in userinfo only
            info = dict(await client.userinfo(token=token))
            if info.get("sub") != claims["sub"]:
                raise SocialSignInFailed("The provider's user info is not the ID token's")
            claims = {**info, **claims}
        email = claims.get("email")
        return ProviderIdentity(
            subject=str(claims["sub"]),
            email=str(email) if email else None,
            email_verified=claims.get("email_verified") is True,
            username_hint=str(claims.get("preferred_username") or (email or "").split("@")[0]),
        )

    @staticmethod
    async def _github_identity(
        client: StarletteOAuth2App, token: dict[str, Any]
    ) -> ProviderIdentity:
        """GitHub is OAuth 2.0 only: the account from /user, and whether an address is
        verified from /user/emails (the profile's public address says nothing about it)."""
        profile = await client.get("user", token=token)  # type: ignore[no-untyped-call]
        profile.raise_for_status()
        emails = await client.get("user/emails", token=token)  # type: ignore[no-untyped-call]
        emails.raise_for_status()
        try:
            user, entries = profile.json(), emails.json()
        except ValueError:
            raise ProviderReplyInvalid("GitHub's answer is not JSON") from None
        if not isinstance(user, dict) or "id" not in user or not isinstance(entries, list):
            raise ProviderReplyInvalid("GitHub's user or emails answer is not what its API says")
        verified = [
            entry
            for entry in entries
            if isinstance(entry, dict) and entry.get("verified") is True and entry.get("email")
        ]
        verified.sort(key=lambda entry: entry.get("primary") is not True)
        chosen = verified[0]["email"] if verified else user.get("email")
        return ProviderIdentity(
            subject=str(user["id"]),
            email=str(chosen) if chosen else None,
            email_verified=bool(verified),
            username_hint=str(user.get("login") or ""),
        )

    # --- the account -----------------------------------------------------------------------

    async def account_for(self, name: str, identity: ProviderIdentity) -> UserDTO:
        """The account this identity signs in as: the one it was linked to, else the one with
        the address the provider verified (linked now), else a new one."""
        linked = await self.identities.find(self.session, provider=name, subject=identity.subject)
        if linked is not None:
            user = await self.users.get_by_id(linked.user_id)
            if user is None or not user.is_active:
                raise Forbidden("This account cannot sign in")
            return user
        if not identity.email or not identity.email_verified:
            security_log.warning(
                "social_unverified_email", security_event=True, provider=name, email=identity.email
            )
            raise Forbidden(UNVERIFIED_EMAIL)
        user = await self.users.get_by_email(identity.email)
        if user is not None and not self.settings.social_providers[name].link_by_email:
            # Not every issuer checks that its user owns the address it vouches for.
            security_log.warning(
                "social_link_by_email_refused",
                security_event=True,
                provider=name,
                user_id=str(user.id),
            )
            raise Conflict(NOT_LINKED_BY_EMAIL)
        if user is not None and not user.is_verified:
            # Whoever registered the address never proved it: linking would hand them the
            # provider's sign-in (account pre-hijacking).
            raise Conflict(
                "An account with this address was never confirmed: confirm it with the link "
                "we mailed, or reset its password, then sign in with the provider again"
            )
        if user is not None and not user.is_active:
            raise Forbidden("This account cannot sign in")
        if user is None:
            try:
                user = await self.users.create_verified(
                    email=identity.email, username_hint=identity.username_hint
                )
            except EmailTaken:  # made by a concurrent request: link to it next time
                raise Conflict("This account was just created: sign in again") from None
        try:
            await self.identities.add(
                self.session,
                SocialIdentity(
                    user_id=user.id, provider=name, subject=identity.subject, email=identity.email
                ),
            )
            await self.session.commit()
        except IntegrityError:  # a concurrent callback linked it first
            await self.session.rollback()
            raise Conflict("This sign-in was just linked: sign in again") from None
        log.info("social_identity_linked", user_id=str(user.id), provider=name)
        return user
