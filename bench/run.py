"""Load benchmark: the template against a raw Starlette + psycopg baseline, in one run.

    python -m bench.run                 # 3 rounds of 10 s per scenario, 64 connections
    python -m bench.run --smoke         # 1 s per scenario, proves the harness works (CI)
    python -m bench.run --scenarios list,list_deep,list_cursor,list_filtered,patch_me
                                        # data scale: 1,000,000 users seeded first (once)

Both servers run with uvicorn, one worker, uvloop and httptools, against the same PostgreSQL and
Redis (DATABASE_URL / REDIS_URL, or embedded ones under .data/bench). Rate limiting is disabled
for the run so the limiter does not answer 429 to the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.loadgen import keep_alive_load

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
REPORT_LUA = (ROOT / "bench" / "report.lua").read_text()
BIN = Path(sys.executable).parent
ADMIN_EMAIL = "bench-admin@example.com"
ADMIN_PASSWORD = "bench-password-" + "x" * 12


@dataclass
class Result:
    scenario: str
    target: str
    connections: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int
    load_generator: str
    # Each round's own figures, for a reader who wants to see the spread.
    rounds_requests_per_s: list[float] = field(default_factory=list)
    rounds_p99_ms: list[float] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _services() -> dict[str, str]:
    from app.core.embedded import ensure_services

    ensure_services(ROOT / ".data" / "bench", database="bench")
    return {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}


def _migrate(database_url: str) -> None:
    """What `app migrate upgrade head` does, in this process (saves a CLI start)."""
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(ROOT / "migrations"))
    config.attributes["database_url"] = "postgresql+psycopg://" + database_url.partition("://")[2]
    command.upgrade(config, "head")


def _server_env(services: dict[str, str], pool_size: int) -> dict[str, str]:
    return {
        **os.environ,
        **services,
        "APP_ENV": "production",
        "SECRET_KEY": secrets.token_hex(32),
        "LOG_LEVEL": "INFO",
        "RATE_LIMIT_ENABLED": "false",
        "RATE_LIMIT_DISABLED_IN_PRODUCTION": "true",
        "DB_POOL_SIZE": str(pool_size),
        "DB_MAX_OVERFLOW": "0",
        "SMTP_HOST": "127.0.0.1",
    }


def _start(
    command: list[str], env: dict[str, str], port: int, log: Path
) -> tuple[subprocess.Popen[bytes], float]:
    """Start a server; return it and its cold start (spawn to first 200 on /health/live)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        command, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=ROOT
    )
    deadline = started + 30
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command[0]} exited early; see {log}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/live", timeout=0.5).status_code == 200:
                return process, time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.01)
    process.kill()
    raise RuntimeError(f"{command[0]} did not answer within 30 s; see {log}")


def _settled_rss_mb(pid: int, *, within: float = 15.0) -> float:
    """RSS once the server has finished what the load left queued (sign-ins wait their turn
    for argon2id, 64 MiB each, after wrk has stopped): idle for half a second, or `within`."""
    process = psutil.Process(pid)
    deadline = time.monotonic() + within
    while time.monotonic() < deadline and process.cpu_percent(interval=0.5) > 5.0:
        pass
    return float(process.memory_info().rss) / 2**20


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


