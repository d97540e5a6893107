"""Liveness (no I/O) and readiness (database and Redis, each with a short timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

router = APIRouter(prefix="/health", tags=["health"])
log = structlog.get_logger("app.health")

_LIVE_BODY = orjson.dumps({"status": "ok"})


LIVE_PATH = "/health/live"


@router.get("/live", summary="Liveness: the process answers")
async def live() -> Response:
    # Documents the probe; requests are answered by LivenessProbeMiddleware before routing.
    return Response(_LIVE_BODY, media_type="application/json")


class LivenessProbeMiddleware:
    """Answers GET/HEAD /health/live before any other layer.

    Orchestrators probe liveness every few seconds on every replica; the answer needs no
    routing, no dependency injection and no access-log line (probes would drown the real
    traffic in the logs). The security headers are still sent.
    """

    def __init__(self, app: ASGIApp, *, headers: list[tuple[bytes, bytes]]) -> None:
        self.app = app
        self.start = {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(_LIVE_BODY)).encode()),
                *headers,
            ],
        }
        self.body = {"type": "http.response.body", "body": _LIVE_BODY}
        self.empty_body = {"type": "http.response.body", "body": b""}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == LIVE_PATH:
            method = scope["method"]
            if method == "GET" or method == "HEAD":
                await send(self.start)
                await send(self.body if method == "GET" else self.empty_body)
                return
        await self.app(scope, receive, send)


async def _check(name: str, probe: Callable[[], Awaitable[object]], limit: float) -> str:
    try:
        await asyncio.wait_for(probe(), timeout=limit)
    except Exception as error:  # any failure means "not ready"; the reason goes to the log
        log.warning("readiness_check_failed", check=name, error=repr(error))
        return "fail"
    return "ok"


@router.get(
    "/ready",
    summary="Readiness: database and Redis answer",
    responses={503: {"description": "a dependency is down; each check's status is given"}},
)
async def ready(request: Request) -> Response:
    state = request.app.state
    timeout = state.settings.health_timeout
    database, redis = await asyncio.gather(
        _check("database", state.database.ping, timeout),
        _check("redis", state.redis.ping, timeout),
    )
    checks = {"database": database, "redis": redis}
    healthy = all(status == "ok" for status in checks.values())
    body = {"status": "ok" if healthy else "fail", "checks": checks}
    return Response(
        orjson.dumps(body), status_code=200 if healthy else 503, media_type="application/json"
    )
