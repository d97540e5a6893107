"""A picture of the Grafana dashboard (deploy/observability/grafana/dashboards/app.json) with
real data: the API and a worker under a little traffic, scraped by a real Prometheus, each
panel's queries asked of that Prometheus and drawn where the dashboard places the panel.

    python -m bench.dashboard                      # 120 s of traffic -> docs/images/dashboard.png
    python -m bench.dashboard --duration 60 --out /tmp/dashboard.png

Grafana itself is not needed (nor packaged by Debian); Prometheus is (Debian: apt-get install
prometheus). Every line drawn is the answer of the dashboard's own query, so a query naming a
metric the app does not export shows as an empty panel.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.run import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    BIN,
    ROOT,
    _create_admin,
    _free_port,
    _migrate,
    _server_env,
    _services,
    _start,
    _stop,
)

DASHBOARD = ROOT / "deploy" / "observability" / "grafana" / "dashboards" / "app.json"
SCRAPE_SECONDS = 2
LEGEND_FIELD = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def _prometheus(
    api_port: int, worker_port: int, workdir: Path
) -> tuple[subprocess.Popen[bytes], str]:
    """Prometheus scraping the API and the worker every SCRAPE_SECONDS, as compose's does."""
    config = workdir / "prometheus.yml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "global": {"scrape_interval": f"{SCRAPE_SECONDS}s"},
                "scrape_configs": [
                    {"job_name": "api", "static_configs": [{"targets": [f"127.0.0.1:{api_port}"]}]},
                    {
                        "job_name": "worker",
                        "static_configs": [{"targets": [f"127.0.0.1:{worker_port}"]}],
                    },
                ],
            }
        )
    )
    binary = shutil.which("prometheus")
    if binary is None:
        raise SystemExit("prometheus is not installed (Debian: apt-get install prometheus)")
    port = _free_port()
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=(workdir / "prometheus.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/-/ready", timeout=0.5).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"prometheus did not start; see {workdir / 'prometheus.log'}")


async def _traffic(base: str, duration: float) -> None:
    """Sign-ups (each queues a verification mail), sign-ins, lookups, and some refusals."""
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        login = await client.post(
            "/api/v1/auth/login", data={"username": ADMIN_EMAIL, "password": ADMIN_PASSWORD}
        )
        login.raise_for_status()
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        me = (await client.get("/api/v1/users/me", headers=headers)).json()["id"]
        deadline = time.monotonic() + duration

        async def visitor() -> None:
            while time.monotonic() < deadline:
                roll = random.random()  # noqa: S311 (a traffic mix, not a secret)
                if roll < 0.05:
                    name = "u" + uuid.uuid4().hex[:12]
                    await client.post(
                        "/api/v1/auth/register",
                        json={
                            "email": f"{name}@example.com",
                            "username": name,
                            "password": secrets.token_urlsafe(16),
                        },
                    )
                elif roll < 0.08:
                    await client.post(
                        "/api/v1/auth/login", data={"username": ADMIN_EMAIL, "password": "wrong"}
                    )
                elif roll < 0.12:
                    await client.get(f"/api/v1/users/{uuid.uuid4()}", headers=headers)  # 404
                elif roll < 0.5:
                    await client.get("/api/v1/users/me", headers=headers)
                else:
                    await client.get(f"/api/v1/users/{me}", headers=headers)
                await asyncio.sleep(0.02)

        await asyncio.gather(*(visitor() for _ in range(4)))


def _query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    # Grafana's $__rate_interval: four scrape intervals (at this resolution).
    query = expr.replace("$__rate_interval", f"{4 * SCRAPE_SECONDS}s")
    response = httpx.get(
        f"{prometheus}/api/v1/query_range",
        params={"query": query, "start": start, "end": end, "step": SCRAPE_SECONDS},
        timeout=30,
    )
    response.raise_for_status()
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def _legend(template: str, labels: dict[str, str]) -> str:
    return LEGEND_FIELD.sub(lambda match: labels.get(match.group(1), ""), template) or "value"


def draw(dashboard: dict[str, Any], prometheus: str, start: float, end: float, out: Path) -> None:
    """Each panel's targets, asked of `prometheus` over [start, end], where gridPos puts it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = dashboard["panels"]
    rows = max(panel["gridPos"]["y"] + panel["gridPos"]["h"] for panel in panels)
    plt.style.use("dark_background")
    figure = plt.figure(figsize=(24, rows * 0.5), dpi=72, layout="constrained")
    grid = figure.add_gridspec(rows, 24)
    figure.suptitle(dashboard["title"], fontsize=18)
    for panel in panels:
        place = panel["gridPos"]
        axes = figure.add_subplot(
            grid[place["y"] : place["y"] + place["h"], place["x"] : place["x"] + place["w"]]
        )
        axes.set_title(panel["title"], loc="left", fontsize=12)
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
        for target in panel["targets"]:
            for series in _query_range(prometheus, target["expr"], start, end):
                points = [(float(t) - start, float(v)) for t, v in series["values"] if v != "NaN"]
                if points:
                    seconds, values = zip(*points, strict=True)
                    label = _legend(target.get("legendFormat", ""), series["metric"])
                    axes.plot(seconds, values, linewidth=1.5, label=label)
        axes.set_ylabel(unit, fontsize=9)
        axes.tick_params(labelsize=8)
        axes.grid(alpha=0.2)
        if axes.lines:
            axes.legend(fontsize=7, loc="upper left", framealpha=0.3)
        else:
            axes.text(0.5, 0.5, "no data", ha="center", va="center", transform=axes.transAxes)
    figure.supxlabel("seconds into the run", fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, bbox_inches="tight")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of traffic")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "dashboard.png")
    args = parser.parse_args()

    services = _services()
    env = _server_env(services, pool_size=10)
    _migrate(services["DATABASE_URL"])
    workdir = Path(tempfile.mkdtemp(prefix="dashboard-"))
    api_port, worker_port = _free_port(), _free_port()
    env = {**env, "METRICS_WORKER_PORT": str(worker_port)}
    admin = _create_admin(env)
    api, _ = _start(
        [str(BIN / "app"), "serve", "--host", "127.0.0.1", "--port", str(api_port)],
        env,
        api_port,
        workdir / "api.log",
    )
    worker = subprocess.Popen(
        [str(BIN / "app"), "worker", "--workers", "1"],
        env=env,
        stdout=(workdir / "worker.log").open("wb"),
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )
    prometheus, prometheus_url = _prometheus(api_port, worker_port, workdir)
    try:
        admin.wait(timeout=60)
        start = time.time()
        asyncio.run(_traffic(f"http://127.0.0.1:{api_port}", args.duration))
        time.sleep(3 * SCRAPE_SECONDS)  # the last figures scraped
        targets = httpx.get(f"{prometheus_url}/api/v1/targets", timeout=10).json()["data"]
        for target in targets["activeTargets"]:
            print(target["labels"]["job"], target["health"], target.get("lastError", ""))
        draw(json.loads(DASHBOARD.read_text()), prometheus_url, start, time.time(), args.out)
    finally:
        for process in (prometheus, worker, api):
            _stop(process)
    print(f"wrote {args.out} (logs in {workdir})")


if __name__ == "__main__":
    main()
