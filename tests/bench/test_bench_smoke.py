"""A 1-second smoke run of the load benchmark: the harness starts both servers, drives them and
writes its report. No timing is asserted here; `make bench` measures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import Services
from tests.support import PROJECT_ROOT, scratch_database


@pytest.fixture
def bench_env(services: Services) -> Iterator[dict[str, str]]:
    with scratch_database(services.database_url, "app_bench_smoke") as url:
        yield {
            **os.environ,
            "DATABASE_URL": url,
            "REDIS_URL": services.redis_db(9),
            "SMTP_HOST": "127.0.0.1",
            # Cheap argon2id for the benchmark's one sign-in; the benchmark itself uses defaults.
            "USERS_PASSWORD_HASH_TIME_COST": "1",
            "USERS_PASSWORD_HASH_MEMORY_KIB": "1024",
            "USERS_PASSWORD_HASH_PARALLELISM": "1",
        }


# End to end (a project copy / two real servers): `make e2e`, run by CI after `make test`.
@pytest.mark.e2e
def test_benchmark_smoke_run_produces_a_report(bench_env: dict[str, str], tmp_path: Path) -> None:
    report_path = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--output",
            str(report_path),
        ],
        cwd=PROJECT_ROOT,
        env=bench_env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(report_path.read_text())
    rows = {(row["scenario"], row["target"]): row for row in report["results"]}
    assert set(rows) == {
        ("GET /api/v1/users/{id}", "template"),
        ("GET /api/v1/users/{id}", "baseline"),
    }
    for row in rows.values():
        assert row["requests"] > 0
        assert row["errors"] == 0
    assert set(report["ratios"]) == {"GET /api/v1/users/{id}"}
    assert report["cold_start_s"]["template"] > 0
    assert report["rss_after_load_mb"]["template"] > 0
    assert "| GET /api/v1/users/{id} | template |" in result.stdout
