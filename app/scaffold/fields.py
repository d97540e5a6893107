"""Field specs for the module generator: `name:type` plus modifiers.

Types: str text int float decimal bool date datetime uuid json ref:<module> choices[a*,b,c]
Modifiers (suffix, any order): `?` optional, `^` unique, `!` indexed.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass, field

SIMPLE_TYPES = (
    "str", "text", "int", "float", "decimal", "bool", "date", "datetime", "uuid", "json",
)  # fmt: skip
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_CHOICE = re.compile(r"^[a-z][a-z0-9_]{0,29}$")
_SPEC = re.compile(r"^(?P<name>[^:]+):(?P<type>.+?)(?P<mods>[?^!]*)$")
# Columns every generated model already has, or names that would shadow its machinery.
RESERVED_FIELDS = frozenset(
    {"id", "created_at", "updated_at", "deleted_at", "metadata", "registry", "owner_id", "query"}
)


class SpecError(ValueError):
    """A field spec, module name or option the generator refuses, with the reason."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # one of SIMPLE_TYPES, "ref" or "choices"
    optional: bool = False
    unique: bool = False
    indexed: bool = False
    choices: tuple[str, ...] = ()
    default_choice: str | None = None
    ref_module: str | None = None
    ref_table: str | None = field(default=None, compare=False)

    @property
    def column(self) -> str:
        """The column name: a reference `owner:ref:users` is stored as `owner_id`."""
        return f"{self.name}_id" if self.kind == "ref" else self.name

    @property
    def sortable(self) -> bool:
        return self.kind not in ("json", "text")

    @property
    def filterable(self) -> bool:
        return self.kind != "json"


def _modifiers(raw: str, spec: str) -> tuple[bool, bool, bool]:
    if len(set(raw)) != len(raw):
        raise SpecError(f"{spec!r}: a modifier is repeated")
    return "?" in raw, "^" in raw, "!" in raw


def parse_field(spec: str) -> FieldSpec:
    match = _SPEC.match(spec.strip())
    if match is None:
        raise SpecError(f"{spec!r}: expected name:type, e.g. title:str or price:float?")
    name, type_, mods = match["name"], match["type"], match["mods"]
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise SpecError(
            f"{spec!r}: field name must be lower_snake_case, start with a letter, ≤ 40 chars"
        )
    if name in RESERVED_FIELDS:
        raise SpecError(f"{spec!r}: {name!r} is reserved (every generated model has it)")
    optional, unique, indexed = _modifiers(mods, spec)

    if type_ in SIMPLE_TYPES:
        if type_ == "json" and (unique or indexed):
            raise SpecError(f"{spec!r}: json fields cannot be unique or indexed")
        return FieldSpec(name, type_, optional, unique, indexed)
    if type_.startswith("ref:"):
        module = type_.removeprefix("ref:")
        if not _NAME.match(module):
            raise SpecError(f"{spec!r}: ref needs a module name, e.g. owner:ref:users")
        return FieldSpec(name, "ref", optional, unique, indexed, ref_module=module)
    if type_.startswith("choices[") and type_.endswith("]"):
        return _choices(spec, name, type_[len("choices[") : -1], optional, unique, indexed)
    raise SpecError(
        f"{spec!r}: unknown type {type_!r}; use one of {', '.join(SIMPLE_TYPES)}, "
        "ref:<module>, choices[a*,b]"
    )


def _choices(
    spec: str, name: str, body: str, optional: bool, unique: bool, indexed: bool
) -> FieldSpec:
    items = [item.strip() for item in body.split(",")]
    if not body or any(not item for item in items):
        raise SpecError(f"{spec!r}: choices need values, e.g. status:choices[draft*,published]")
    defaults = [item.rstrip("*") for item in items if item.endswith("*")]
    values = tuple(item.rstrip("*") for item in items)
    if len(defaults) > 1:
        raise SpecError(f"{spec!r}: only one choice can be the default (*)")
    for value in values:
        if not _CHOICE.match(value):
            raise SpecError(f"{spec!r}: choice {value!r} must be lower_snake_case")
    if len(set(values)) != len(values):
        raise SpecError(f"{spec!r}: a choice is repeated")
    return FieldSpec(
        name,
        "choices",
        optional,
        unique,
        indexed,
        choices=values,
        default_choice=defaults[0] if defaults else None,
    )


def parse_fields(specs: list[str]) -> list[FieldSpec]:
    fields = [parse_field(spec) for spec in specs]
    columns = [f.column for f in fields]
    duplicates = sorted({c for c in columns if columns.count(c) > 1})
    if duplicates:
        raise SpecError(f"field(s) defined twice: {', '.join(duplicates)}")
    return fields
