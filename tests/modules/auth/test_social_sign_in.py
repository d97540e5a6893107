"""Social sign-in end to end: our API and authlib's client against a real OpenID Connect
provider (and a GitHub stand-in) served on loopback (`oidc_provider.py`)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import parse_qs, urlparse

import httpx
import pyotp
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Environment, Settings
from app.modules.auth.social.config import (
    GOOGLE_DISCOVERY_URL,
    SocialSettings,
    get_social_settings,
)
from app.modules.auth.social.models import SocialIdentity
from app.modules.users.models import User
from tests.factories.users import DEFAULT_PASSWORD
from tests.modules.auth.oidc_provider import CLIENT_ID, CLIENT_SECRET, Provider, running_provider
from tests.modules.conftest import Headers, bearer

SOCIAL = "/api/v1/auth/social"
ME = "/api/v1/users/me"


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    """A browser on https: the flow cookie is Secure, as everywhere but a developer's own
    machine over plain http."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="https://test"
    ) as browser:
        yield browser


@pytest.fixture(scope="module")
def _provider() -> Iterator[Provider]:
    with running_provider() as provider:
        yield provider


@pytest.fixture
def provider(app: FastAPI, _provider: Provider) -> Iterator[Provider]:
    """The provider, configured as `acme` (OpenID Connect by discovery, trusted to link by
    address), as `corp` (the same, not trusted to) and as `github`."""
    base = _provider.base_url
    settings = SocialSettings(
        _env_file=None,
        social_providers={
            "acme": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "discovery_url": f"{base}/.well-known/openid-configuration",
                "link_by_email": True,
            },
            # The same issuer, trusted with no address (the default for an OIDC issuer).
            "corp": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "discovery_url": f"{base}/.well-known/openid-configuration",
            },
            "github": {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "authorize_url": f"{base}/authorize",
                "token_url": f"{base}/token",
                "api_base_url": f"{base}/api/",
            },
        },
    )
    app.dependency_overrides[get_social_settings] = lambda: settings
    _provider.reset()
    yield _provider
    app.dependency_overrides.pop(get_social_settings, None)


