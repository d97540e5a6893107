"""Defaults a template's users inherit must be the safe ones: headers on every answer, and
settings production refuses to start with."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient

from app.core.config import Settings, SettingsError, load_settings
from app.main import create_app
from tests.conftest import TEST_SECRET, Services, make_settings
from tests.support import http_client

API_CSP = "default-src 'none'; frame-ancestors 'none'"
PRODUCTION: dict[str, Any] = {
    "app_env": "production",
    "secret_key": TEST_SECRET,
    "database_url": "postgresql://db.example/app",
    "redis_url": "redis://cache.example/0",
}


async def test_api_answers_forbid_content_and_framing(client: AsyncClient) -> None:
    for path in ("/api/v1/users/me", "/health/ready", "/openapi.json", "/nowhere"):
        response = await client.get(path)
        assert response.headers["content-security-policy"] == API_CSP, path


async def test_the_docs_page_may_load_what_it_needs_and_nothing_else(client: AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    policy = docs.headers["content-security-policy"]
    assert "script-src 'self' 'unsafe-inline'" in policy
    assert "connect-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "http" not in policy  # no other host: the assets come from the installed project


async def test_production_serves_no_schema_unless_asked(services: Services) -> None:
    async def schema_status(**overrides: Any) -> int:
        app = create_app(make_settings(services, **PRODUCTION, **overrides))
        async with http_client(app) as http:
            return (await http.get("/openapi.json")).status_code

    assert await schema_status() == 404
    assert await schema_status(openapi_in_production=True) == 200


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"db_echo": True}, "DB_ECHO"),
        ({"cors_origins": ["*"], "cors_allow_credentials": False}, "CORS_ORIGINS=*"),
        ({"rate_limit_enabled": False}, "RATE_LIMIT_DISABLED_IN_PRODUCTION"),
    ],
)
def test_production_refuses_unsafe_settings(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        load_settings(Settings, _env_file=None, **PRODUCTION, **overrides)


def test_production_may_run_without_rate_limits_when_it_says_so() -> None:
    settings = load_settings(
        Settings,
        _env_file=None,
        **PRODUCTION,
        rate_limit_enabled=False,
        rate_limit_disabled_in_production=True,
    )
    assert not settings.rate_limit_enabled


def test_any_origin_with_credentials_is_refused_everywhere() -> None:
    with pytest.raises(SettingsError, match="CORS_ALLOW_CREDENTIALS"):
        load_settings(Settings, _env_file=None, cors_origins=["*"])
    allowed = load_settings(
        Settings, _env_file=None, cors_origins=["*"], cors_allow_credentials=False
    )
    assert allowed.cors_origins == ["*"]
