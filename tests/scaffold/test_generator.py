"""`app new-module`: bad specs are refused with nothing written; a module with every field
type and modifier, generated into a copy of the project, passes that copy's lint, type check,
import contracts, migrations and its own generated tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import cli
from app.scaffold import SpecError, parse_fields, plan_module
from app.scaffold.generator import Options
from tests.conftest import Services
from tests.support import PROJECT_ROOT, scratch_database

BIN = Path(sys.executable).parent
runner = CliRunner()
# .mypy_cache too: `make test` has just type-checked the project, so the copy's mypy only
# analyses the generated files instead of starting cold.
COPIED = (
    "app",
    "tests",
    "migrations",
    "alembic.ini",
    "pyproject.toml",
    ".sample.env",
    ".mypy_cache",
)
EVERY_FIELD = [
    "label:str^!",
    "body:text?",
    "qty:int!",
    "ratio:float",
    "amount:decimal?",
    "flag:bool",
    "day:date?",
    "at:datetime!",
    "code:uuid^",
    "meta:json?",
    "kind:choices[alpha*,beta,gamma]!",
    "owner:ref:users",
    "reviewer:ref:users?",
]


def _tree_snapshot(root: Path) -> set[Path]:
    return {
        path.relative_to(root)
        for folder in ("app", "tests", "migrations")
        for path in (root / folder).rglob("*")
        if "__pycache__" not in path.parts
    }


@pytest.mark.parametrize(
    ("name", "fields", "message"),
    [
        ("Orders", ["title:str"], "lower_snake_case"),
        ("1orders", ["title:str"], "lower_snake_case"),
        ("class", ["title:str"], "lower_snake_case"),
        ("users", ["title:str"], "reserved"),
        ("core", ["title:str"], "reserved"),
        ("orders", ["title:money"], "unknown type 'money'"),
        ("orders", ["title"], "expected name:type"),
        ("orders", ["title:"], "expected name:type"),
        ("orders", [":str"], "expected name:type"),
        ("orders", ["Title:str"], "field name"),
        ("orders", ["id:int"], "reserved"),
        ("orders", ["title:str??"], "repeated"),
        ("orders", ["title:str", "title:int"], "defined twice"),
        ("orders", ["meta:json^"], "json fields cannot be unique"),
        ("orders", ["status:choices[]"], "choices need values"),
        ("orders", ["status:choices[a*,b*]"], "only one choice"),
        ("orders", ["status:choices[a,a]"], "repeated"),
        ("orders", ["status:choices[A,b]"], "lower_snake_case"),
        ("orders", ["buyer:ref:nowhere"], "unknown module 'nowhere'"),
        ("orders", ["buyer:ref:Users"], "ref needs a module name"),
    ],
)
def test_bad_input_is_refused_clearly_and_writes_nothing(
    name: str, fields: list[str], message: str
) -> None:
    before = _tree_snapshot(PROJECT_ROOT)
    result = runner.invoke(cli, ["new-module", name, *fields])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert _tree_snapshot(PROJECT_ROOT) == before


def test_existing_module_is_never_overwritten(tmp_path: Path) -> None:
    (tmp_path / "app" / "modules" / "orders").mkdir(parents=True)
    with pytest.raises(SpecError, match="already exists"):
        plan_module(tmp_path, "orders", parse_fields(["title:str"]), Options())


def test_dry_run_prints_every_file_and_writes_nothing() -> None:
    before = _tree_snapshot(PROJECT_ROOT)
    result = runner.invoke(cli, ["new-module", "parcels", "label:str", "--owned", "--dry-run"])
    assert result.exit_code == 0, result.output
    for part in (
        "models.py",
        "routes/v1.py",
        "gateway.py",
        "policies.py",
        "tasks.py",
        "listeners.py",
        "test_routes.py",
        "create_parcels.py",
        "factories/parcels.py",
    ):
        assert part in result.output
    assert "class Parcel(" in result.output
    assert "nothing written" in result.output
    assert _tree_snapshot(PROJECT_ROOT) == before


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    for name in COPIED:
        source = PROJECT_ROOT / name
        target = tmp_path / name
        if not source.exists():
            continue
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return tmp_path


@pytest.fixture
def scratch_services(services: Services) -> Iterator[dict[str, str]]:
    """A separate database and Redis db for the copy's own test run."""
    with scratch_database(services.database_url, "app_generator_check") as url:
        yield {
            "TEST_DATABASE_URL": url,
            "TEST_REDIS_URL": services.redis_url.rsplit("/", 1)[0] + "/7",
        }


