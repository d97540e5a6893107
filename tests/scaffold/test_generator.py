"""`app new-module`: bad specs are refused with nothing written; a module with every field
type and modifier, generated into a copy of the project, passes that copy's lint, type check,
import contracts, migrations and its own generated tests."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app import cli as app_cli
from app.cli import cli
from app.scaffold import SpecError, parse_fields, plan_module
from app.scaffold.generator import Options, camel, singular
from tests.conftest import Services
from tests.support import PROJECT_ROOT, scratch_database

BIN = Path(sys.executable).parent
runner = CliRunner()
# .mypy_cache too: CI runs `make e2e` after `make test` has type-checked the project, so the
# copy's mypy only analyses the generated files instead of starting cold.
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
        ("probe_parcels", ["title:money"], "unknown type 'money'"),
        ("probe_parcels", ["title"], "expected name:type"),
        ("probe_parcels", ["title:"], "expected name:type"),
        ("probe_parcels", [":str"], "expected name:type"),
        ("probe_parcels", ["Title:str"], "field name"),
        ("probe_parcels", ["id:int"], "reserved"),
        ("probe_parcels", ["title:str??"], "repeated"),
        ("probe_parcels", ["title:str", "title:int"], "defined twice"),
        ("probe_parcels", ["meta:json^"], "json fields cannot be unique"),
        ("probe_parcels", ["status:choices[]"], "choices need values"),
        ("probe_parcels", ["status:choices[a*,b*]"], "only one choice"),
        ("probe_parcels", ["status:choices[a,a]"], "repeated"),
        ("probe_parcels", ["status:choices[A,b]"], "lower_snake_case"),
        ("probe_parcels", ["buyer:ref:nowhere"], "unknown module 'nowhere'"),
        ("probe_parcels", ["buyer:ref:Users"], "ref needs a module name"),
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
    result = runner.invoke(
        cli, ["new-module", "probe_parcels", "label:str", "--owned", "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    for part in (
        "models.py",
        "routes/v1.py",
        "gateway.py",
        "policies.py",
        "tasks.py",
        "listeners.py",
        "test_endpoints.py",
        "create_probe_parcels.py",
        "factories/probe_parcels.py",
    ):
        assert part in result.output
    assert "class ProbeParcel(" in result.output
    assert "nothing written" in result.output
    assert _tree_snapshot(PROJECT_ROOT) == before


def _copy_if_still_there(source: str, target: str) -> None:
    # Caches may be rewritten while they are copied (another test run, a mypy run): a file
    # that vanished in between is simply not needed.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy2(source, target)


# Files that exist only while a writer is busy: SQLite journals, half-written bytecode.
IN_FLIGHT = shutil.ignore_patterns("*-journal", "*-wal", "*-shm", "*.pyc.*", "*.tmp")


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """The whole project, caches included: bytecode keeps its source's mtime through the copy,
    so the copy's processes skip recompiling the project."""
    for name in COPIED:
        source = PROJECT_ROOT / name
        target = tmp_path / name
        if not source.exists():
            continue
        if source.is_dir():
            shutil.copytree(source, target, ignore=IN_FLIGHT, copy_function=_copy_if_still_there)
        else:
            shutil.copy2(source, target)
    return tmp_path


