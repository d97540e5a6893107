"""HTTP hardening: the security headers every response carries, and a body size cap."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, problem_response

# An API answer is data: nothing in it may load, run or be framed.
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
# The interactive docs (FastAPI's Swagger UI page) load its script and styles from jsDelivr and
# start it with an inline script; they fetch the schema from this origin.
DOCS_CSP = (
    b"default-src 'none'; script-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    b"style-src https://cdn.jsdelivr.net 'unsafe-inline'; "
    b"img-src https://fastapi.tiangolo.com https://cdn.jsdelivr.net data:; "
    b"connect-src 'self'; frame-ancestors 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect"})
CSP = b"content-security-policy"

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (CSP, API_CSP),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"geolocation=(), microphone=(), camera=()"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


def security_headers(*, hsts: bool, docs: bool = False) -> list[tuple[bytes, bytes]]:
    """The headers every response carries; `docs`: those of the interactive docs page."""
    headers = [(CSP, DOCS_CSP) if name == CSP and docs else (name, value)
               for name, value in SECURITY_HEADERS]  # fmt: skip
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