def _create_admin(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A verified admin through the CLI; started beside the servers, awaited by `_sign_in`."""
    return subprocess.Popen(
        [
            str(BIN / "app"),
            "create-superuser",
            "--email",
            ADMIN_EMAIL,
            "--username",
            "benchadmin",
            "--password",
            ADMIN_PASSWORD,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=ROOT,
    )


def _sign_in(admin: subprocess.Popen[bytes], base: str) -> tuple[str, str]:
    """Log the admin in through the API: (token, user id). An admin left by an earlier run
    makes the CLI fail with "exists", which is fine: the sign-in tells."""
    admin.wait(timeout=60)
    login = httpx.post(
        f"{base}/api/v1/auth/login",
        data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
        timeout=30,
    )
    login.raise_for_status()
    token = login.json()["access_token"]
    me = httpx.get(f"{base}/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    me.raise_for_status()
    return token, me.json()["id"]


def _wrk(url: str, *, duration: float, connections: int, setup_lua: str) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(setup_lua + "\n" + REPORT_LUA)
    try:
        output = subprocess.run(
            [  # noqa: S607 - wrk from the system's packages, found on PATH
                "wrk",
                f"-t{min(2, connections)}",
                f"-c{connections}",
                f"-d{max(1, round(duration))}s",
                "--latency",
                "--timeout",
                "5s",
                "-s",
                script.name,
                url,
            ],
            capture_output=True,
            text=True,
            check=True,
            timeout=duration + 60,
        ).stdout
    finally:
        os.unlink(script.name)
    line = next(line for line in output.splitlines() if line.startswith("JSON"))
    data: dict[str, Any] = json.loads(line[4:])
    data["generator"] = "wrk"
    return data


def _python_load(
    url: str,
    *,
    duration: float,
    connections: int,
    method: str,
    headers: dict[str, str],
    body: str | None,
    **per_connection: Any,
) -> dict[str, Any]:
    """Fallback when wrk is not installed: bare-asyncio keep-alive connections."""
    result = asyncio.run(
        keep_alive_load(
            url,
            seconds=duration,
            connections=connections,
            method=method,
            headers=headers,
            body=body,
            **per_connection,
        )
    )
    return {
        "requests": result.requests,
        "duration_us": int(result.seconds * 1e6),
        "p50_us": int(result.percentile_ms(0.5) * 1000),
        "p99_us": int(result.percentile_ms(0.99) * 1000),
        "errors": result.non_2xx + result.socket_errors + result.timeouts,
        "generator": "python",
    }


def _load(
    url: str,
    *,
    duration: float,
    connections: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str | None = None,
) -> dict[str, Any]:
    headers = headers or {}
    if shutil.which("wrk"):
        lua = [f'wrk.method = "{method}"']
        lua += [f'wrk.headers["{name}"] = "{value}"' for name, value in headers.items()]
        if body is not None:
            lua.append(f"wrk.body = {json.dumps(body)}")
        return _wrk(url, duration=duration, connections=connections, setup_lua="\n".join(lua))
    return _python_load(
        url, duration=duration, connections=connections, method=method, headers=headers, body=body
    )


def _combined(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs of one target as one: totals for counts and time, medians for latency."""
    return {
        "requests": sum(run["requests"] for run in runs),
        "duration_us": sum(run["duration_us"] for run in runs),
        "p50_us": statistics.median(run["p50_us"] for run in runs),
        "p99_us": statistics.median(run["p99_us"] for run in runs),
        "errors": sum(run["errors"] for run in runs),
        "generator": runs[0]["generator"],
        "runs": runs,
    }


def _requests_per_s(data: dict[str, Any]) -> float:
    return round(int(data["requests"]) / (data["duration_us"] / 1e6 or 1), 1)


def _ms(microseconds: float) -> float:
    return round(microseconds / 1000, 2)


def _result(scenario: str, target: str, connections: int, data: dict[str, Any]) -> Result:
    return Result(
        scenario=scenario,
        target=target,
        connections=connections,
        requests_per_s=_requests_per_s(data),
        p50_ms=_ms(data["p50_us"]),
        p99_ms=_ms(data["p99_us"]),
        errors=int(data["errors"]),
        requests=int(data["requests"]),
        load_generator=data["generator"],
        rounds_requests_per_s=[_requests_per_s(run) for run in data["runs"]],
        rounds_p99_ms=[_ms(run["p99_us"]) for run in data["runs"]],
    )


SCENARIOS = ("live", "users", "login")
# On 1,000,000 users (seeded once into the bench database, inside PostgreSQL).
DATA_SCENARIOS = ("list", "list_deep", "list_cursor", "list_filtered", "patch_me")
# Tasks enqueued by an endpoint and run by one worker: the template's against bare taskiq.
QUEUE_SCENARIOS = ("queue",)
QUEUE_CONNECTIONS = 16
# Enqueue-to-start is measured at a steady rate below both workers' capacity (8 connections,
# one request each every 20 ms: 400 tasks/s); at saturation it only says how long the backlog
# has grown.
QUEUE_LATENCY_CONNECTIONS = 8
QUEUE_LATENCY_PACE = 0.02
DATA_USERS = 1_000_000
DEEP_PAGE = 10_000
PATCH_USERS = 32


def _seed(database_url: str, count: int) -> float:
    """`count` users made by PostgreSQL (generate_series), vacuumed and analyzed; skipped when
    an earlier run left them. Their password is the admin's. Returns the seconds it took."""
    import psycopg
    from pwdlib import PasswordHash

    from bench.seed import SEED_USERS_SQL, seed_users_params

    started = time.perf_counter()
    url = "postgresql://" + database_url.partition("://")[2]
    with psycopg.connect(url, autocommit=True) as conn:
        present = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM users WHERE email LIKE 'seed%%@example.com' "
            "LIMIT %s) AS seeded",
            (count,),
        ).fetchone()
        if present is None or present[0] < count:
            conn.execute("DELETE FROM users WHERE email LIKE 'seed%%@example.com'")
            params = seed_users_params(count, PasswordHash.recommended().hash(ADMIN_PASSWORD))
            conn.execute(SEED_USERS_SQL, params)
            conn.execute("VACUUM ANALYZE users")
    return time.perf_counter() - started


