"""Sorting, filtering and pagination parsed from the query string, and the `Page[T]` shape.

Syntax: `?sort=-created_at,email&page=2&per_page=20&filter[role]=admin`
`&filter[role][in]=admin,user&filter[created_at][gte]=2024-01-01T00:00:00Z`.
Each endpoint whitelists the fields it sorts and filters on; anything else is a 422.

Pages by number (`page`) or by cursor (`cursor`, from a response's `next_cursor` or
`prev_cursor`): a cursor holds the sort key values of the row it continues from, so the next
page is one index range scan however deep it is, where `page=10000` makes the database read
and skip every row before it. `total` is exact up to the endpoint's `exact_total_limit`
(default 10,000) and PostgreSQL's planner estimate above it (`total_is_exact` says which).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

from fastapi import Query, Request
from pydantic import BaseModel, Field, TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from pydantic_core import to_jsonable_python

from app.core.errors import ValidationFailed

T = TypeVar("T")

FilterOp = Literal["eq", "ne", "in", "gt", "gte", "lt", "lte"]
FILTER_OPS: frozenset[str] = frozenset({"eq", "ne", "in", "gt", "gte", "lt", "lte"})
MAX_IN_VALUES = 100
MAX_PAGE = 1_000_000
# Counting stops here: above it, `total` is the planner's estimate (a count of a million rows
# reads a million index entries on every request).
DEFAULT_EXACT_TOTAL_LIMIT = 10_000
MAX_CURSOR_LENGTH = 2_000
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
class Cursor:
    """Where a page continues: the sort key values (tie-breaker last) of the row before it
    (`backward`: after it, walking back), for the sort and the keys it was made for."""

    sort: str
    keys: tuple[str, ...]
    values: tuple[Any, ...]
    backward: bool = False

    def encode(self) -> str:
        payload = {"s": self.sort, "k": self.keys, "v": self.values, "b": self.backward}
        raw = json.dumps(to_jsonable_python(payload), separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """The cursor a response gave; a 422 for anything else. Not signed: its values only
        bound a range of rows the caller may list anyway, like a filter would."""
        try:
            data = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            sort, keys, values, backward = data["s"], data["k"], data["v"], data["b"]
            if not (
                isinstance(sort, str)
                and isinstance(keys, list)
                and isinstance(values, list)
                and len(keys) == len(values)
                and all(isinstance(key, str) for key in keys)
                and isinstance(backward, bool)
            ):
                raise ValueError(token)
        except (ValueError, TypeError, KeyError, binascii.Error):
            raise _error("cursor", "invalid cursor; use a next_cursor or prev_cursor") from None
        return cls(sort=sort, keys=tuple(keys), values=tuple(values), backward=backward)


@dataclass(frozen=True, slots=True)
class ListParams:
    page: int = 1
    per_page: int = 20
    sort: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    filters: tuple[Filter, ...] = field(default_factory=tuple)
    cursor: Cursor | None = None
    exact_total_limit: int = DEFAULT_EXACT_TOTAL_LIMIT

    @property
    def offset(self) -> int:
        return (self.page - 1) * self.per_page

    @property
    def sort_text(self) -> str:
        """The sort as the query string writes it (a cursor records the sort it was made for)."""
        return ",".join(f"-{name}" if descending else name for name, descending in self.sort)


@dataclass(frozen=True, slots=True)
class Slice(Generic[T]):
    """One page of a list as a repository read it: the rows, the total and the cursors."""

    items: list[T]
    total: int
    total_is_exact: bool = True
    next_cursor: str | None = None
    prev_cursor: str | None = None


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int = Field(
        description="matching items: exact when `total_is_exact`, else the planner's estimate"
    )
    total_is_exact: bool = True
    page: int | None = Field(description="the page number; null on a page read by cursor")
    per_page: int
    pages: int
    next_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the page after this one; null at the end"
    )
    prev_cursor: str | None = Field(
        default=None, description="pass as `cursor` for the page before this one; null at the start"
    )

    @classmethod
    def build(cls, items: list[T], *, result: Slice[Any], params: ListParams) -> Page[T]:
        return cls(
            items=items,
            total=result.total,
            total_is_exact=result.total_is_exact,
            page=None if params.cursor is not None else params.page,
            per_page=params.per_page,
            pages=math.ceil(result.total / params.per_page) if result.total else 0,
            next_cursor=result.next_cursor,
            prev_cursor=result.prev_cursor,
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
    exact_total_limit: int = DEFAULT_EXACT_TOTAL_LIMIT,
) -> Callable[..., Awaitable[ListParams]]:
    """Build a dependency that parses and validates list parameters for one endpoint.
    `total` is counted exactly up to `exact_total_limit` rows and estimated above."""
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
        cursor: str | None = Query(
            None,
            max_length=MAX_CURSOR_LENGTH,
            description=(
                "a response's next_cursor or prev_cursor, instead of `page`: as fast on the "
                "thousandth page as on the first (send the same filters)"
            ),
        ),
    ) -> ListParams:
        order = parse_sort(sort, allowed_sort) or default_order
        where = None
        if cursor is not None:
            if page != 1:
                raise _error("cursor", "send either page or cursor, not both")
            where = Cursor.decode(cursor)
            if sort is not None and where.sort != ",".join(
                f"-{name}" if descending else name for name, descending in order
            ):
                raise _error("cursor", "this cursor was made for another sort")
            order = parse_sort(where.sort, allowed_sort | frozenset(_names(default_sort)))
        return ListParams(
            page=page,
            per_page=per_page,
            sort=order,
            filters=parse_filters(request.query_params, allowed_filters),
            cursor=where,
            exact_total_limit=exact_total_limit,
        )

    return dependency


def _names(sort: str | None) -> list[str]:
    return [part.strip().lstrip("+-") for part in (sort or "").split(",") if part.strip()]
