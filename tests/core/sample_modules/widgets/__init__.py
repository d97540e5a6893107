"""A tiny feature module that lives under tests/: proves discovery, mounting and list params."""

from app.core.modules import ModuleSpec
from tests.core.sample_modules.widgets.routes import router

module = ModuleSpec(name="widgets", router=router)
