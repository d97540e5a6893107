"""import-linter contract for feature-module boundaries (run by `make contracts` / `make test`).

Rules, for every package under `app.modules` — present and future, with no list to keep:
- a module imports another module only through its package root (its public API), never
  `app.modules.<other>.<anything>`;
- a module's `routes` never import a `repositories` module: routes call services.
"""

from __future__ import annotations

from typing import Any

from grimp import ImportGraph
from importlinter import Contract, ContractCheck, fields, output


def _module_of(name: str, root: str) -> tuple[str, str] | None:
    """('users', 'app.modules.users.models') -> ('users', 'models'); None outside modules."""
    prefix = root + "."
    if not name.startswith(prefix):
        return None
    module, _, rest = name.removeprefix(prefix).partition(".")
    return module, rest


class ModuleBoundariesContract(Contract):
    type_name = "module_boundaries"
    modules_root = fields.StringField()

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        root = str(self.modules_root)
        violations: list[dict[str, Any]] = []
        for importer in sorted(graph.find_descendants(root)):
            source = _module_of(importer, root)
            if source is None:
                continue
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                target = _module_of(imported, root)
                if target is None:
                    continue
                reason = self._violation(source, target)
                if reason:
                    lines = [
                        detail["line_number"]
                        for detail in graph.get_import_details(importer=importer, imported=imported)
                    ]
                    violations.append(
                        {"importer": importer, "imported": imported, "lines": lines, "why": reason}
                    )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    @staticmethod
    def _violation(source: tuple[str, str], target: tuple[str, str]) -> str | None:
        (from_module, from_part), (to_module, to_part) = source, target
        if from_module != to_module and to_part:
            return f"reaches into module {to_module!r}; import from app.modules.{to_module} only"
        in_routes = from_part.split(".")[0] == "routes"
        if from_module == to_module and in_routes and to_part.split(".")[0] == "repositories":
            return "routes must call services, not repositories"
        return None

    def render_broken_contract(self, check: ContractCheck) -> None:
        for violation in check.metadata["violations"]:
            lines = ", ".join(f"l.{n}" for n in violation["lines"])
            output.print_error(
                f"{violation['importer']} -> {violation['imported']} ({lines}): {violation['why']}"
            )
            output.new_line()
