"""The module-boundaries contract, in process on hand-built import graphs (the generator's
end-to-end test also runs it through `lint-imports` on a project copy)."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from grimp import ImportGraph
from importlinter import configuration
from importlinter.application import output
from importlinter.contracts.acyclic_siblings import AcyclicSiblingsContract

from app.boundaries import ModuleBoundariesContract
from tests.support import PROJECT_ROOT


def _graph(*imports: tuple[str, str]) -> ImportGraph:
    graph = ImportGraph()
    for importer, imported in imports:
        for name in (importer, imported):
            parts = name.split(".")
            for depth in range(1, len(parts) + 1):  # packages too, as grimp builds them
                graph.add_module(".".join(parts[:depth]))
        graph.add_import(
            importer=importer, imported=imported, line_number=3, line_contents=f"import {imported}"
        )
    return graph


def _contract() -> ModuleBoundariesContract:
    return ModuleBoundariesContract(
        name="module boundaries",
        session_options={},
        contract_options={"modules_root": "app.modules"},
    )


def test_imports_through_package_roots_and_into_core_are_kept() -> None:
    graph = _graph(
        ("app.modules.auth.services", "app.modules.users"),
        ("app.modules.users.routes.v1", "app.modules.users.services"),
        ("app.modules.users.services", "app.modules.users.repositories"),
        ("app.modules.users.repositories", "app.core.db"),
        ("app.core.db", "sqlalchemy"),
    )
    check = _contract().check(graph, verbose=False)
    assert check.kept
    assert check.metadata["violations"] == []


def test_reaching_into_another_module_is_broken() -> None:
    graph = _graph(("app.modules.auth.services", "app.modules.users.models"))
    check = _contract().check(graph, verbose=False)
    assert not check.kept
    [violation] = check.metadata["violations"]
    assert violation["importer"] == "app.modules.auth.services"
    assert violation["imported"] == "app.modules.users.models"
    assert violation["lines"] == [3]
    assert "reaches into module 'users'" in violation["why"]


def test_routes_importing_repositories_is_broken_even_inside_one_module() -> None:
    graph = _graph(("app.modules.users.routes.v1", "app.modules.users.repositories"))
    check = _contract().check(graph, verbose=False)
    assert not check.kept
    assert "routes must call services" in check.metadata["violations"][0]["why"]


def test_a_broken_contract_names_importer_imported_line_and_reason(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(output.console, "width", 400)  # one report line per violation
    contract = _contract()
    check = contract.check(
        _graph(("app.modules.auth.sneaky", "app.modules.users.models")), verbose=False
    )
    contract.render_broken_contract(check)
    printed = capsys.readouterr().out
    assert "app.modules.auth.sneaky -> app.modules.users.models (l.3)" in printed
    assert "import from app.modules.users only" in printed


def _acyclic_modules() -> AcyclicSiblingsContract:
    """The pyproject contract that forbids import cycles between feature modules."""
    configuration.configure()  # what `lint-imports` does first (the contract times its search)
    options = next(
        contract for contract in _pyproject_contracts() if contract["type"] == "acyclic_siblings"
    )
    return AcyclicSiblingsContract(
        name=options["name"],
        session_options={},
        contract_options={key: value for key, value in options.items() if key != "type"},
    )


def _pyproject_contracts() -> list[dict[str, Any]]:
    config = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    contracts: list[dict[str, Any]] = config["tool"]["importlinter"]["contracts"]
    return contracts


def test_one_way_imports_between_modules_are_kept() -> None:
    graph = _graph(
        ("app.modules.auth.services", "app.modules.users"),
        ("app.modules.orders.services", "app.modules.users"),
        ("app.modules.users.routes", "app.core.auth"),
    )
    assert _acyclic_modules().check(graph, verbose=False).kept


def test_two_modules_importing_each_other_break_the_contract() -> None:
    # users asking auth for "who is calling" while auth asks users for accounts: the cycle
    # this template used to have; the principal lives in app.core.auth instead.
    graph = _graph(
        ("app.modules.auth.services", "app.modules.users"),
        ("app.modules.users.routes", "app.modules.auth"),
    )
    check = _acyclic_modules().check(graph, verbose=False)
    assert not check.kept
    assert "app.modules" in check.metadata["cycle_breakers_by_package"]


def test_a_loop_through_three_modules_breaks_the_contract() -> None:
    graph = _graph(
        ("app.modules.orders", "app.modules.users"),
        ("app.modules.users", "app.modules.billing"),
        ("app.modules.billing", "app.modules.orders"),
    )
    assert not _acyclic_modules().check(graph, verbose=False).kept
