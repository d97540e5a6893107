"""The hand-written users module is the example every generated module follows: the same files,
and the same names for the same roles (settings, services, readers, gateways, path ids...)."""

from __future__ import annotations

import ast
from pathlib import Path

from app.scaffold import parse_fields, plan_module
from app.scaffold.generator import Options
from tests.support import PROJECT_ROOT

USERS = PROJECT_ROOT / "app" / "modules" / "users"
# Per file, the names each module defines for a role all modules share; {M} is the module's
# class prefix (Users), {m} its name (users), {E} and {e} its entity (User, user).
CONVENTIONS = {
    "__init__.py": ["module"],
    "cli.py": ["cli"],
    "config.py": ["{M}Settings", "load_{m}_settings", "get_{m}_settings", "{M}SettingsDep"],
    "dependencies.py": [
        "get_{m}_service",
        "{M}ServiceDep",
        "get_{m}_reader",
        "{M}ReaderDep",
        "{E}IdPath",
        "get_{e}_by_id",
        "{E}ById",
    ],
    "gateway.py": [
        "{M}Gateway",
        "get_{m}_gateway",
        "{M}GatewayDep",
        "{M}Directory",
        "get_{m}_directory",
        "{M}DirectoryDep",
    ],
    "repositories.py": ["{E}Repository"],
    "schemas.py": ["{E}DTO", "{E}Create", "{E}Update"],
    "services.py": ["{M}Service", "{M}Reader"],
    "routes/v1.py": ["router", "{E}ListParams", "list_{m}", "read_{e}", "update_{e}", "delete_{e}"],
}


def _generated() -> dict[str, str]:
    plan = plan_module(PROJECT_ROOT, "parcels", parse_fields(["label:str"]), Options())
    module_dir = Path("app/modules/parcels")
    return {
        str(item.path.relative_to(module_dir)): item.content
        for item in plan.files
        if item.path.is_relative_to(module_dir)
    }


def _defined(source: str) -> dict[str, ast.stmt]:
    """Top-level names a module source defines, with the statement defining each."""
    names: dict[str, ast.stmt] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    names[target.id] = node
        elif isinstance(node, ast.ImportFrom):
            for alias in node.names:
                names[alias.asname or alias.name] = node
    return names


def _names(pattern: str, *, module: str, entity: str) -> str:
    return pattern.format(M=module.capitalize(), m=module, E=entity.capitalize(), e=entity)


def test_users_has_no_file_the_generator_does_not_write() -> None:
    users_files = {
        str(path.relative_to(USERS))
        for path in USERS.rglob("*.py")
        if "__pycache__" not in path.parts
    }
    assert users_files <= set(_generated())


def test_the_shared_roles_have_the_same_names_in_users_and_a_generated_module() -> None:
    generated = _generated()
    for file, patterns in CONVENTIONS.items():
        users_names = _defined((USERS / file).read_text())
        generated_names = _defined(generated[file])
        for pattern in patterns:
            assert _names(pattern, module="users", entity="user") in users_names, (file, pattern)
            assert _names(pattern, module="parcels", entity="parcel") in generated_names, (
                file,
                pattern,
            )


def test_dependencies_are_async_in_both() -> None:
    # FastAPI runs a plain `def` dependency in a thread pool: a thread hop per request.
    for source in ((USERS / "dependencies.py").read_text(), _generated()["dependencies.py"]):
        functions = [
            node
            for node in ast.parse(source).body
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        ]
        assert functions
        assert all(isinstance(node, ast.AsyncFunctionDef) for node in functions)


def test_one_password_type_in_the_whole_app() -> None:
    definitions = [
        path.relative_to(PROJECT_ROOT)
        for path in (PROJECT_ROOT / "app").rglob("*.py")
        if "__pycache__" not in path.parts
        and any(
            isinstance(node, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == "Password" for t in node.targets)
            for node in ast.parse(path.read_text()).body
        )
    ]
    assert definitions == [Path("app/modules/users/schemas.py")]
