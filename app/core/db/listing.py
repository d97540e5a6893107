"""Sorting, filtering and pagination parsed from the query string, and the `Page[T]` shape.

Syntax: `?sort=-created_at,email&page=2&per_page=20&filter[role]=admin`
`&filter[role][in]=admin,user&filter[created_at][gte]=2024-01-01T00:00:00Z`.
Each endpoint whitelists the fields it sorts and filters on; anything else is a 422.
"""

from __future__ import annotations

import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel, TypeAdapter
from pydantic import ValidationError as PydanticValidationError

from app.core.errors import ValidationFailed

T = TypeVar("T")

FilterOp = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte"]
FILTER_OPS: frozenset[str] = frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte"})
MAX_IN_VALUES = 100
MAX_PAGE = 1_000_000
_FILTER_KEY = re.compile(r"^filter\[(?P<field>[^\[\]]+)\](?:\[(?P<op>[^\[\]]+)\])?$")


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A whitelisted filter: the Python type of its values and the operators allowed on it."""

    type_: Any
    ops: frozenset[str] = FILTER_OPS


@dataclass(frozen=True, slots=True)
class Filter:
    field: str
    op: FilterOp
    value: Any


@dataclass(frozen=True, slots=True)
class ListParams:
    page: int = 1
    per_page: int = 20
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    filters: tuple[Filter, ...] = field(default_factory=tuple)

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    page: int
    per_page: int
    pages: int

    @classmethod
    def build(cls, items: list[T], *, total: int, params: ListParams) -> Page[T]:
        return cls(
            items=items,
            total=total,
            page=params.page,
            per_page=params.per_page,
            pages=math.ceil(total / params.per_page) if total else 0,
        )


def _error(loc: str, msg: str) -> ValidationFailed:
    return ValidationFailed.at(("query", loc), msg)


def parse_sort(raw: str | None, sortable: frozenset[str]) -> tuple[tuple[str, bool], ...]:
    if not raw:
        return ()
    result: list[tuple[str, bool]] = []
    seen: set[str] = set()
    for part in raw.split(","):
        token = part.strip()
        descending = token.startswith("-")
        name = token.lstrip("+-")
        if name not in sortable:
            allowed = ", ".join(sorted(sortable)) or "none"
            raise _error("sort", f"cannot sort by {name!r}; sortable fields: {allowed}")
        if name in seen:
            raise _error("sort", f"field {name!r} appears twice in sort")
        seen.add(name)
        result.append((name, descending))
    return tuple(result)


def parse_filters(
    query: Mapping[str, str], filterable: Mapping[str, FilterSpec]
) -> tuple[Filter, ...]:
    filters: list[Filter] = []
    for key, raw in query.items():
        if not key.startswith("filter"):
            continue
        match = _FILTER_KEY.match(key)
        if match is None:
            raise _error(key, "malformed filter; use filter[field] or filter[field][op]")
        name, op = match["field"], match["op"] or "eq"
        spec = filterable.get(name)
        if spec is None:
            allowed = ", ".join(sorted(filterable)) or "none"
            raise _error(key, f"cannot filter by {name!r}; filterable fields: {allowed}")
        if op not in spec.ops:
            raise _error(key, f"operator {op!r} is not allowed on {name!r}")
        filters.append(Filter(field=name, op=op, value=_coerce(key, raw, op, spec.type_)))  # type: ignore[arg-type]
    return tuple(filters)


def _coerce(key: str, raw: str, op: str, type_: Any) -> Any:
    try:
        if op == "in":
            values = [item for item in raw.split(",") if item != ""]
            if not values or len(values) > MAX_IN_VALUES:
                raise _error(key, f"'in' takes 1 to {MAX_IN_VALUES} comma-separated values")
            adapter = TypeAdapter(list[type_])
            return adapter.validate_python(values)
        return TypeAdapter(type_).validate_python(raw)
    except PydanticValidationError as error:
        message = error.errors()[0]["msg"]
        raise _error(key, f"invalid value: {message}") from None


def list_params(
    *,
    sortable: frozenset[str] | set[str] = frozenset(),
    filterable: Mapping[str, FilterSpec] | None = None,
    default_sort: str | None = None,
    default_per_page: int = 20,
    max_per_page: int = 100,
) -> Callable[..., Awaitable[ListParams]]:
    """Build a dependency that parses and validates list parameters for one endpoint."""
    allowed_sort = frozenset(sortable)
    allowed_filters = dict(filterable or {})
    default_order = parse_sort(default_sort, allowed_sort | frozenset(_names(default_sort)))
    filter_help = ", ".join(sorted(allowed_filters)) or "none"

    async def dependency(
        request: Request,
        page: int = Query(1, ge=1, le=MAX_PAGE, description="1-based page number"),
        per_page: int = Query(
            default_per_page, ge=1, le=max_per_page, description="items per page"
        ),
        sort: str | None = Query(
            None,
            max_length=200,
            description=(
                "comma-separated fields, '-' for descending; sortable: "
                + (", ".join(sorted(allowed_sort)) or "none")
                + f". Filters: filter[field] or filter[field][op] on: {filter_help}"
            ),
        ),
    ) -> ListParams:
        return ListParams(
            page=page,
            per_page=per_page,
            sort=parse_sort(sort, allowed_sort) or default_order,
            filters=parse_filters(request.query_params, allowed_filters),
        )

    return dependency


def _names(sort: str | None) -> list[str]:
    return [part.strip().lstrip("+-") for part in (sort or "").split(",") if part.strip()]
