"""Helpers shared by tests (not fixtures)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def psycopg_url(url: str) -> str:
    """A libpq URL from any of the accepted DATABASE_URL spellings."""
    _, _, rest = url.partition("://")
    return f"postgresql://{rest}"


def alembic_config(database_url: str) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["database_url"] = f"postgresql+psycopg://{database_url.partition('://')[2]}"
    return config
