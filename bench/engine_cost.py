"""What one primary-key read costs a FastAPI process, by the way it reaches PostgreSQL.

    python -m bench.engine_cost       # 6 s of load per way, 64 connections

Serves `bench/engine_cost_app.py` under uvicorn (uvloop, httptools, one worker) and reports
the server's CPU time per request: no read, a psycopg pool, the SQLAlchemy async engine in
autocommit. docs/performance.md quotes it.
"""

from __future__ import annotations

import argparse
import subprocess
import time

import psutil

from bench.run import BIN, ROOT, _create_admin, _free_port, _load, _server_env, _services

WAYS = ("none", "driver", "engine")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    env = _server_env(_services(), pool_size=16)
    _create_admin(env).wait(timeout=60)  # one user to read
    port = _free_port()
    command = [str(BIN / "uvicorn"), "bench.engine_cost_app:app", "--host", "127.0.0.1",
               "--port", str(port), "--loop", "uvloop", "--http", "httptools",
               "--no-access-log", "--log-level", "warning"]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    try:
        time.sleep(3)
        process = psutil.Process(server.pid)
        for way in WAYS:
            url = f"http://127.0.0.1:{port}/{way}"
            _load(url, duration=2, connections=args.connections)
            before = sum(process.cpu_times()[:2])
            data = _load(url, duration=args.duration, connections=args.connections)
            spent = sum(process.cpu_times()[:2]) - before
            requests = int(data["requests"])
            print(
                f"{way:7s} {requests / args.duration:7.0f} req/s, server CPU per request "
                f"{1e6 * spent / max(requests, 1):5.0f} us, errors {data['errors']}"
            )
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
