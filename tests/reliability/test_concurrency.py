"""Concurrency and load: a real server under 256 connections, and races on one record."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.sessions import SignInSession
from app.modules.auth.config import AuthSettings
from app.modules.auth.models import RefreshToken
from app.modules.users.models import User
from bench.loadgen import keep_alive_load
from tests.conftest import TEST_SECRET, MailOutbox, Services
from tests.modules.conftest import auth_settings
from tests.reliability.conftest import Headers, Uvicorn, bearer, login, server_env
from tests.reliability.figures import record
from tests.support import queued_work_done

__all__ = ["auth_settings"]

# The issue asks for 10 s; `make test` runs 3 s to stay in its time budget. RELIABILITY_LOAD_S=10
# runs the full length.
LOAD_SECONDS = float(os.environ.get("RELIABILITY_LOAD_S", "3"))
CONNECTIONS = int(os.environ.get("RELIABILITY_CONNECTIONS", "256"))
# The template's defaults: one bounded pool, and a request waits at most 5 s for a connection.
POOL_SIZE, MAX_OVERFLOW, POOL_TIMEOUT = 10, 10, 5.0
WARM_UP_SECONDS = 1.0  # wrk takes whole seconds
APP_NAME = "reliability-load"


@pytest.fixture
def server(services: Services) -> Iterator[Uvicorn]:
    """Stopped (it finishes the requests it still holds) before the tables are truncated."""
    env = server_env(
        DATABASE_URL=services.database_url,
        REDIS_URL=services.redis_url,
        SECRET_KEY=TEST_SECRET,
        RATE_LIMIT_ENABLED="false",
        QUEUE_BROKER="memory",
        DB_POOL_SIZE=str(POOL_SIZE),
        DB_MAX_OVERFLOW=str(MAX_OVERFLOW),
        DB_POOL_TIMEOUT=str(POOL_TIMEOUT),
        PGAPPNAME=APP_NAME,  # libpq: lets the test count the server's connections
    )
    uvicorn = Uvicorn(env).start()
    try:
        yield uvicorn
    finally:
        uvicorn.stop()


def _parse_wrk(output: str) -> dict[str, Any]:
    def number(pattern: str) -> float:
        match = re.search(pattern, output)
        return float(match.group(1)) if match else 0.0

    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    connect, read, write, timeouts = (int(g) for g in errors.groups()) if errors else (0,) * 4

    def latency(label: str) -> float:
        match = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if not match:
            return 0.0
        scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[match.group(2)]
        return float(match.group(1)) * scale

    return {
        "requests": int(number(r"(\d+) requests in")),
        "rps": number(r"Requests/sec:\s+([\d.]+)"),
        "non_2xx": int(number(r"Non-2xx or 3xx responses: (\d+)")),
        "socket_errors": connect + read + write,
        "timeouts": timeouts,
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
    }


async def _wrk(url: str, headers: Headers, seconds: float) -> dict[str, Any]:
    wrk = shutil.which("wrk")
    assert wrk is not None
    header = next(f"{name}: {value}" for name, value in headers.items())
    process = await asyncio.create_subprocess_exec(
        wrk, "-t2", f"-c{CONNECTIONS}", f"-d{seconds:g}s", "--timeout", "5s", "--latency",
        "-H", header, url,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await process.communicate()
    assert process.returncode == 0, out.decode()
    return {"tool": "wrk", **_parse_wrk(out.decode())}


async def _asyncio_load(url: str, headers: Headers, seconds: float) -> dict[str, Any]:
    """The fallback when wrk is not installed (see bench.loadgen)."""
    result = await keep_alive_load(url, seconds=seconds, connections=CONNECTIONS, headers=headers)
    return {
        "tool": "asyncio",
        "requests": result.requests,
        "rps": result.requests / result.seconds,
        "non_2xx": result.non_2xx,
        "socket_errors": result.socket_errors,
        "timeouts": result.timeouts,
        "p50_ms": result.percentile_ms(0.5),
        "p99_ms": result.percentile_ms(0.99),
    }


# A real server under load: `make e2e`.
@pytest.mark.e2e
async def test_256_connections_on_a_user_lookup_no_error_no_timeout(
    server: Uvicorn, client: AsyncClient, make_user: Any, session: AsyncSession
) -> None:
    user = await make_user(username="loaded", email="loaded@example.com")
    headers = bearer((await login(client, "loaded"))["access_token"])
    url = f"{server.url}/api/v1/users/{user.id}"
    async with httpx.AsyncClient() as http:
        assert (await http.get(url, headers=headers)).status_code == 200

    stop_sampling = asyncio.Event()

    async def peak_connections() -> int:
        # Stopped by an event, not cancelled: a cancel landing mid-query would fail the test.
        peak = 0
        while not stop_sampling.is_set():
            count = await session.scalar(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": APP_NAME},
            )
            await session.rollback()
            peak = max(peak, int(count or 0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop_sampling.wait(), timeout=0.25)
        return peak

    generate = _wrk if shutil.which("wrk") else _asyncio_load
    # Warm-up at full concurrency (not measured): the pool opens its connections.
    warm_up = await generate(url, headers, WARM_UP_SECONDS)
    sampler = asyncio.create_task(peak_connections())
    try:
        result = await generate(url, headers, LOAD_SECONDS)
    finally:
        stop_sampling.set()  # the sampler uses the test's session: it stops before teardown
        peak = await sampler
    record("load_users_by_id", seconds=LOAD_SECONDS, connections=CONNECTIONS,
           peak_db_connections=peak, warm_up=warm_up, **result)  # fmt: skip
    assert warm_up["socket_errors"] == warm_up["timeouts"] == 0, warm_up
    assert result["requests"] > 0
    assert result["non_2xx"] == 0, result
    assert result["socket_errors"] == 0, result
    assert result["timeouts"] == 0, result
    # Bounded pool, short waits: no request queued anywhere near the pool timeout.
    assert 0 < peak <= POOL_SIZE + MAX_OVERFLOW, peak
    assert result["p99_ms"] < POOL_TIMEOUT * 1000, result
    # The server is still healthy afterwards.
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{server.url}/health/ready")).status_code == 200


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.e2e  # 200 argon2id hashes: seconds of CPU, make e2e
@pytest.mark.no_cover
async def test_200_concurrent_registrations_of_one_email_make_one_user(
    app: FastAPI,
    client: AsyncClient,
    session: AsyncSession,
    auth_settings: Callable[..., AuthSettings],
    mail_outbox: MailOutbox,
) -> None:
    auth_settings(register_rate_limit_ip="1000/hour")

    async def register(n: int) -> int:
        body = {"email": "Race@Example.com", "username": f"racer{n}", "password": "long-password-1"}
        response = await client.post("/api/v1/auth/register", json=body)
        return response.status_code

    started = time.perf_counter()
    statuses = Counter(await asyncio.gather(*(register(n) for n in range(200))))
    elapsed = time.perf_counter() - started
    record("registration_race", requests=200, seconds=round(elapsed, 2), statuses=dict(statuses))
    # One account; every answer the same, so the race tells nobody the address is taken.
    assert statuses == {202: 200}, statuses
    users = await session.scalar(
        select(func.count()).select_from(User).where(func.lower(User.email) == "race@example.com")
    )
    assert users == 1
    # The address gets the verification link and at most its mail budget of notices.
    await queued_work_done(app)
    await mail_outbox.wait(1)
    assert len(mail_outbox) <= 3


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_one_refresh_token_presented_concurrently_rotates_once(
    client: AsyncClient, make_user: Any, session: AsyncSession
) -> None:
    await make_user(username="rotator", email="rotator@example.com")
    tokens = await login(client, "rotator")

    async def refresh() -> int:
        response = await client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        )
        return response.status_code

    statuses = Counter(await asyncio.gather(*(refresh() for _ in range(20))))
    record("refresh_race", requests=20, statuses=dict(statuses))
    assert statuses == {200: 1, 401: 19}, statuses
    # One rotation: the original token and exactly one successor in the session; and since
    # the same token was presented again after rotating, the session ended (reuse detection).
    rows = (await session.scalars(select(RefreshToken))).all()
    assert len(rows) == 2
    assert sum(row.rotated_at is not None for row in rows) == 1
    signed_in = (await session.scalars(select(SignInSession))).one()
    assert signed_in.ended_at is not None


# Not measured by coverage: it repeats paths the functional tests cover, many times over.
@pytest.mark.no_cover
async def test_concurrent_patches_never_lose_a_write_silently(
    app: FastAPI, client: AsyncClient, make_user: Any, admin_headers: Headers
) -> None:
    target = await make_user(username="contended", email="contended@example.com")
    url = f"/api/v1/users/{target.id}"

    async def patch(n: int) -> tuple[int, str]:
        response = await client.patch(url, json={"username": f"writer{n}"}, headers=admin_headers)
        return response.status_code, response.headers["content-type"]

    results = await asyncio.gather(*(patch(n) for n in range(20)))
    statuses = Counter(status for status, _ in results)
    record("patch_race", requests=20, statuses=dict(statuses))
    assert set(statuses) <= {200, 409}, statuses
    assert statuses[200] >= 1
    assert statuses[409] >= 1  # the race happened, and was refused rather than overwritten
    assert all(kind == "application/problem+json" for status, kind in results if status == 409)
    async with app.state.database.sessionmaker() as fresh:
        stored = await fresh.get(User, target.id)
        assert stored is not None
        # Every acknowledged write was applied on top of the one before it: one version each.
        assert stored.version == 1 + statuses[200]
        assert stored.username.startswith("writer")


async def test_a_stale_write_is_refused_with_409(
    app: FastAPI, client: AsyncClient, make_user: Any, admin_headers: Headers
) -> None:
    """Deterministic form of the race: read, someone else writes, then write what was read."""
    target = await make_user(username="stale", email="stale@example.com")
    async with app.state.database.sessionmaker() as reader:
        loaded = await reader.get(User, target.id)
        assert loaded is not None
        response = await client.patch(
            f"/api/v1/users/{target.id}", json={"username": "first"}, headers=admin_headers
        )
        assert response.status_code == 200
        loaded.username = "second"
        from sqlalchemy.orm.exc import StaleDataError

        with pytest.raises(StaleDataError):
            await reader.commit()
    async with app.state.database.sessionmaker() as fresh:
        stored = await fresh.get(User, target.id)
        assert stored is not None
        assert (stored.username, stored.version) == ("first", 2)
    assert uuid.UUID(str(target.id))