def _run(root: Path, env: dict[str, str], *command: str, timeout: int = 240) -> str:
    result = subprocess.run(
        command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _run_all(root: Path, env: dict[str, str], commands: dict[str, list[str]]) -> dict[str, str]:
    processes = {
        name: subprocess.Popen(
            command, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for name, command in commands.items()
    }
    outputs: dict[str, str] = {}
    for name, process in processes.items():
        outputs[name], _ = process.communicate(timeout=240)
        assert process.returncode == 0, f"{name}: {' '.join(commands[name])}\n{outputs[name]}"
    return outputs


@pytest.mark.slow
def test_generated_module_passes_lint_types_contracts_migrations_and_its_tests(
    project_copy: Path, scratch_services: dict[str, str]
) -> None:
    env = {**os.environ, **scratch_services, "PYTHONPATH": str(project_copy)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    python = str(BIN / "python")
    generate = (python, "-c", "from app.cli import main; main()", "new-module")
    _run(project_copy, env, *generate, "gadgets", *EVERY_FIELD, "--soft-delete")
    _run(
        project_copy,
        env,
        *generate,
        "orders",
        "title:str^",
        "price:float?",
        "status:choices[draft*,paid]",
        "owner:ref:users",
        "gadget:ref:gadgets?",
        "--owned",
    )

    created = [
        "app/modules/gadgets",
        "app/modules/orders",
        "tests/modules/gadgets",
        "tests/modules/orders",
        "tests/factories/gadgets.py",
        "tests/factories/orders.py",
    ]
    migrations = sorted(
        str(p.relative_to(project_copy))
        for p in (project_copy / "migrations" / "versions").glob("*_create_*.py")
    )
    assert len(migrations) == 2
    # The copy's checks are independent: run them side by side, then read each verdict.
    checks = {
        "lint": [str(BIN / "ruff"), "check", *created, *migrations],
        "format": [str(BIN / "ruff"), "format", "--check", *created, *migrations],
        "types": [str(BIN / "mypy"), *created],
        "contracts": [str(BIN / "lint-imports")],
        "tests": [
            python,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/modules/gadgets",
            "tests/modules/orders",
            "tests/core/test_migrations.py",
        ],
    }
    outputs = _run_all(project_copy, env, checks)
    assert "0 broken" in outputs["contracts"]
    assert " passed" in outputs["tests"]
    assert "failed" not in outputs["tests"]
    openapi = _run(project_copy, env, python, "-c", "from app.cli import main; main()", "routes")
    assert "/api/v1/orders/{order_id}" in openapi
    assert "/api/v1/gadgets" in openapi


def test_contract_fails_when_a_module_imports_another_modules_internals(
    project_copy: Path,
) -> None:
    (project_copy / "app" / "modules" / "auth" / "sneaky.py").write_text(
        "from app.modules.users.models import User\n\nSNEAKY = User\n"
    )
    (project_copy / "app" / "modules" / "users" / "routes" / "shortcut.py").write_text(
        "from app.modules.users.repositories import UserRepository\n\nSHORTCUT = UserRepository\n"
    )
    env = {**os.environ, "PYTHONPATH": str(project_copy)}
    result = subprocess.run(
        [str(BIN / "lint-imports")],
        cwd=project_copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = " ".join(result.stdout.split())  # undo the terminal's line wrapping
    assert result.returncode != 0
    assert "app.modules.auth.sneaky -> app.modules.users.models" in report
    assert "reaches into module 'users'" in report
    assert "app.modules.users.routes.shortcut -> app.modules.users.repositories" in report
    assert "routes must call services, not repositories" in report
    assert "BROKEN" in report


def test_plan_for_every_field_type_renders_each_column_once() -> None:
    plan = plan_module(
        PROJECT_ROOT,
        "gizmos",
        parse_fields(EVERY_FIELD),
        Options(owned=True, soft_delete=True, entity="Gizmo"),
    )
    files = {str(item.path): item.content for item in plan.files}
    model = files["app/modules/gizmos/models.py"]
    migration = next(content for path, content in files.items() if "create_gizmos" in path)
    for column in (
        "label",
        "body",
        "qty",
        "ratio",
        "amount",
        "flag",
        "day",
        "at",
        "code",
        "meta",
        "kind",
        "owner_id",
        "reviewer_id",
    ):
        assert f"    {column}: Mapped[" in model
        assert f'sa.Column("{column}"' in migration
    assert "class GizmoKind(enum.StrEnum):" in model
    assert 'sa.ForeignKey("users.id", ondelete="SET NULL")' in model  # reviewer is optional
    assert 'sa.ForeignKey("users.id", ondelete="CASCADE")' in model
    assert "SoftDeleteMixin" in model
    assert 'op.create_index(op.f("ix_gizmos_label"), "gizmos", ["label"], unique=True)' in migration
    assert 'sa.UniqueConstraint("code", name=op.f("uq_gizmos_code"))' in migration
    assert "postgresql.JSONB()" in migration
    # --owned uses the given owner reference instead of adding one
    assert model.count("owner_id") == 1
    policies = files["app/modules/gizmos/policies.py"]
    assert "record.owner_id == actor.id" in policies


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("orders", "Order"),
        ("categories", "Category"),
        ("boxes", "Box"),
        ("glass", "Glass"),
        ("line_items", "LineItem"),
        ("news", "New"),
    ],
)
def test_entity_names_are_singular_camel_case(name: str, expected: str) -> None:
    plan = plan_module(PROJECT_ROOT, name, parse_fields(["label:str"]), Options())
    assert plan.entity == expected


def test_no_crud_writes_a_module_without_endpoints() -> None:
    plan = plan_module(PROJECT_ROOT, "ledgers", parse_fields(["label:str"]), Options(crud=False))
    files = {str(item.path): item.content for item in plan.files}
    assert "@router." not in files["app/modules/ledgers/routes/v1.py"]
    assert "tests/modules/ledgers/test_routes.py" not in files
    assert "tests/modules/ledgers/test_services.py" in files
