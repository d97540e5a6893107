"""Liveness (no I/O) and readiness (database and Redis, each with a short timeout)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import structlog
from fastapi import APIRouter, Request
from starlette.responses import Response

router = APIRouter(prefix="/health", tags=["health"])
log = structlog.get_logger("app.health")

_LIVE_BODY = orjson.dumps({"status": "ok"})


@router.get("/live", summary="Liveness: the process answers")
async def live() -> Response:
    return Response(_LIVE_BODY, media_type="application/json")


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