def _data_scale_plan(
    app_url: str, token: str, connections: int
) -> list[tuple[str, str, dict[str, Any], int]]:
    """(scenario, path, load options, connections) of the data-scale scenarios."""
    auth = {"Authorization": f"Bearer {token}"}
    first = "/api/v1/users?sort=-created_at&per_page=20"
    deep = httpx.get(
        f"{app_url}/api/v1/users",
        params={"sort": "-created_at", "per_page": 20, "page": DEEP_PAGE - 1},
        headers=auth,
        timeout=60,
    )
    deep.raise_for_status()
    cursor = deep.json()["next_cursor"]  # page DEEP_PAGE, by cursor
    newest = httpx.get(
        f"{app_url}/api/v1/users", params={"per_page": 1}, headers=auth, timeout=60
    ).json()["items"][0]["created_at"]
    since = (datetime.fromisoformat(newest) - timedelta(days=1)).isoformat()  # ~864 admins
    filtered = httpx.URL(
        "/api/v1/users",
        params={"sort": "-created_at", "per_page": 20, "filter[role]": "admin",
                "filter[created_at][gte]": since},
    )  # fmt: skip
    return [
        ("GET /api/v1/users first page", first, {"headers": auth}, connections),
        (
            f"GET /api/v1/users page {DEEP_PAGE} (offset)",
            f"{first}&page={DEEP_PAGE}",
            {"headers": auth},
            connections,
        ),
        (
            f"GET /api/v1/users page {DEEP_PAGE} (cursor)",
            f"/api/v1/users?per_page=20&cursor={cursor}",
            {"headers": auth},
            connections,
        ),
        ("GET /api/v1/users filtered", str(filtered), {"headers": auth}, connections),
    ]


def _patch_tokens(app_url: str, count: int) -> list[dict[str, str]]:
    """Bearer headers of `count` seeded users (by email: the scenario changes their
    usernames), one per connection (no two requests race for one row's version)."""
    headers = []
    for number in range(1, count + 1):
        login = httpx.post(
            f"{app_url}/api/v1/auth/login",
            data={"username": f"seed{number}@example.com", "password": ADMIN_PASSWORD},
            timeout=60,
        )
        login.raise_for_status()
        headers.append({"Authorization": f"Bearer {login.json()['access_token']}"})
    return headers


def _new_username(connection: int, sent: int) -> str:
    return json.dumps({"username": f"p{connection}n{sent}r{secrets.token_hex(3)}"})


