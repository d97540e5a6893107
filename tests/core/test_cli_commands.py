"""The `app` command: help, routes, migrations against the test database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from redis import Redis
from typer.testing import CliRunner

from app.cli import cli
from app.core.embedded import ensure_services
from tests.conftest import Services

runner = CliRunner()


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["dev"],
        ["serve"],
        ["routes"],
        ["migrate"],
        ["migrate", "upgrade"],
        ["migrate", "revision"],
    ],
)
def test_help_for_every_command(command: list[str]) -> None:
    result = runner.invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output


def test_routes_lists_health_endpoints(command_env: None) -> None:
    result = runner.invoke(cli, ["routes"])
    assert result.exit_code == 0, result.output
    assert "GET     /health/live" in result.output
    assert "/health/ready" in result.output


def test_migrate_current_and_history(command_env: None) -> None:
    current = runner.invoke(cli, ["migrate", "current"])
    assert current.exit_code == 0, current.output
    history = runner.invoke(cli, ["migrate", "history"])
    assert history.exit_code == 0, history.output


def test_embedded_redis_starts_when_no_url_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, services: Services
) -> None:
    monkeypatch.setenv("DATABASE_URL", services.database_url)
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    started = ensure_services(tmp_path)
    assert set(started) == {"REDIS_URL"}
    client = Redis.from_url(started["REDIS_URL"])
    try:
        assert client.ping() is True
        client.shutdown(nosave=True)
    finally:
        client.close()


def _handles_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler (Linux: the SigCgt mask in /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return bool(int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1)
    return False


# A real process, signalled: `make e2e`.
@pytest.mark.e2e
def test_scheduler_in_production_stops_on_sigterm_with_status_zero(services: Services) -> None:
    # In a container the scheduler is process 1, which ignores a SIGTERM it does not handle:
    # `docker compose stop` would wait for the SIGKILL and report exit 137.
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": "x" * 64,
        "DATABASE_URL": services.database_url,
        "REDIS_URL": services.redis_db(12),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "scheduler"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while not _handles_sigterm(process.pid):
            assert process.poll() is None, process.communicate()[1].decode()
            assert time.monotonic() < deadline, "the scheduler never handled SIGTERM"
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        Redis.from_url(services.redis_db(12)).flushdb()
