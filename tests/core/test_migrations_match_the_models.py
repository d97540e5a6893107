"""Migrations build the schema from nothing, match the models exactly, and go back down."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from app.core.db import Base
from app.core.modules import discover_modules
from tests.conftest import Services
from tests.support import alembic_config, scratch_database


@pytest.fixture(scope="module")
def scratch_url(services: Services) -> Iterator[str]:
    with scratch_database(services.database_url, "app_migration_check") as url:
        yield url.replace("postgresql://", "postgresql+psycopg://", 1)


def _diff(url: str) -> list[object]:
    discover_modules()
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "compare_server_default": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()


def test_upgrade_head_then_autogenerate_finds_no_difference(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    assert _diff(scratch_url) == []


def test_downgrade_to_base_removes_every_table(scratch_url: str) -> None:
    config = alembic_config(scratch_url)
    command.upgrade(config, "head")
    command.downgrade(config, "base")
    engine = create_engine(scratch_url)
    try:
        with engine.connect() as connection:
            assert set(inspect(connection).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    command.upgrade(config, "head")


def test_history_is_linear() -> None:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config("postgresql://unused/none"))
    assert len(script.get_heads()) <= 1