def run(
    duration: float,
    connections: int,
    warmup: float,
    scenarios: tuple[str, ...] = SCENARIOS,
    *,
    rounds: int = 1,
    overlap_setup: bool = False,
) -> dict[str, Any]:
    services = _services()
    env = _server_env(services, pool_size=max(10, min(connections // 4, 30)))
    _migrate(services["DATABASE_URL"])
    data_scale = [name for name in DATA_SCENARIOS if name in scenarios]
    seed_s = _seed(services["DATABASE_URL"], DATA_USERS) if data_scale else 0.0
    logs = Path(tempfile.mkdtemp(prefix="bench-"))
    app_port, base_port = _free_port(), _free_port()
    app_cmd = [
        str(BIN / "app"),
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(app_port),
        "--workers",
        "1",
    ]
    base_cmd = _uvicorn("bench.baseline:app", base_port)
    # A smoke run overlaps the admin's creation with the servers' start; a measured run keeps
    # the cold starts free of that competition.
    started: list[subprocess.Popen[bytes]] = []  # stopped whatever happens
    results: list[Result] = []
    queue: dict[str, Any] | None = None
    try:
        if overlap_setup:
            started.append(admin := _create_admin(env))
        app_proc, app_cold = _start(app_cmd, env, app_port, logs / "app.log")
        started.append(app_proc)
        base_proc, base_cold = _start(base_cmd, env, base_port, logs / "baseline.log")
        started.append(base_proc)
        if not overlap_setup:
            started.append(admin := _create_admin(env))
        app_url, base_url = f"http://127.0.0.1:{app_port}", f"http://127.0.0.1:{base_port}"
        token, user_id = _sign_in(admin, app_url)
        auth = {"Authorization": f"Bearer {token}"}
        table: list[tuple[str, str, dict[str, str], str, str | None, bool, int]] = [
            ("GET /health/live", "/health/live", {}, "GET", None, True, connections),
            (
                "GET /api/v1/users/{id}",
                f"/api/v1/users/{user_id}",
                auth,
                "GET",
                None,
                True,
                connections,
            ),
            (
                "POST /api/v1/auth/login",
                "/api/v1/auth/login",
                {"Content-Type": "application/x-www-form-urlencoded"},
                "POST",
                f"username={ADMIN_EMAIL}&password={ADMIN_PASSWORD}",
                False,
                min(connections, 8),  # argon2id-bound: more would only queue past the timeout
            ),
        ]
        chosen = [row for key, row in zip(SCENARIOS, table, strict=True) if key in scenarios]
        if data_scale:
            plan = _data_scale_plan(app_url, token, connections)
            for key, (name, path, options, conns) in zip(DATA_SCENARIOS, plan, strict=False):
                if key in scenarios:
                    chosen.append((name, path, options["headers"], "GET", None, True, conns))
        for name, path, headers, method, body, compare, conns in chosen:
            targets = (
                [("template", app_url), ("baseline", base_url)]
                if compare
                else [("template", app_url)]
            )
            loads = {
                target: functools.partial(
                    _load, url + path, connections=conns, method=method, headers=headers, body=body
                )
                for target, url in targets
            }
            if warmup:
                for load in loads.values():
                    load(duration=warmup)  # not recorded
            # Rounds alternate the targets, so a slower spell of a shared machine falls on
            # both sides instead of on whichever ran during it.
            runs: dict[str, list[dict[str, Any]]] = {target: [] for target in loads}
            for _ in range(rounds if compare else 1):
                for target, load in loads.items():
                    runs[target].append(load(duration=duration))
            for target, data in runs.items():
                results.append(_result(name, target, conns, _combined(data)))
        if "patch_me" in scenarios:
            results += _patch_me(app_url, base_url, duration, warmup, rounds)
        if "queue" in scenarios:
            queue = _queue(env, duration, rounds, logs)
        rss_mb = _settled_rss_mb(app_proc.pid)
        base_rss_mb = _settled_rss_mb(base_proc.pid)
    finally:
        for process in reversed(started):
            _stop(process)
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "duration_s": duration,
        "rounds": rounds,
        "connections": connections,
        "cpu_count": os.cpu_count(),
        "rate_limiting": "Rate limiting was disabled for the run (RATE_LIMIT_ENABLED=false)",
        "cold_start_s": {"template": round(app_cold, 3), "baseline": round(base_cold, 3)},
        "rss_after_load_mb": {"template": round(rss_mb, 1), "baseline": round(base_rss_mb, 1)},
        "data_scale": {"users": DATA_USERS, "seed_s": round(seed_s, 1)} if data_scale else None,
        "queue": queue,
        "load_average": os.getloadavg(),
        "results": [asdict(result) for result in results],
        "ratios": _ratios(results),
    }


def _patch_me(
    app_url: str, base_url: str, duration: float, warmup: float, rounds: int
) -> list[Result]:
    """PATCH /api/v1/users/me, a new username each time, one seeded user per connection; the
    Python load generator on both sides (wrk cannot give each connection its own user)."""
    headers = _patch_tokens(app_url, PATCH_USERS)
    loads = {
        target: functools.partial(
            _python_load,
            url + "/api/v1/users/me",
            connections=PATCH_USERS,
            method="PATCH",
            headers={"Content-Type": "application/json"},
            body=None,
            connection_headers=headers,
            bodies=_new_username,
        )
        for target, url in (("template", app_url), ("baseline", base_url))
    }
    if warmup:
        for load in loads.values():
            load(duration=warmup)
    runs: dict[str, list[dict[str, Any]]] = {target: [] for target in loads}
    for _ in range(rounds):
        for target, load in loads.items():
            runs[target].append(load(duration=duration))
    return [
        _result("PATCH /api/v1/users/me", target, PATCH_USERS, _combined(data))
        for target, data in runs.items()
    ]


def _uvicorn(target: str, port: int) -> list[str]:
    return [
        str(BIN / "uvicorn"),
        target,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]


def _drain(redis: Any, key: str, expected: int) -> list[tuple[float, float]]:
    """Wait until the probe recorded `expected` starts (or 15 s pass with none); the pairs."""
    last, seen = time.monotonic(), 0
    while (count := int(redis.llen(key))) < expected:
        if count != seen:
            last, seen = time.monotonic(), count
        elif time.monotonic() - last > 15:
            break  # no progress: report what ran
        time.sleep(0.1)
    return [
        (float(queued), float(begun))
        for queued, begun in (raw.split() for raw in redis.lrange(key, 0, -1))
    ]


def _queue_round(
    name: str,
    server: list[str],
    worker: list[str],
    enqueue_path: str,
    env: dict[str, str],
    port: int,
    duration: float,
    logs: Path,
) -> dict[str, Any]:
    """A server and one worker. Under load: 400 enqueue requests a second for `duration` while
    the worker runs (enqueue-to-start latency, below saturation). Backlog:
    16 connections with the worker stopped, then one worker drains it (its own tasks/s).
    Figures from the probe's (enqueued, started) pairs."""
    from redis import Redis

    from bench.queue_probe import STARTS_KEY

    redis = Redis.from_url(env["REDIS_URL"])
    redis.delete(STARTS_KEY)
    url = f"http://127.0.0.1:{port}{enqueue_path}"

    def start_worker() -> subprocess.Popen[bytes]:
        log = (logs / f"{name}-worker.log").open("ab")
        return subprocess.Popen(worker, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)

    running: list[subprocess.Popen[bytes]] = []
    try:
        running.append(start_worker())
        process, _ = _start(server, env, port, logs / f"{name}.log")
        running.insert(0, process)
        httpx.post(url, timeout=10).raise_for_status()  # proves the worker listens; warms up
        _drain(redis, STARTS_KEY, 1)
        redis.delete(STARTS_KEY)
        load = _python_load(
            url,
            duration=duration,
            connections=QUEUE_LATENCY_CONNECTIONS,
            method="POST",
            headers={},
            body=None,
            pace=QUEUE_LATENCY_PACE,
        )
        under_load = _drain(redis, STARTS_KEY, int(load["requests"]) - int(load["errors"]))
        _stop(running.pop())
        redis.delete(STARTS_KEY)
        backlog = _load(url, duration=duration, connections=QUEUE_CONNECTIONS, method="POST")
        running.append(start_worker())
        drained = _drain(redis, STARTS_KEY, int(backlog["requests"]) - int(backlog["errors"]))
    finally:
        for process in reversed(running):
            _stop(process)
        redis.close()
    waits = sorted((begun - queued) * 1000 for queued, begun in under_load)
    span = max(begun for _, begun in under_load) - min(queued for queued, _ in under_load)
    starts = sorted(begun for _, begun in drained)
    return {
        "enqueued": int(load["requests"]) - int(load["errors"]),
        "started": len(under_load),
        "enqueue_requests_per_s": _requests_per_s(load),
        "end_to_end_tasks_per_s": round(len(under_load) / span, 1) if span > 0 else 0.0,
        "enqueue_to_start_p50_ms": round(statistics.median(waits), 2),
        "enqueue_to_start_p99_ms": round(waits[min(len(waits) - 1, int(len(waits) * 0.99))], 2),
        "backlog": len(drained),
        "worker_tasks_per_s": round(len(starts) / (starts[-1] - starts[0]), 1)
        if len(starts) > 1
        else 0.0,
    }


def _queue(env: dict[str, str], duration: float, rounds: int, logs: Path) -> dict[str, Any]:
    """Tasks enqueued by an endpoint and run by one worker: the template (`app worker` with
    the probe module, its broker, middlewares and result backend) against bare taskiq (the
    same Redis-stream broker, a bare Starlette endpoint, `taskiq worker`), rounds alternating."""
    port = _free_port()
    python = str(BIN / "python")
    sides = {
        "template": (_uvicorn("bench.queue_app:app", port), [python, "-m", "bench.queue_worker"],
                     "/api/v1/queue-probe"),
        "bare taskiq": (_uvicorn("bench.queue_bare:app", port),
                        [str(BIN / "taskiq"), "worker", "bench.queue_bare:broker",
                         "--workers", "1", "--max-async-tasks", "100"], "/enqueue"),
    }  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for _ in range(rounds):
        for side, (server, worker, path) in sides.items():
            name = side.replace(" ", "-")
            runs[side].append(_queue_round(name, server, worker, path, env, port, duration, logs))
    summary: dict[str, Any] = {
        "connections": {"latency": QUEUE_LATENCY_CONNECTIONS, "backlog": QUEUE_CONNECTIONS},
        "rounds": runs,
    }
    for side, side_runs in runs.items():
        summary[side] = {
            key: statistics.median(run[key] for run in side_runs)
            for key in side_runs[0]
            if key not in ("enqueued", "started", "backlog")
        }
    template, bare = summary["template"], summary["bare taskiq"]
    if bare["worker_tasks_per_s"]:
        summary["worker_tasks_per_s_ratio"] = round(
            template["worker_tasks_per_s"] / bare["worker_tasks_per_s"], 2
        )
    return summary


def _ratios(results: list[Result]) -> dict[str, dict[str, float]]:
    ratios: dict[str, dict[str, float]] = {}
    by_key = {(r.scenario, r.target): r for r in results}
    for (scenario, target), result in by_key.items():
        baseline = by_key.get((scenario, "baseline"))
        if target == "template" and baseline and baseline.requests_per_s:
            ratios[scenario] = {
                "throughput": round(result.requests_per_s / baseline.requests_per_s, 2),
                "p99": round(result.p99_ms / baseline.p99_ms, 2) if baseline.p99_ms else 0.0,
            }
    return ratios


def render(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | target | conns | req/s | p50 ms | p99 ms | errors | vs baseline |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        ratio = None
        if row["target"] == "template":
            ratio = report["ratios"].get(row["scenario"], {}).get("throughput")
        vs_baseline = f"{ratio:.2f}x" if ratio else ""
        lines.append(
            f"| {row['scenario']} | {row['target']} | {row['connections']} "
            f"| {row['requests_per_s']:.0f} | {row['p50_ms']} | {row['p99_ms']} "
            f"| {row['errors']} | {vs_baseline} |"
        )
    if report.get("queue"):
        queue = report["queue"]
        lines += [
            "",
            "| queue (one worker) | worker tasks/s (a backlog) | enqueue req/s (paced) "
            "| enqueue-to-start p50 ms | p99 ms |",
            "|---|---|---|---|---|",
        ]
        for side in ("template", "bare taskiq"):
            row = queue[side]
            lines.append(
                f"| {side} | {row['worker_tasks_per_s']:.0f} "
                f"| {row['enqueue_requests_per_s']:.0f} | {row['enqueue_to_start_p50_ms']} "
                f"| {row['enqueue_to_start_p99_ms']} |"
            )
        if "worker_tasks_per_s_ratio" in queue:
            ratio = queue["worker_tasks_per_s_ratio"]
            lines.append(f"\nWorker tasks/s, template vs bare taskiq: {ratio}x.")
    lines.append("")
    lines.append(
        f"Cold start: template {report['cold_start_s']['template']} s, baseline "
        f"{report['cold_start_s']['baseline']} s. RSS after load: template "
        f"{report['rss_after_load_mb']['template']} MB. {report['rate_limiting']}."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per round, scenario and target"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="rounds alternating template and baseline"
    )
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument(
        "--warmup", type=float, default=2.0, help="seconds of unrecorded load first"
    )
    parser.add_argument("--smoke", action="store_true", help="1 s, 8 connections, no warm-up (CI)")
    parser.add_argument("--output", type=Path, default=None, help="where to save the JSON report")
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated: {','.join(SCENARIOS + DATA_SCENARIOS + QUEUE_SCENARIOS)}",
    )
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.connections, args.warmup, args.rounds = 1.0, 8, 0.0, 1
        if args.scenarios == ",".join(SCENARIOS):
            args.scenarios = "users"
    scenarios = tuple(name.strip() for name in args.scenarios.split(",") if name.strip())
    unknown = set(scenarios) - set(SCENARIOS) - set(DATA_SCENARIOS) - set(QUEUE_SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    report = run(
        args.duration,
        args.connections,
        args.warmup,
        scenarios,
        rounds=max(1, args.rounds),
        overlap_setup=args.smoke,
    )
    output = (
        args.output
        or RESULTS / f"bench-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:6]}.json"
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(render(report))
    print(f"\nSaved {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")


if __name__ == "__main__":
    main()
