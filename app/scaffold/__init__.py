"""`app new-module`: writes a complete, tested, migrated feature module from a field spec."""

from app.scaffold.fields import FieldSpec, SpecError, parse_fields
from app.scaffold.generator import GeneratedFile, ModulePlan, plan_module, write_files

__all__ = [
    "FieldSpec",
    "GeneratedFile",
    "ModulePlan",
    "SpecError",
    "parse_fields",
    "plan_module",
    "write_files",
]
