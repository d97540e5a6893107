"""A real OpenID Connect provider for the social sign-in tests, served by uvicorn on loopback
in a thread of the test process: discovery, JWKS, authorize (consent given at once, as the
account the test chose), token (authorization code with PKCE S256 checked, client secret
checked), userinfo with RS256 ID tokens signed by joserfc, and GitHub's /user and
/user/emails under /api/. Not a mock of our client: our code talks HTTP to it as to Google."""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import uvicorn
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

CLIENT_ID = "our-app"
CLIENT_SECRET = "our-app-secret"


@dataclass
class Account:
    """Who signs in at the provider, and what it says about their address."""

    sub: str = "provider-user-1"
    email: str | None = "carol@example.com"
    email_verified: bool = True
    username: str = "carol"


@dataclass
class Provider:
    base_url: str = ""
    account: Account = field(default_factory=Account)
    # What the ID token says for nonce: None copies the request's, "" leaves it out.
    nonce: str | None = None
    # False: the address is in userinfo only (as some issuers do).
    email_in_id_token: bool = True
    # Not None: what /user/emails answers instead of the list GitHub's API documents.
    github_emails_reply: Any = None
    key: RSAKey = field(
        default_factory=lambda: RSAKey.generate_key(2048, {"kid": "test-key"}, private=True)
    )
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: dict[str, Account] = field(default_factory=dict)

    def reset(self) -> None:
        self.account, self.nonce, self.email_in_id_token = Account(), None, True
        self.github_emails_reply = None
        self.codes.clear()
        self.tokens.clear()

    # --- endpoints -------------------------------------------------------------------------

    async def discovery(self, request: Request) -> Response:
        return JSONResponse(
            {
                "issuer": self.base_url,
                "authorization_endpoint": f"{self.base_url}/authorize",
                "token_endpoint": f"{self.base_url}/token",
                "userinfo_endpoint": f"{self.base_url}/userinfo",
                "jwks_uri": f"{self.base_url}/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }
        )

    async def jwks(self, request: Request) -> Response:
        return JSONResponse(KeySet([self.key]).as_dict(private=False))

    async def authorize(self, request: Request) -> Response:
        query = request.query_params
        if (
            query.get("client_id") != CLIENT_ID
            or query.get("response_type") != "code"
            or query.get("code_challenge_method") != "S256"
            or not query.get("code_challenge")
        ):
            return JSONResponse({"error": "invalid_request"}, status_code=400)
        code = secrets.token_urlsafe(16)
        self.codes[code] = {
            "redirect_uri": query["redirect_uri"],
            "challenge": query["code_challenge"],
            "nonce": query.get("nonce"),
            "account": self.account,
        }
        params = urlencode({"code": code, "state": query["state"]})
        return RedirectResponse(f"{query['redirect_uri']}?{params}", status_code=302)

    async def token(self, request: Request) -> Response:
        form = await request.form()
        basic = base64.b64encode(f"{CLIENT_ID}:{CLIENT_SECRET}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {basic}":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        grant = self.codes.pop(str(form.get("code")), None)
        verifier = str(form.get("code_verifier", ""))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("redirect_uri") != grant["redirect_uri"]
            or digest.rstrip(b"=").decode() != grant["challenge"]
        ):
            return JSONResponse({"error": "invalid_grant"}, status_code=400)
        account: Account = grant["account"]
        access = secrets.token_urlsafe(16)
        self.tokens[access] = account
        body: dict[str, Any] = {"access_token": access, "token_type": "Bearer", "expires_in": 3600}
        if "openid" in str(form.get("scope", "openid")) and grant["nonce"]:
            body["id_token"] = self._id_token(account, grant["nonce"])
        return JSONResponse(body)

    def _id_token(self, account: Account, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.base_url,
            "sub": account.sub,
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "preferred_username": account.username,
        }
        if account.email is not None and self.email_in_id_token:
            claims["email"], claims["email_verified"] = account.email, account.email_verified
        if self.nonce != "":
            claims["nonce"] = self.nonce if self.nonce is not None else nonce
        return jwt.encode({"alg": "RS256", "kid": self.key.kid}, claims, self.key)

    def _bearer(self, request: Request) -> Account | None:
        return self.tokens.get(request.headers.get("authorization", "").removeprefix("Bearer "))

    async def userinfo(self, request: Request) -> Response:
        account = self._bearer(request)
        if account is None:
            return JSONResponse({"error": "invalid_token"}, status_code=401)
        return JSONResponse(
            {"sub": account.sub, "email": account.email, "email_verified": account.email_verified}
        )

    async def github_user(self, request: Request) -> Response:
        account = self._bearer(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        # GitHub's profile shows a public address whether or not it is verified.
        return JSONResponse(
            {"id": int(account.sub), "login": account.username, "email": account.email}
        )

    async def github_emails(self, request: Request) -> Response:
        account = self._bearer(request)
        if account is None:
            return JSONResponse({"message": "Bad credentials"}, status_code=401)
        if self.github_emails_reply is not None:
            return JSONResponse(self.github_emails_reply)
        emails = [{"email": "old@example.net", "primary": False, "verified": False}]
        if account.email is not None:
            emails.append(
                {"email": account.email, "primary": True, "verified": account.email_verified}
            )
        return JSONResponse(emails)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self.discovery),
                Route("/jwks", self.jwks),
                Route("/authorize", self.authorize),
                Route("/token", self.token, methods=["POST"]),
                Route("/userinfo", self.userinfo),
                Route("/api/user", self.github_user),
                Route("/api/user/emails", self.github_emails),
            ]
        )


@contextmanager
def running_provider() -> Iterator[Provider]:
    """The provider on a free loopback port until the block ends."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    provider = Provider(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}")
    config = uvicorn.Config(provider.app(), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the test OIDC provider did not start")
        time.sleep(0.01)
    try:
        yield provider
    finally:
        server.should_exit = True
        thread.join(timeout=5)
        sock.close()


if __name__ == "__main__":  # try social sign-in by hand: docs/auth-two-factor-and-social.md
    port = int(os.environ.get("OIDC_PROVIDER_PORT", "9000"))
    provider = Provider(base_url=f"http://127.0.0.1:{port}")
    uvicorn.run(provider.app(), host="127.0.0.1", port=port)
