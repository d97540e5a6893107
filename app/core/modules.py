"""Module registry: finds feature modules by package discovery; no central list to edit.

A feature module is a package under `app/modules/` whose `__init__.py` exposes
`module = ModuleSpec(...)`. Its `models`, `tasks` and `listeners` submodules, when present,
are imported so their models, tasks and listeners register themselves.
"""

from __future__ import annotations

import importlib
import importlib.util
import pkgutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType

import typer
from fastapi import APIRouter
from sqladmin import ModelView

# Core's own tables join the metadata with the modules' (Alembic and the tests see them all).
import app.core.outbox.models
import app.core.sessions  # noqa: F401
from app.core.admin import AdminSignInFactory
from app.core.auth import AuthenticatorFactory
from app.core.tenancy import MembershipsFactory

DEFAULT_PACKAGES: tuple[str, ...] = ("app.modules",)
DISCOVERED_SUBMODULES: tuple[str, ...] = ("models", "tasks", "listeners")


@dataclass(frozen=True)
class ModuleSpec:
    name: str
    router: APIRouter | None = None
    prefix: str | None = None  # mounted at /api/v1/<prefix or name>
    tags: Sequence[str] = field(default_factory=tuple)
    templates_dir: Path | None = None
    cli: typer.Typer | None = None  # extra `app <command>` commands the module adds
    # Builds core's Authenticator (who a bearer token stands for); one module provides it.
    authenticator: AuthenticatorFactory | None = None
    # Builds core's Memberships (is this account a member of that organization?); one module.
    memberships: MembershipsFactory | None = None
    # The admin panel's views of the module's models (sqladmin ModelViews), at /admin.
    admin_views: Sequence[type[ModelView]] = field(default_factory=tuple)
    # Signs admins in to /admin with the app's accounts; one module provides it (auth).
    admin_sign_in: AdminSignInFactory | None = None
    # Routers are included in ascending order, then by name. FastAPI tries a request against
    # the routes included before its own, so a module on the hot path may ask to go first.
    route_order: int = 0

    @property
    def url_prefix(self) -> str:
        return "/" + (self.prefix if self.prefix is not None else self.name).strip("/")


def _import_submodules(package: ModuleType) -> None:
    for name in DISCOVERED_SUBMODULES:
        qualified = f"{package.__name__}.{name}"
        if importlib.util.find_spec(qualified) is not None:
            importlib.import_module(qualified)


def discover_modules(packages: Iterable[str] = DEFAULT_PACKAGES) -> list[ModuleSpec]:
    """Import every feature module under the given packages and return their specs, by name."""
    specs: list[ModuleSpec] = []
    for package_name in packages:
        package = importlib.import_module(package_name)
        for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda item: item.name):
            if not info.ispkg or info.name.startswith("_"):
                continue
            module = importlib.import_module(f"{package_name}.{info.name}")
            spec = getattr(module, "module", None)
            if not isinstance(spec, ModuleSpec):
                continue
            _import_submodules(module)
            if spec.templates_dir is None:  # by convention, the package's emails/ folder
                spec = replace(spec, templates_dir=Path(next(iter(module.__path__))) / "emails")
            specs.append(spec)
    return specs
