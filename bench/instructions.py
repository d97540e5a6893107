"""Instructions per authenticated lookup, counted by callgrind: template against baseline.

    python -m bench.instructions                  # 400 lookups of GET /api/v1/users/{id} each
    python -m bench.instructions --requests 1000
    python -m bench.instructions --path "/api/v1/users?sort=-created_at&per_page=20"
                                                  # any GET the baseline serves too ({id}: the
                                                  # admin's id), e.g. the list on the bench data

Throughput on a shared machine moves by 20 % from one run to the next; an instruction count
repeats to within 0.1 %, so a change to the hot path can be judged by it. Each target serves
the lookup in its own process, driven in process through ASGI (no sockets, no uvicorn, no load
generator), under `valgrind --tool=callgrind` with instrumentation off until its warm-up is
over: only the measured requests are counted. Needs valgrind (Debian: apt-get install valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.run import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    ROOT,
    _create_admin,
    _migrate,
    _server_env,
    _services,
)

TARGETS = ("template", "baseline")
WARM_UP = 200
LOOKUP = "/api/v1/users/{id}"
BATCH = 20  # requests in flight at once, as a server under load has several
_COLLECTED = re.compile(r"Collected\s*:\s*([\d,]+)")


def collected_instructions(valgrind_log: str) -> int:
    """The instruction count callgrind reports at exit (`Collected : 1,234`)."""
    counts = _COLLECTED.findall(valgrind_log)
    if not counts:
        raise ValueError("no 'Collected' line in the valgrind log")
    return int(counts[-1].replace(",", ""))


# --- the measured process -------------------------------------------------------------------


def _wait_for(path: Path, *, within: float = 600) -> None:
    """Until `path` exists; a process whose driver or child died stops waiting in time."""
    deadline = time.monotonic() + within
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path.name} did not come within {within} s")
        time.sleep(0.05)


async def _serve(target: str, workdir: Path, requests: int, path_template: str) -> None:
    import httpx
    from asgi_lifespan import LifespanManager

    if target == "template":
        from app.main import create_app

        app: Callable[..., Awaitable[None]] = create_app()
    else:
        from bench.baseline import app

    async with LifespanManager(app):
        if target == "template":
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
                login = await client.post(
                    "/api/v1/auth/login",
                    data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD},
                )
                token = login.json()["access_token"]
                headers = {"Authorization": f"Bearer {token}"}
                user_id = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
            (workdir / "token.json").write_text(json.dumps([token, user_id]))
        token, user_id = json.loads((workdir / "token.json").read_text())
        path, _, query = path_template.replace("{id}", user_id).partition("?")
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "server": ("127.0.0.1", 8000),
            "client": ("127.0.0.1", 50000),
        }
        headers_raw = [(b"host", b"bench"), (b"authorization", f"Bearer {token}".encode())]

        async def lookup() -> None:
            statuses: list[int] = []

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    statuses.append(message["status"])

            await app({**scope, "headers": list(headers_raw), "state": {}}, receive, send)
            if statuses != [200]:
                raise RuntimeError(f"{target} answered {statuses}")

        for _ in range(WARM_UP):
            await lookup()
        (workdir / "ready").touch()
        _wait_for(workdir / "go")
        for _ in range(requests // BATCH):
            await asyncio.gather(*(lookup() for _ in range(BATCH)))
        (workdir / "done").touch()
        _wait_for(workdir / "stop")


# --- the driver -----------------------------------------------------------------------------


def _count(target: str, env: dict[str, str], workdir: Path, requests: int, path: str) -> int:
    for name in ("ready", "go", "done", "stop"):
        (workdir / name).unlink(missing_ok=True)
    log = workdir / f"valgrind-{target}.log"
    stderr = workdir / f"{target}.stderr"
    with stderr.open("wb") as errors:
        process = subprocess.Popen(
            [  # noqa: S607 - valgrind from the system's packages, found on PATH
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={workdir / f'callgrind-{target}.out'}",
                f"--log-file={log}",
                sys.executable,
                "-m",
                "bench.instructions",
                "--child",
                target,
                "--workdir",
                str(workdir),
                "--requests",
                str(requests),
                "--path",
                path,
            ],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        _await_child(process, workdir / "ready", stderr)
        control = ["callgrind_control", "--instr"]
        subprocess.run([*control, "on", str(process.pid)], check=True, capture_output=True)
        (workdir / "go").touch()
        _await_child(process, workdir / "done", stderr)
        subprocess.run([*control, "off", str(process.pid)], check=True, capture_output=True)
        (workdir / "stop").touch()
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return collected_instructions(log.read_text())


def _await_child(process: subprocess.Popen[bytes], signal_file: Path, stderr: Path) -> None:
    deadline = time.monotonic() + 600
    while not signal_file.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the measured process stopped early; see {stderr}")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument(
        "--path", default=LOOKUP, help="the GET to count ({id}: the admin's id); default: lookup"
    )
    parser.add_argument("--child", choices=TARGETS, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    requests = max(BATCH, args.requests // BATCH * BATCH)
    if args.child:
        import uvloop

        uvloop.run(_serve(args.child, args.workdir, requests, args.path))
        return
    if not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        sys.exit("valgrind is not installed (Debian/Ubuntu: sudo apt-get install valgrind)")

    services = _services()
    env = _server_env(services, pool_size=4)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # compiled once, not on every start
    _migrate(services["DATABASE_URL"])
    _create_admin(env).wait(timeout=120)  # an admin left by an earlier run is fine
    workdir = Path(tempfile.mkdtemp(prefix="bench-instructions-"))
    counts = {
        target: _count(target, env, workdir, requests, args.path) / requests for target in TARGETS
    }
    print(f"GET {args.path}, {requests} requests each, instructions per request:")
    for target, count in counts.items():
        print(f"  {target:9} {count:>12,.0f}")
    print(f"  template / baseline: {counts['template'] / counts['baseline']:.2f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
