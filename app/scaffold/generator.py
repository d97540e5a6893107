"""Plans and writes a feature module: every file of the module layout, its tests, its factory
and its Alembic revision. Nothing existing is edited or overwritten."""

from __future__ import annotations

import keyword
import re
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from app.scaffold.fields import FieldSpec, SpecError

_MODULE_NAME = re.compile(r"^[a-z][a-z0-9_]{1,29}$")
RESERVED_MODULES = frozenset(
    {
        "app", "core", "api", "auth", "users", "health", "tests", "test", "modules", "main",
        "cli", "scaffold", "migrations", "docs", "admin", "static", "config", "models",
        "schemas", "typing", "json", "enum", "uuid", "datetime", "decimal", "sqlalchemy",
        "fastapi", "pydantic", "alembic", "redis", "taskiq",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Options:
    crud: bool = True
    owned: bool = False
    soft_delete: bool = False
    tenant: bool = False  # records belong to the current organization (app.core.tenancy)
    entity: str | None = None  # class name; derived from the module name when omitted


@dataclass(frozen=True)
class GeneratedFile:
    path: Path  # relative to the project root
    content: str


@dataclass
class ModulePlan:
    name: str
    entity: str
    files: list[GeneratedFile] = field(default_factory=list)


@dataclass(frozen=True)
class Column:
    """What the templates need to know about one column, precomputed."""

    spec: FieldSpec
    name: str
    py_type: str  # annotation in the model and DTO
    sa_type: str  # SQLAlchemy type expression in the model and the migration
    schema_type: str  # annotation in the create schema (with constraints)
    nullable: bool
    default_py: str | None  # Python default in the model (choices)
    create_default: str | None  # default in the create schema
    check: str | None  # CHECK constraint SQL
    foreign_key: str | None  # "table.id"
    ondelete: str | None
    factory_value: str  # expression for the factory
    sample_value: str  # JSON-able literal used by the generated tests
    other_value: str  # a second, different literal
    filter_type: str  # type given to FilterSpec
    filter_ops: str  # frozenset literal
    query_value: str  # the sample value as written in a query string
    enum_class: str | None = None


def singular(name: str) -> str:
    """English plural to singular for the usual table names; `--entity` covers the rest."""
    if name.endswith("ies") and len(name) > 4:
        return name[:-3] + "y"
    if name.endswith(("sses", "xes", "ches", "shes", "uses")):
        return name[:-2]
    if name.endswith(("ss", "us", "is")):
        return name
    if name.endswith("s") and len(name) > 3:
        return name[:-1]
    return name


def camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_") if part)


def validate_module_name(root: Path, name: str) -> None:
    if not _MODULE_NAME.match(name) or keyword.iskeyword(name) or "__" in name:
        raise SpecError(
            f"module name {name!r} must be lower_snake_case, 2-30 characters, start with a letter"
        )
    if name in RESERVED_MODULES:
        raise SpecError(f"module name {name!r} is reserved")
    if (root / "app" / "modules" / name).exists():
        raise SpecError(f"module {name!r} already exists at app/modules/{name}")
    if (root / "tests" / "modules" / name).exists():
        raise SpecError(f"tests/modules/{name} already exists")


def _module_tables(root: Path) -> dict[str, str]:
    """module name -> table of its first model, for `ref:<module>` targets."""
    from app.core.db import Base
    from app.core.modules import discover_modules

    discover_modules()
    tables: dict[str, str] = {}
    for mapper in sorted(Base.registry.mappers, key=lambda m: m.class_.__name__):
        module = mapper.class_.__module__
        parts = module.split(".")
        if len(parts) >= 4 and parts[:2] == ["app", "modules"] and parts[3] == "models":
            table = getattr(mapper.local_table, "name", None)
            if table and parts[2] not in tables:
                tables[parts[2]] = table
    return tables


def _decimal_limits() -> tuple[int, int]:
    return 12, 2


def _list_indexes(table: str, columns: list[Column], *, tenant: bool) -> dict[str, list[str]]:
    """An index per whitelisted sort (the id last: the tie-breaker and the cursor's last key),
    after organization_id in a tenant's table: a page is one range scan however large the
    table. A unique column outside a tenant sorts on its own unique index."""
    lead = ["organization_id"] if tenant else []
    sorts = [c.name for c in columns if c.spec.sortable and (tenant or not c.spec.unique)]
    return {
        f"ix_{table}_{name}_list": [*lead, name, "id"]
        for name in [*sorts, "created_at", "updated_at"]
    }


def _column(spec: FieldSpec, entity: str) -> Column:
    nullable = spec.optional
    kind = spec.kind
    default_py = None
    create_default = "None" if nullable else None
    check = None
    foreign_key = None
    ondelete = None
    enum_class = None
    ops_all = 'frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte"})'
    ops_eq = 'frozenset({"eq", "ne", "in"})'
    n = spec.name
    table = {
        "str": ("str", "sa.String(255)", "Annotated[str, Field(min_length=1, max_length=255)]",
                f'Sequence(lambda n: f"{n}-{{n}}")', '"alpha"', '"bravo"', "str", ops_all),
        "text": ("str", "sa.Text()", "Annotated[str, Field(max_length=100_000)]",
                 f'Sequence(lambda n: f"{n} text {{n}}")', '"first text"', '"second text"',
                 "str", ops_eq),
        "int": ("int", "sa.Integer()",
                "Annotated[int, Field(strict=True, ge=-2_147_483_648, le=2_147_483_647)]",
                "Sequence(lambda n: n)", "1", "2", "int", ops_all),
        "float": ("float", "sa.Float()",
                  "Annotated[float, Field(strict=True, allow_inf_nan=False)]",
                  "Sequence(lambda n: n + 0.5)", "1.5", "2.5", "float", ops_all),
        "decimal": ("decimal.Decimal", "sa.Numeric(12, 2)",
                    "Annotated[decimal.Decimal, Field(max_digits=12, decimal_places=2, "
                    "allow_inf_nan=False)]",
                    'Sequence(lambda n: decimal.Decimal(n) + decimal.Decimal("0.25"))',
                    '"1.50"', '"2.50"', "decimal.Decimal", ops_all),
        "bool": ("bool", "sa.Boolean()", "Annotated[bool, Field(strict=True)]", "True", "True",
                 "False", "bool", 'frozenset({"eq", "ne"})'),
        "date": ("dt.date", "sa.Date()", "dt.date",
                 "Sequence(lambda n: dt.date(2024, 1, 1) + dt.timedelta(days=n))",
                 '"2024-01-01"', '"2024-06-30"', "dt.date", ops_all),
        "datetime": ("dt.datetime", "sa.DateTime(timezone=True)", "AwareDatetime",
                     "Sequence(lambda n: dt.datetime(2024, 1, 1, tzinfo=dt.UTC) "
                     "+ dt.timedelta(hours=n))",
                     '"2024-01-01T00:00:00Z"', '"2024-06-30T12:00:00Z"', "dt.datetime", ops_all),
        "uuid": ("uuid.UUID", "sa.Uuid()", "uuid.UUID", "LazyFunction(uuid.uuid4)",
                 '"00000000-0000-4000-8000-000000000001"',
                 '"00000000-0000-4000-8000-000000000002"', "uuid.UUID", ops_eq),
        "json": ("dict[str, Any]", "postgresql.JSONB()", "dict[str, Any]",
                 'LazyFunction(lambda: {"k": 1})', '{"k": 1}', '{"k": 2}', "str", "frozenset()"),
    }  # fmt: skip
    if kind in table:
        py, sa_type, schema, factory_value, sample, other, ftype, fops = table[kind]
    elif kind == "ref":
        py, sa_type, schema = "uuid.UUID", "sa.Uuid()", "uuid.UUID"
        factory_value, sample, other = "None", '""', '""'
        ftype, fops = "uuid.UUID", ops_eq
        foreign_key = f"{spec.ref_table}.id"
        ondelete = "SET NULL" if nullable else "CASCADE"
    else:  # choices
        enum_class = f"{entity}{camel(spec.name)}"
        py = "str"
        schema = enum_class
        length = max(len(value) for value in spec.choices)
        sa_type = f"sa.String({length})"
        values = ", ".join(f"'{value}'" for value in spec.choices)
        check = f"{spec.name} IN ({values})"
        if spec.default_choice:
            default_py = repr(spec.default_choice)
            create_default = f"{enum_class}.{spec.default_choice.upper()}"
        factory_value = repr(spec.default_choice or spec.choices[0])
        sample = f'"{spec.choices[0]}"'
        other = f'"{spec.choices[-1]}"'
        ftype, fops = enum_class, ops_eq
    if nullable:
        py = f"{py} | None"
        schema = f"{schema} | None"
    return Column(
        spec=spec,
        name=spec.column,
        py_type=py,
        sa_type=sa_type,
        schema_type=schema,
        nullable=nullable,
        default_py=default_py,
        create_default=create_default,
        check=check,
        foreign_key=foreign_key,
        ondelete=ondelete,
        factory_value=factory_value,
        sample_value=sample,
        other_value=other,
        filter_type=ftype,
        filter_ops=fops,
        query_value=_query_value(sample),
        enum_class=enum_class,
    )


def _query_value(sample: str) -> str:
    """A JSON literal as it appears in a query string: strings unquoted, booleans lowercase."""
    return sample[1:-1] if sample.startswith('"') else sample.lower()


def _current_head(root: Path) -> str | None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(root / "migrations"))
    heads = ScriptDirectory.from_config(config).get_heads()
    if len(heads) > 1:
        raise SpecError(f"migrations have several heads ({', '.join(heads)}); merge them first")
    return heads[0] if heads else None


def plan_module(
    root: Path, name: str, fields: list[FieldSpec], options: Options, *, now: datetime | None = None
) -> ModulePlan:
    """Validate everything, render every file in memory; raise SpecError before any write."""
    validate_module_name(root, name)
    entity = options.entity or camel(singular(name))
    if not re.match(r"^[A-Z][A-Za-z0-9]{1,39}$", entity):
        raise SpecError(f"entity name {entity!r} must be CamelCase")

    if options.tenant and options.owned:
        raise SpecError("--tenant and --owned cannot be combined yet; choose one")
    if options.tenant and not (root / "app" / "modules" / "organizations").is_dir():
        raise SpecError("--tenant needs the organizations module (app/modules/organizations)")
    refs = {f.ref_module for f in fields if f.kind == "ref"}
    if options.owned:
        refs.add("users")
    tables = _module_tables(root) if refs else {}
    resolved: list[FieldSpec] = []
    for spec in fields:
        if spec.kind == "ref":
            assert spec.ref_module is not None
            if spec.ref_module == name:
                raise SpecError(f"{spec.name}: a module cannot reference itself yet")
            if spec.ref_module not in tables:
                known = ", ".join(sorted(tables)) or "none"
                raise SpecError(
                    f"{spec.name}: ref to unknown module {spec.ref_module!r} (modules with a "
                    f"model: {known})"
                )
            spec = FieldSpec(**{**spec.__dict__, "ref_table": tables[spec.ref_module]})
        resolved.append(spec)

    owner_field = None
    if options.owned:
        owner_field = next(
            (f for f in resolved if f.kind == "ref" and f.ref_module == "users"), None
        )
        if owner_field is None:
            owner_field = FieldSpec(
                "owner", "ref", indexed=True, ref_module="users", ref_table=tables["users"]
            )
            resolved.append(owner_field)
        elif owner_field.optional:
            raise SpecError(
                f"{owner_field.name}: the owner reference of --owned cannot be optional"
            )

    columns = [_column(spec, entity) for spec in resolved]
    now = now or datetime.now(UTC)
    revision = uuid.uuid4().hex[:12]
    context: dict[str, Any] = {
        "module": name,
        "Module": camel(name),
        "Entity": entity,
        "entity": re.sub(r"(?<!^)(?=[A-Z])", "_", entity).lower(),
        # Where sqladmin lists the entity: /admin/<identity>/list.
        "admin_identity": re.sub(r"(?<!^)(?=[A-Z])", "-", entity).lower(),
        "title": name.replace("_", " ").capitalize(),
        "table": name,
        "columns": columns,
        "owner": owner_field.column if owner_field else None,
        "owner_field": owner_field.name if owner_field else None,
        "owned": options.owned,
        "tenant": options.tenant,
        "soft_delete": options.soft_delete,
        "crud": options.crud,
        "revision": revision,
        "down_revision": _current_head(root),
        "create_date": now.strftime("%Y-%m-%d %H:%M:%S"),
        "uses": _imports(columns),
        "body_columns": [
            c for c in columns if c.name != (owner_field.column if owner_field else None)
        ],
        "ref_columns": [
            c
            for c in columns
            if c.foreign_key and c.name != (owner_field.column if owner_field else None)
        ],
        "singular": singular,
        "filter_column": next(
            (
                c
                for c in columns
                if c.spec.filterable and not c.foreign_key and c.spec.kind != "bool"
            ),
            None,
        ),
        "unique_column": next((c for c in columns if c.spec.unique and not c.foreign_key), None),
        "list_indexes": _list_indexes(name, columns, tenant=options.tenant),
    }
    plan = ModulePlan(name=name, entity=entity)
    module_dir = Path("app/modules") / name
    tests_dir = Path("tests/modules") / name
    files = {
        module_dir / "__init__.py": "init.py.jinja",
        module_dir / "cli.py": "cli.py.jinja",
        module_dir / "config.py": "config.py.jinja",
        module_dir / "models.py": "models.py.jinja",
        module_dir / "schemas.py": "schemas.py.jinja",
        module_dir / "repositories.py": "repositories.py.jinja",
        module_dir / "services.py": "services.py.jinja",
        module_dir / "policies.py": "policies.py.jinja",
        module_dir / "events.py": "events.py.jinja",
        module_dir / "listeners.py": "listeners.py.jinja",
        module_dir / "tasks.py": "tasks.py.jinja",
        module_dir / "gateway.py": "gateway.py.jinja",
        module_dir / "dependencies.py": "dependencies.py.jinja",
        module_dir / "routes" / "__init__.py": "routes_init.py.jinja",
        module_dir / "routes" / "v1.py": "routes_v1.py.jinja",
        module_dir / "admin.py": "admin.py.jinja",
        tests_dir / "__init__.py": "empty.py.jinja",
        Path("tests/factories") / f"{name}.py": "factories.py.jinja",
        tests_dir / "test_gateway_task_and_command.py": (
            "test_tenant_gateway_task_and_command.py.jinja"
            if options.tenant
            else "test_gateway_task_and_command.py.jinja"
        ),
        Path("migrations/versions")
        / f"{now:%Y%m%d_%H%M}_{revision}_create_{name}.py": "migration.py.jinja",
    }
    if options.tenant:  # the panel's sessions see no organization's rows (row-level security)
        del files[module_dir / "admin.py"]
    if options.tenant:  # the same files, written for records that belong to organizations
        for path, template in list(files.items()):
            if (Path(__file__).parent / "templates" / f"tenant_{template}").exists():
                files[path] = f"tenant_{template}"
    if options.crud and options.tenant:
        files[tests_dir / "test_endpoints_and_tenant_isolation.py"] = (
            "test_tenant_endpoints.py.jinja"
        )
    elif options.crud:
        files[tests_dir / "test_endpoints.py"] = "test_endpoints.py.jinja"
    environment = Environment(
        loader=PackageLoader("app.scaffold", "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - renders Python source, not HTML
    )
    for path, template in files.items():
        if (root / path).exists():
            raise SpecError(f"{path} already exists; the generator never overwrites")
        content = environment.get_template(template).render(**context)
        plan.files.append(GeneratedFile(path=path, content=_tidy(content)))
    return plan


def _tidy(content: str) -> str:
    """Collapse runs of blank lines the templates' conditionals leave behind."""
    content = re.sub(r"\n{4,}", "\n\n\n", content)
    return content.strip("\n") + "\n" if content.strip() else ""


def _imports(columns: list[Column]) -> dict[str, bool]:
    kinds = {c.spec.kind for c in columns}
    return {
        "dt": bool(kinds & {"date", "datetime"}),
        "decimal": "decimal" in kinds,
        "json": "json" in kinds,
        "choices": "choices" in kinds,
        "uuid_field": bool(kinds & {"uuid", "ref"}),
        "aware": "datetime" in kinds,
        "uuid_plain": "uuid" in kinds,
        "lazy": any(
            c.factory_value.startswith("LazyFunction") for c in columns if not c.foreign_key
        ),
        "sequence": any(
            c.factory_value.startswith("Sequence") for c in columns if not c.foreign_key
        ),
    }


def format_files(root: Path, paths: list[Path]) -> None:
    """Sort imports and format the written files with ruff (a development dependency)."""
    ruff = Path(sys.executable).parent / "ruff"
    if not ruff.exists() or not paths:
        return
    targets = [str(root / path) for path in paths]
    subprocess.run([str(ruff), "check", "--fix", "--quiet", "--select", "I,F401", *targets],
                   cwd=root, check=False, capture_output=True)  # fmt: skip
    subprocess.run(
        [str(ruff), "format", "--quiet", *targets], cwd=root, check=False, capture_output=True
    )


def write_files(root: Path, plan: ModulePlan) -> list[Path]:
    """Write every planned file; refuse (and write nothing) if any of them exists."""
    for item in plan.files:
        if (root / item.path).exists():
            raise SpecError(f"{item.path} already exists; the generator never overwrites")
    written: list[Path] = []
    for item in plan.files:
        target = root / item.path
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("x", encoding="utf-8") as handle:
            handle.write(item.content)
        written.append(item.path)
    return written
