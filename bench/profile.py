"""Profile the template's hot path under load with pyinstrument.

    python -m bench.profile users     # GET /api/v1/users/{id} with a bearer token
    python -m bench.profile health    # GET /health/live

Runs the app under pyinstrument (uvicorn, one worker, production settings), drives it with
the benchmark's load generator, and writes the text report under bench/results/.
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import time

from bench.run import (
    BIN,
    RESULTS,
    ROOT,
    _create_admin,
    _free_port,
    _load,
    _server_env,
    _services,
    _sign_in,
    _start,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("scenario", choices=["users", "health"])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()

    env = _server_env(_services(), pool_size=16)
    subprocess.run(
        [str(BIN / "app"), "migrate", "upgrade", "head"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = RESULTS / f"profile-{args.scenario}.txt"
    port = _free_port()
    command = [
        str(BIN / "pyinstrument"),
        "-r",
        "text",
        "-o",
        str(report),
        "--interval",
        "0.0005",
        "-m",
        "uvicorn",
        "app.main:create_app",
        "--factory",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
    ]
    process, _ = _start(command, env, port, RESULTS / f"profile-{args.scenario}.log")
    try:
        base = f"http://127.0.0.1:{port}"
        token, user_id = _sign_in(_create_admin(env), base)
        path, headers = "/health/live", {}
        if args.scenario == "users":
            path, headers = f"/api/v1/users/{user_id}", {"Authorization": f"Bearer {token}"}
        data = _load(
            base + path, duration=args.duration, connections=args.connections, headers=headers
        )
        print(f"{data['requests'] / (data['duration_us'] / 1e6):.0f} req/s under the profiler")
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        time.sleep(0.2)
    print(f"report: {report.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
