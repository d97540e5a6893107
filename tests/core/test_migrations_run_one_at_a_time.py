"""Upgrades started at once (several API pods, each with its migrate init container) run one
after the other: each waits for the advisory lock migrations/env.py takes, and the late ones
find the schema at head."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from alembic.script import ScriptDirectory

from app.core.db import MIGRATIONS_LOCK_KEY
from tests.conftest import TEST_SECRET, Services
from tests.support import PROJECT_ROOT, alembic_config, psycopg_url, scratch_database

# Real `app migrate` processes racing: `make e2e`.
pytestmark = pytest.mark.e2e

UPGRADES = 2


@pytest.fixture
def empty_database(services: Services) -> Iterator[str]:
    with scratch_database(services.database_url, "app_concurrent_upgrades") as url:
        yield url


def _waiting_for_the_lock(conn: psycopg.Connection[tuple[object, ...]]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
        "WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()"
    ).fetchone()
    assert row is not None
    return int(str(row[0]))


def test_concurrent_upgrades_wait_for_each_other_then_agree_on_head(
    empty_database: str, services: Services, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "APP_ENV": "production",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": empty_database,
        "REDIS_URL": services.redis_url,
        "LOG_LEVEL": "WARNING",
    }
    with psycopg.connect(psycopg_url(empty_database), autocommit=True) as conn:
        # Held here first: both upgrades must queue behind it, not run side by side.
        conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATIONS_LOCK_KEY,))
        upgrades = [
            subprocess.Popen(
                [str(PROJECT_ROOT / ".venv/bin/app"), "migrate", "upgrade", "head"],
                cwd=tmp_path,  # no .env of the working tree
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for _ in range(UPGRADES)
        ]
        try:
            deadline = time.monotonic() + 60
            while _waiting_for_the_lock(conn) < UPGRADES:
                assert all(p.poll() is None for p in upgrades), "an upgrade ended early"
                assert time.monotonic() < deadline, "the upgrades never waited for the lock"
                time.sleep(0.1)
            tables = conn.execute(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
            ).fetchone()
            assert tables == (0,), "an upgrade ran without the lock"
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATIONS_LOCK_KEY,))
        errors = [p.communicate(timeout=60)[1].decode() for p in upgrades]
        assert [p.returncode for p in upgrades] == [0] * UPGRADES, errors
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    head = ScriptDirectory.from_config(alembic_config(empty_database)).get_current_head()
    assert versions == [(head,)]
