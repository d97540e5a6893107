"""The module-boundaries contract, in process on hand-built import graphs (the generator's
end-to-end test also runs it through `lint-imports` on a project copy)."""

from __future__ import annotations

import pytest
from grimp import ImportGraph
from importlinter.application import output

from app.boundaries import ModuleBoundariesContract


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
