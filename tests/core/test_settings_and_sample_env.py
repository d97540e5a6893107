"""Settings: `.sample.env` agreement, production refusals, readable errors."""

from __future__ import annotations

import importlib
import pkgutil
import re

import pytest
from pydantic_settings import BaseSettings
from typer.testing import CliRunner

import app
from app.core.config import (
    DEFAULT_SECRET_KEY,
    AppSettings,
    Environment,
    Settings,
    SettingsError,
    load_settings,
)
from tests.support import PROJECT_ROOT

_SAMPLE_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")


def _all_settings_classes() -> list[type[BaseSettings]]:
    for info in pkgutil.walk_packages(app.__path__, "app."):
        importlib.import_module(info.name)
    found: list[type[BaseSettings]] = []
    pending: list[type[BaseSettings]] = [AppSettings]
    while pending:
        cls = pending.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("app."):
                found.append(sub)
                pending.append(sub)
    return found


def _env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = str(cls.model_config.get("env_prefix", "")).upper()
    return {f"{prefix}{name}".upper() for name in cls.model_fields}


def _sample_env_names() -> list[str]:
    lines = (PROJECT_ROOT / ".sample.env").read_text().splitlines()
    return [m.group(1) for line in lines if (m := _SAMPLE_LINE.match(line))]


def test_sample_env_and_settings_agree_both_ways() -> None:
    declared: set[str] = set()
    for cls in _all_settings_classes():
        declared |= _env_names(cls)
    listed = _sample_env_names()
    assert len(listed) == len(set(listed)), "a setting is listed twice in .sample.env"
    assert declared - set(listed) == set(), "settings missing from .sample.env"
    assert set(listed) - declared == set(), ".sample.env lists unknown settings"


def test_every_sample_env_setting_has_a_comment() -> None:
    lines = (PROJECT_ROOT / ".sample.env").read_text().splitlines()
    for index, line in enumerate(lines):
        if _SAMPLE_LINE.match(line) and not line.startswith("#"):
            assert lines[index - 1].startswith("#"), f"no comment above {line}"


def test_sample_env_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in (PROJECT_ROOT / ".sample.env").read_text().splitlines():
        if (m := _SAMPLE_LINE.match(line)) and not line.startswith("#"):
            monkeypatch.setenv(m.group(1), line.split("=", 1)[1])
    settings = Settings(_env_file=None)
    assert settings.app_env is Environment.DEVELOPMENT


@pytest.mark.parametrize("secret", [DEFAULT_SECRET_KEY, "short-secret"])
def test_production_refuses_default_or_short_secret(secret: str) -> None:
    with pytest.raises(SettingsError, match="SECRET_KEY"):
        load_settings(
            Settings,
            _env_file=None,
            app_env="production",
            secret_key=secret,
            database_url="postgresql://db/app",
            redis_url="redis://cache:6379/0",
        )


def test_production_requires_service_urls() -> None:
    with pytest.raises(SettingsError, match="DATABASE_URL"):
        load_settings(Settings, _env_file=None, app_env="production", secret_key="x" * 40)


def test_production_accepts_a_real_secret() -> None:
    settings = load_settings(
        Settings,
        _env_file=None,
        app_env="production",
        secret_key="s" * 40,
        database_url="postgres://db/app",
        redis_url="redis://cache:6379/0",
    )
    assert settings.is_production
    assert settings.json_logs
    assert settings.sqlalchemy_url == "postgresql+psycopg://db/app"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("APP_ENV", "staging"),
        ("DB_POOL_SIZE", "lots"),
        ("DATABASE_URL", "mysql://db/app"),
        ("REDIS_URL", "http://cache"),
        ("LOG_LEVEL", "LOUD"),
        ("SERVER_PORT", "70000"),
    ],
)
def test_invalid_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError, match=variable):
        load_settings(Settings, _env_file=None)


def test_lists_are_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings(_env_file=None)
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_cli_refuses_to_start_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.cli import cli
    from app.core.config import get_settings

    monkeypatch.setenv("APP_ENV", "production")
    monkeypatch.setenv("SECRET_KEY", DEFAULT_SECRET_KEY)
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli, ["serve"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2
    assert "SECRET_KEY" in result.output
    assert "Traceback" not in result.output


def test_readme_configuration_table_lists_every_setting() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [name for name in _sample_env_names() if f"| `{name}` |" not in readme]
    assert missing == [], "settings missing from the README's configuration table"