async def at_provider(client: AsyncClient, name: str = "acme") -> str:
    """Start at our API, follow the browser to the provider (real HTTP on loopback): the
    callback URL the provider sends the browser back to."""
    start = await client.get(f"{SOCIAL}/{name}/authorize")
    assert start.status_code == 302, start.text
    assert "httponly" in start.headers["set-cookie"].lower()
    query = parse_qs(urlparse(start.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["redirect_uri"] == [f"https://test{SOCIAL}/{name}/callback"]
    async with httpx.AsyncClient() as browser:
        consent = await browser.get(start.headers["location"])
    assert consent.status_code == 302, consent.text
    return consent.headers["location"]


async def sign_in(client: AsyncClient, name: str = "acme") -> httpx.Response:
    return await client.get(await at_provider(client, name))


def headers_of(response: httpx.Response) -> Headers:
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


async def test_a_verified_identity_gets_a_new_account_then_signs_in_to_it(
    client: AsyncClient, provider: Provider, session: AsyncSession
) -> None:
    response = await sign_in(client)
    assert response.headers["cache-control"] == "no-store"
    me = (await client.get(ME, headers=headers_of(response))).json()
    assert me["email"] == "carol@example.com"
    assert me["username"] == "carol"
    assert me["is_verified"] is True
    # The next sign-in finds the account by the provider's subject, whatever the address is now.
    provider.account.email = "carol@new.example.org"
    again = await client.get(ME, headers=headers_of(await sign_in(client)))
    assert again.json()["id"] == me["id"]
    assert await session.scalar(select(func.count()).select_from(User)) == 1
    # The account has no password: no password signs in to it.
    stored = await session.scalar(select(User).where(User.username == "carol"))
    assert stored is not None
    assert not stored.password_hash.startswith("$argon2")
    password = {"username": "carol", "password": "!no-password"}
    assert (await client.post("/api/v1/auth/login", data=password)).status_code == 401


async def test_a_verified_address_links_the_existing_account(
    client: AsyncClient, provider: Provider, user: User, session: AsyncSession
) -> None:
    provider.account.email = "Alice@Example.com"
    me = (await client.get(ME, headers=headers_of(await sign_in(client)))).json()
    assert me["id"] == str(user.id)
    linked = await session.scalar(select(SocialIdentity))
    assert linked is not None
    assert linked.user_id == user.id
    assert linked.provider == "acme"


async def test_an_issuer_not_trusted_with_addresses_links_no_existing_account(
    client: AsyncClient, provider: Provider, user: User, session: AsyncSession
) -> None:
    provider.account.email = "alice@example.com"
    refused = await sign_in(client, "corp")
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"
    assert "sign in with your password" in refused.json()["detail"]
    assert await session.scalar(select(func.count()).select_from(SocialIdentity)) == 0
    # A new address still makes a new account.
    provider.account.email = "dave@example.com"
    me = (await client.get(ME, headers=headers_of(await sign_in(client, "corp")))).json()
    assert me["email"] == "dave@example.com"
    assert me["id"] != str(user.id)


async def test_an_unverified_address_takes_over_nothing_and_creates_nothing(
    client: AsyncClient, provider: Provider, user: User, session: AsyncSession
) -> None:
    provider.account.email, provider.account.email_verified = "alice@example.com", False
    refused = await sign_in(client)
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert "not verified" in refused.json()["detail"]
    provider.account.email = "nobody@example.com"
    assert (await sign_in(client)).status_code == 403
    assert await session.scalar(select(func.count()).select_from(User)) == 1
    assert await session.scalar(select(func.count()).select_from(SocialIdentity)) == 0


async def test_an_account_whose_owner_never_confirmed_the_address_is_not_linked(
    client: AsyncClient, provider: Provider, make_user: object, session: AsyncSession
) -> None:
    await make_user(email="carol@example.com", username="squatter", is_verified=False)  # type: ignore[operator]
    refused = await sign_in(client)
    assert refused.status_code == 409
    assert await session.scalar(select(func.count()).select_from(SocialIdentity)) == 0


async def test_state_is_single_use_and_bound_to_the_browser(
    client: AsyncClient, provider: Provider, app: FastAPI
) -> None:
    callback = await at_provider(client)
    tampered = callback.replace("state=", "state=x")
    assert (await client.get(tampered)).status_code == 400
    # The right state from another browser (no flow cookie): login CSRF refused.
    callback = await at_provider(client)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as other_browser:
        stolen = await other_browser.get(callback)
    assert stolen.status_code == 400
    assert "another browser" in stolen.json()["detail"]
    # Refused states are spent too; a fresh flow works, once.
    assert (await client.get(callback)).status_code == 400
    callback = await at_provider(client)
    assert (await client.get(callback)).status_code == 200
    assert (await client.get(callback)).status_code == 400


@pytest.mark.parametrize("nonce", ["not-the-nonce-we-sent", ""])
async def test_a_wrong_or_missing_nonce_is_refused(
    client: AsyncClient, provider: Provider, nonce: str, session: AsyncSession
) -> None:
    provider.nonce = nonce
    refused = await sign_in(client)
    assert refused.status_code == 400
    assert refused.json()["detail"] == "The provider's ID token did not check out"
    assert await session.scalar(select(func.count()).select_from(User)) == 0


async def test_github_verified_address_comes_from_its_emails_api(
    client: AsyncClient, provider: Provider, session: AsyncSession
) -> None:
    provider.account.sub = "4242"
    provider.account.email_verified = False
    refused = await sign_in(client, "github")
    assert refused.status_code == 403, refused.text
    provider.account.email_verified = True
    me = (await client.get(ME, headers=headers_of(await sign_in(client, "github")))).json()
    assert me["email"] == "carol@example.com"
    assert me["username"] == "carol"
    linked = await session.scalar(select(SocialIdentity))
    assert linked is not None
    assert (linked.provider, linked.subject) == ("github", "4242")


async def test_an_account_with_two_factor_gets_its_challenge(
    client: AsyncClient, provider: Provider, user: User, user_headers: Headers
) -> None:
    enrolment = await client.post(
        "/api/v1/auth/2fa/enrol",
        headers=user_headers,
        json={"current_password": DEFAULT_PASSWORD},
    )
    secret = enrolment.json()["secret"]
    confirm = await client.post(
        "/api/v1/auth/2fa/confirm", headers=user_headers, json={"code": pyotp.TOTP(secret).now()}
    )
    assert confirm.status_code == 200
    provider.account.email = "alice@example.com"
    response = await sign_in(client)
    assert response.status_code == 200
    body = response.json()
    assert body["second_factor_required"] is True
    assert "access_token" not in body
    finished = await client.post(
        "/api/v1/auth/2fa/login",
        json={"challenge": body["challenge"], "code": confirm.json()["recovery_codes"][0]},
    )
    assert finished.status_code == 200


async def test_unknown_provider_and_provider_errors(
    client: AsyncClient, provider: Provider
) -> None:
    assert (await client.get(f"{SOCIAL}/nope/authorize")).status_code == 404
    denied = await client.get(f"{SOCIAL}/acme/callback?error=access_denied&state=abc")
    assert denied.status_code == 400
    assert "access_denied" in denied.json()["detail"]
    # A code the provider never issued, with a good state.
    callback = await at_provider(client)
    forged = callback.replace("code=", "code=forged")
    refused = await client.get(forged)
    assert refused.status_code == 400
    assert "refused" in refused.json()["detail"]


def test_provider_settings() -> None:
    settings = SocialSettings(
        _env_file=None,
        social_providers={
            "google": {"client_id": "id", "client_secret": "s"},
            "github": {"client_id": "g"},
        },
    )
    assert settings.social_providers["google"].discovery_url == GOOGLE_DISCOVERY_URL
    assert settings.social_providers["github"].kind == "github"
    assert settings.social_providers["github"].api_base_url == "https://api.github.com/"
    # Google and GitHub link by a verified address unless told not to; other issuers do not.
    assert settings.social_providers["google"].link_by_email is True
    assert settings.social_providers["github"].link_by_email is True
    corp = {"client_id": "id", "discovery_url": "https://id.example.com/.well-known/x"}
    untrusted = SocialSettings(
        _env_file=None,
        social_providers={
            "corp": corp,
            "trusted": {**corp, "link_by_email": True},
            "google": {"client_id": "id", "link_by_email": False},
        },
    )
    assert untrusted.social_providers["corp"].link_by_email is False
    assert untrusted.social_providers["trusted"].link_by_email is True
    assert untrusted.social_providers["google"].link_by_email is False
    with pytest.raises(ValidationError, match="discovery_url"):
        SocialSettings(_env_file=None, social_providers={"corp": {"client_id": "id"}})


async def test_the_address_may_come_from_userinfo(client: AsyncClient, provider: Provider) -> None:
    provider.email_in_id_token = False
    me = (await client.get(ME, headers=headers_of(await sign_in(client)))).json()
    assert me["email"] == "carol@example.com"
    assert me["is_verified"] is True


async def test_a_deactivated_linked_account_cannot_sign_in(
    client: AsyncClient, provider: Provider, user: User, session: AsyncSession
) -> None:
    provider.account.email = "alice@example.com"
    assert (await sign_in(client)).status_code == 200
    stored = await session.get(User, user.id)
    assert stored is not None
    stored.is_active = False
    await session.commit()
    assert (await sign_in(client)).status_code == 403


async def test_an_unreachable_provider_is_a_503(app: FastAPI, client: AsyncClient) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    port = closed.getsockname()[1]
    settings = SocialSettings(
        _env_file=None,
        social_providers={
            "down": {
                "client_id": CLIENT_ID,
                "discovery_url": f"http://127.0.0.1:{port}/.well-known/openid-configuration",
            }
        },
    )
    app.dependency_overrides[get_social_settings] = lambda: settings
    try:
        response = await client.get(f"{SOCIAL}/down/authorize")
    finally:
        app.dependency_overrides.pop(get_social_settings, None)
        closed.close()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"


async def test_the_calls_to_the_provider_are_spans_of_the_sign_in_trace(
    client: AsyncClient, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    # authlib calls the provider with httpx2, which OpenTelemetry's httpx instrumentation does
    # not see: the service wraps each step in a client span of its own.
    exporter = InMemorySpanExporter()
    recording = TracerProvider()
    recording.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: recording)
    headers_of(await sign_in(client))
    spans = {span.name: span for span in exporter.get_finished_spans()}
    for step in ("authorize", "callback"):
        span = spans[f"social acme {step}"]
        assert span.kind is trace.SpanKind.CLIENT
        assert span.status.status_code is not trace.StatusCode.ERROR


@pytest.mark.parametrize(
    ("environment", "base_url", "secure"),
    [
        (Environment.DEVELOPMENT, "http://localhost:8000", False),
        (Environment.DEVELOPMENT, "http://dev.example.com", True),
        (Environment.TEST, "http://test", True),
        (Environment.PRODUCTION, "https://api.example.com", True),
    ],
)
async def test_the_flow_cookie_is_secure_as_the_session_cookies_are(
    app: FastAPI,
    provider: Provider,
    app_settings: Callable[..., Settings],
    environment: Environment,
    base_url: str,
    secure: bool,
) -> None:
    app_settings(app_env=environment)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=base_url
    ) as browser:
        start = await browser.get(f"{SOCIAL}/acme/authorize")
    assert start.status_code == 302, start.text
    assert ("secure" in start.headers["set-cookie"].lower()) is secure


async def test_what_we_cannot_store_or_read_from_a_provider_is_a_problem_not_a_500(
    client: AsyncClient, provider: Provider, session: AsyncSession
) -> None:
    provider.account.sub = "s" * 256
    too_long = await sign_in(client)
    assert too_long.status_code == 400
    assert "too long" in too_long.json()["detail"]
    provider.reset()
    provider.account.email = "c" * 310 + "@example.com"
    assert (await sign_in(client)).status_code == 400
    # GitHub's /user/emails answering something else than a list of addresses.
    provider.reset()
    provider.account.sub = "4242"
    provider.github_emails_reply = {"message": "rate limited"}
    odd = await sign_in(client, "github")
    assert odd.status_code == 502, odd.text
    assert odd.headers["content-type"] == "application/problem+json"
    # Entries that are no addresses vouch for none: the profile's address is unverified.
    provider.github_emails_reply = ["not-an-entry", {"verified": True}]
    unverified = await sign_in(client, "github")
    assert unverified.status_code == 403, unverified.text
    assert await session.scalar(select(func.count()).select_from(User)) == 0