@pytest.fixture
def code_copy(tmp_path: Path) -> Path:
    """Only what `lint-imports` reads: the code and its configuration, no caches."""
    shutil.copytree(
        PROJECT_ROOT / "app", tmp_path / "app", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy2(PROJECT_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.fixture
def scratch_services(services: Services) -> Iterator[dict[str, str]]:
    """A separate database and Redis db for the copy's own test run."""
    with scratch_database(services.database_url, "app_generator_check") as url:
        yield {
            "TEST_DATABASE_URL": url,
            "TEST_REDIS_URL": services.redis_db(7),
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


# End to end (a project copy / two real servers): `make e2e`, run by CI after `make test`.
@pytest.mark.e2e
def test_generated_module_passes_lint_types_contracts_migrations_and_its_tests(
    project_copy: Path, scratch_services: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {**os.environ, **scratch_services, "PYTHONPATH": str(project_copy)}
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    python = str(BIN / "python")
    before = set((project_copy / "migrations" / "versions").glob("*.py"))
    # The first module is generated in this process (the copy's code is this code), aimed at the
    # copy; the second in the copy's own process, where the first is importable for its `ref`.
    monkeypatch.setattr(app_cli, "PROJECT_ROOT", project_copy)
    result = runner.invoke(cli, ["new-module", "probe_gadgets", *EVERY_FIELD, "--soft-delete"])
    assert result.exit_code == 0, result.output
    _run(
        project_copy,
        env,
        python,
        "-c",
        "from app.cli import main; main()",
        "new-module",
        "probe_orders",
        "title:str^",
        "price:float?",
        "status:choices[draft*,paid]",
        "owner:ref:users",
        "gadget:ref:probe_gadgets?",
        "--owned",
    )
    result = runner.invoke(
        cli,
        ["new-module", "probe_projects", "name:str^", "budget:int?", "lead:ref:users?", "--tenant"],
    )
    assert result.exit_code == 0, result.output

    created = [
        "app/modules/probe_gadgets",
        "app/modules/probe_orders",
        "app/modules/probe_projects",
        "tests/modules/probe_gadgets",
        "tests/modules/probe_orders",
        "tests/modules/probe_projects",
        "tests/factories/probe_gadgets.py",
        "tests/factories/probe_orders.py",
        "tests/factories/probe_projects.py",
    ]
    migrations = sorted(
        str(p.relative_to(project_copy))
        for p in set((project_copy / "migrations" / "versions").glob("*.py")) - before
    )
    assert len(migrations) == 3
    assert all("_create_probe_" in name for name in migrations)
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
            "tests/modules/probe_gadgets",
            "tests/modules/probe_orders",
            "tests/modules/probe_projects",
            "tests/core/test_migrations_match_the_models.py",
            # Every operation, the generated ones too, answers only what its OpenAPI documents.
            "tests/reliability/test_fuzz.py",
        ],
        "routes": [python, "-c", "from app.cli import main; main()", "routes"],
    }
    outputs = _run_all(project_copy, env, checks)
    assert "0 broken" in outputs["contracts"]
    assert " passed" in outputs["tests"]
    assert "failed" not in outputs["tests"]
    openapi = outputs["routes"]
    assert "/api/v1/probe_orders/{probe_order_id}" in openapi
    assert "/api/v1/probe_gadgets" in openapi
    assert "/api/v1/probe_projects/{probe_project_id}" in openapi


def test_contracts_fail_on_internals_routes_to_repositories_and_a_cycle(
    code_copy: Path,
) -> None:
    (code_copy / "app" / "modules" / "auth" / "sneaky.py").write_text(
        "from app.modules.users.models import User\n\nSNEAKY = User\n"
    )
    (code_copy / "app" / "modules" / "users" / "routes" / "shortcut.py").write_text(
        "from app.modules.users.repositories import UserRepository\n\nSHORTCUT = UserRepository\n"
    )
    # auth already asks users; users asking auth back closes a loop.
    (code_copy / "app" / "modules" / "users" / "circle.py").write_text(
        "from app.modules.auth import AuthSettings\n\nCIRCLE = AuthSettings\n"
    )
    env = {**os.environ, "PYTHONPATH": str(code_copy)}
    result = subprocess.run(
        [str(BIN / "lint-imports")],
        cwd=code_copy,
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
    assert "No cycles are allowed in app.modules" in report
    assert ".users -> .auth (1 import)" in report
    assert "BROKEN" in report


def test_plan_for_every_field_type_renders_each_column_once() -> None:
    plan = plan_module(
        PROJECT_ROOT,
        "probe_gizmos",
        parse_fields(EVERY_FIELD),
        Options(owned=True, soft_delete=True, entity="Gizmo"),
    )
    files = {str(item.path): item.content for item in plan.files}
    model = files["app/modules/probe_gizmos/models.py"]
    migration = next(content for path, content in files.items() if "create_probe_gizmos" in path)
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
    assert (
        'op.create_index(op.f("ix_probe_gizmos_label"), "probe_gizmos", ["label"], unique=True)'
        in migration
    )
    assert 'sa.UniqueConstraint("code", name=op.f("uq_probe_gizmos_code"))' in migration
    assert "postgresql.JSONB()" in migration
    # --owned uses the given owner reference instead of adding one
    assert model.count("owner_id: Mapped[") == 1
    # An index per whitelisted sort, id last, live rows only; none for a unique column (its
    # own index serves) nor for text and JSON, which are not sortable.
    live = 'postgresql_where=sa.text("deleted_at IS NULL")'
    assert f'sa.Index("ix_probe_gizmos_created_at_list", "created_at", "id", {live})' in model
    assert f'sa.Index("ix_probe_gizmos_qty_list", "qty", "id", {live})' in model
    assert f'"ix_probe_gizmos_qty_list", "probe_gizmos", ["qty", "id"], {live})' in migration
    for unsorted in ("code", "body", "meta"):
        assert f"ix_probe_gizmos_{unsorted}_list" not in model
    policies = files["app/modules/probe_gizmos/policies.py"]
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
    assert camel(singular(name)) == expected


def test_no_crud_writes_a_module_without_endpoints() -> None:
    plan = plan_module(
        PROJECT_ROOT, "probe_ledgers", parse_fields(["label:str"]), Options(crud=False)
    )
    files = {str(item.path): item.content for item in plan.files}
    assert "@router." not in files["app/modules/probe_ledgers/routes/v1.py"]
    assert "tests/modules/probe_ledgers/test_endpoints.py" not in files
    assert "tests/modules/probe_ledgers/test_gateway_task_and_command.py" in files


def test_tenant_modules_are_owned_by_organizations_under_row_level_security() -> None:
    plan = plan_module(
        PROJECT_ROOT,
        "probe_projects",
        parse_fields(["name:str^", "budget:int?!"]),
        Options(tenant=True),
    )
    files = {str(item.path): item.content for item in plan.files}
    model = files["app/modules/probe_projects/models.py"]
    assert "TenantOwned, Base):" in model
    assert 'sa.UniqueConstraint("organization_id", "name")' in model  # unique per organization
    assert "unique=True" not in model
    repository = files["app/modules/probe_projects/repositories.py"]
    assert "class ProbeProjectRepository(TenantRepository[ProbeProject]):" in repository
    assert "TenantSession" in files["app/modules/probe_projects/dependencies.py"]
    assert "DBConnection" not in files["app/modules/probe_projects/gateway.py"]
    migration = next(content for path, content in files.items() if "create_probe_projects" in path)
    assert 'sa.Column("organization_id", sa.Uuid(), nullable=False)' in migration
    assert '["organizations.id"]' in migration
    assert "ENABLE ROW LEVEL SECURITY" in migration
    current = "NULLIF(current_setting('app.organization_id', true), '')::uuid"
    assert f"USING (organization_id = {current})" in migration
    assert f"WITH CHECK (organization_id = {current})" in migration
    assert 'DROP POLICY IF EXISTS tenant_isolation ON "probe_projects"' in migration
    tests = files["tests/modules/probe_projects/test_endpoints_and_tenant_isolation.py"]
    for name in (
        "test_lists_gets_updates_and_deletes_stay_in_the_current_organization",
        "test_raw_sql_sees_and_writes_only_the_sessions_organization",
        "test_strangers_get_404_and_the_organization_must_be_named",
    ):
        assert f"async def {name}(" in tests


def test_a_new_module_declares_its_admin_view_and_tests_it() -> None:
    plan = plan_module(
        PROJECT_ROOT, "probe_parcels", parse_fields(["label:str^", "weight:int?"]), Options()
    )
    files = {str(item.path): item.content for item in plan.files}
    view = files["app/modules/probe_parcels/admin.py"]
    assert "class ProbeParcelAdmin(ModelView, model=ProbeParcel):" in view
    assert "column_searchable_list = [ProbeParcel.label]" in view
    assert "can_edit = False" in view  # changes go through the service, not around it
    init = files["app/modules/probe_parcels/__init__.py"]
    assert "admin_views=(_ProbeParcelAdmin,)" in init
    tests = files["tests/modules/probe_parcels/test_endpoints.py"]
    assert '"/admin/probe-parcel/list"' in tests
    tenant = plan_module(
        PROJECT_ROOT, "probe_projects", parse_fields(["name:str"]), Options(tenant=True)
    )
    # The panel's sessions name no organization: row-level security would show them nothing.
    assert not any(item.path.name == "admin.py" for item in tenant.files)


def test_tenant_and_owned_together_are_refused_with_nothing_written() -> None:
    before = _tree_snapshot(PROJECT_ROOT)
    result = runner.invoke(cli, ["new-module", "probe_parcels", "label:str", "--tenant", "--owned"])
    assert result.exit_code == 2, result.output
    assert "--tenant and --owned cannot be combined" in result.output
    assert _tree_snapshot(PROJECT_ROOT) == before
