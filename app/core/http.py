"""HTTP hardening and semantics: the security headers every response carries, a body size cap,
HEAD for every GET and OPTIONS with `Allow`."""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from starlette.responses import Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, problem_response

# An API answer is data: nothing in it may load, run or be framed.
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# The interactive docs (Swagger UI, served from the installed package: app.core.docs) load
# their script and styles from this origin and start with an inline script.
DOCS_CSP = (
    b"default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
# The admin panel's pages (sqladmin) run their own scripts and styles, and post forms to this
# origin, which must be named in `Origin` (app.core.admin's same-origin check): no
# `no-referrer` there, which makes browsers send `Origin: null`.
ADMIN_CSP = (
    b"default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    b"img-src 'self' data:; font-src 'self' data:; form-action 'self'; frame-ancestors 'none'"
)
REFERRER_POLICY = b"referrer-policy"
CSP = b"content-security-policy"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (CSP, API_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (REFERRER_POLICY, b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), microphone=(), camera=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def security_headers(
    *, hsts: bool, docs: bool = False, admin: bool = False
) -> list[tuple[bytes, bytes]]:
    """The headers every response carries; `docs`: those of the interactive docs page;
    `admin`: those of the admin panel's pages."""
    overrides = {CSP: DOCS_CSP} if docs else {}
    if admin:
        overrides = {CSP: ADMIN_CSP, REFERRER_POLICY: b"same-origin"}
    headers = [(name, overrides.get(name, value)) for name, value in SECURITY_HEADERS]
    return [*headers, HSTS] if hsts else headers


class BodySizeLimitMiddleware:
    """Rejects bodies over `max_bytes` with 413, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > self.max_bytes:
                    await self._reject(scope, receive, send)
                    return
                break

        received = 0
        rejected = False
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received, rejected
            if rejected:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now; the app then sees a disconnect and its own reply is dropped.
                    rejected = True
                    if not response_started:
                        await self._reject(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal response_started
            if rejected:
                return
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        error = PayloadTooLarge(f"The request body exceeds {self.max_bytes} bytes.")
        response = problem_response(error.status_code, title=error.title, detail=error.detail)
        await response(scope, receive, send)


_METHODS = frozenset({"GET", "PUT", "POST", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"})


class HttpMethodsMiddleware:
    """RFC 9110 on every route: a GET route answers HEAD too (9.3.2: the same status and
    headers, no body; FastAPI routes declare GET only, and HEAD would be a 405), and OPTIONS on
    a path answers 204 with the methods it allows in `Allow` (9.3.7). Inside the CORS
    middleware when CORS is on: a preflight is answered there first. The methods are read once
    from the app's routes. One layer for both: every request passes through it."""

    def __init__(self, app: ASGIApp, *, api: FastAPI) -> None:
        self.app = app
        self.api = api
        self._table: list[tuple[re.Pattern[str], frozenset[str]]] | None = None

    def _allowed(self, path: str) -> set[str]:
        if self._table is None:
            # Every route with its whole template, included routers' too (FastAPI's public
            # walk), read once.
            self._table = [
                (compile_path(context.path_format)[0], frozenset(context.methods) & _METHODS)
                for context in iter_route_contexts(self.api.routes)
                if context.path_format and context.methods
            ]
        return {method for regex, methods in self._table if regex.match(path) for method in methods}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"] if scope["type"] == "http" else None
        if method == "HEAD":
            await self._head(scope, receive, send)
            return
        methods = self._allowed(scope["path"]) if method == "OPTIONS" else None
        if not methods:  # not an OPTIONS, or no route of ours: 404 as for any method
            await self.app(scope, receive, send)
            return
        if "GET" in methods:
            methods.add("HEAD")
        methods.add("OPTIONS")
        allow = ", ".join(sorted(methods))
        await Response(status_code=204, headers={"Allow": allow})(scope, receive, send)

    async def _head(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": b"", "more_body": False}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)
