"""CSRF tokens for cookie-authenticated requests: a signed double-submit cookie.

A browser sends the session cookies with any request to the API, a forged cross-site one
included; only a page of an origin the API trusts can read the CSRF token and send it back in
the `X-CSRF-Token` header. The token is also signed with the sign-in session's id (OWASP's
"signed double-submit cookie"), so a cookie planted by a sibling subdomain, or a token of
another session, does not pass.

Core checks it (`app.core.auth`, for requests authenticated by the access cookie); the module
that signs users in makes it (`new_csrf_token`) and sets the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

CSRF_COOKIE = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
# Methods that change nothing need no token (RFC 9110, 9.2.1).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _signature(secret: str, session_id: uuid.UUID, nonce: str) -> str:
    message = f"csrf|{session_id}|{nonce}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def new_csrf_token(secret: str, session_id: uuid.UUID) -> str:
    """A fresh token of the sign-in session `session_id`: `<nonce>.<signature>`."""
    nonce = secrets.token_urlsafe(16)
    return f"{nonce}.{_signature(secret, session_id, nonce)}"


def double_submitted(cookie: str | None, header: str | None) -> bool:
    """The header repeats the cookie (a page that could read it sent the request)."""
    return bool(cookie) and bool(header) and hmac.compare_digest(str(cookie), str(header))


def csrf_valid(
    secret: str, session_id: uuid.UUID, *, cookie: str | None, header: str | None
) -> bool:
    """Double-submitted, and signed for this sign-in session."""
    if not double_submitted(cookie, header):
        return False
    nonce, _, signature = str(header).partition(".")
    return hmac.compare_digest(signature, _signature(secret, session_id, nonce))
