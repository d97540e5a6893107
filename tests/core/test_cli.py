"""The `app` command: help, routes, migrations against the test database."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from redis import Redis
from typer.testing import CliRunner

import app.__main__
import app.cli
from app.cli import cli
from app.core.config import get_settings
from app.core.embedded import ensure_services
from tests.conftest import Services

runner = CliRunner()


@pytest.fixture
def test_env(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("DATABASE_URL", services.database_url)
    monkeypatch.setenv("REDIS_URL", services.redis_url)
    monkeypatch.setenv("APP_ENV", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


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


def test_the_command_starts_with_the_collector_off_and_only_serve_keeps_it_off(
    test_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    collecting: list[bool] = []
    monkeypatch.setattr(app.cli, "main", lambda: collecting.append(gc.isenabled()))
    monkeypatch.setattr(uvicorn, "run", lambda *args, **kwargs: collecting.append(gc.isenabled()))
    try:
        app.__main__.main()  # what the `app` script runs: the imports happen with it off
        assert collecting == [False]
        commands = (["routes"], True), (["serve"], False), (["serve", "--workers", "2"], True)
        for command, collects in commands:
            gc.disable()
            result = runner.invoke(cli, command)
            assert result.exit_code == 0, result.output
            assert gc.isenabled() is collects, command
        # Both serve commands reached uvicorn: off for one worker, on for a supervisor.
        assert collecting == [False, False, True]
    finally:
        gc.enable()


def test_routes_lists_health_endpoints(test_env: None) -> None:
    result = runner.invoke(cli, ["routes"])
    assert result.exit_code == 0, result.output
    assert "GET     /health/live" in result.output
    assert "/health/ready" in result.output


def test_migrate_current_and_history(test_env: None) -> None:
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
