"""Fixtures of the core tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.core.config import get_settings
from tests.conftest import Services


@pytest.fixture
def command_env(services: Services, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The environment an `app ...` command run in process reads its settings from."""
    monkeypatch.setenv("DATABASE_URL", services.database_url)
    monkeypatch.setenv("REDIS_URL", services.redis_url)
    monkeypatch.setenv("APP_ENV", "test")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
