"""Generic data access for one model. Repositories add, query and flush; they never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import TypeAdapter
from pydantic import ValidationError as PydanticValidationError
from sqlalchemy import (
    Column,
    ColumnElement,
    CursorResult,
    Result,
    RowMapping,
    Select,
    Table,
    and_,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    tuple_,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from app.core.db.base import SoftDeleteMixin, utcnow
from app.core.db.listing import Cursor, Filter, ListParams, Slice
from app.core.errors import NotFound, ValidationFailed

ModelT = TypeVar("ModelT", bound=DeclarativeBase)
# (name, column, descending) of each ORDER BY key, tie-breaker included.
SortKeys = Sequence[tuple[str, "Column[Any]", bool]]


def rows_affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (`AsyncSession.execute` is typed to return
    a plain `Result`; for those statements it is a `CursorResult`)."""
    return result.rowcount if isinstance(result, CursorResult) else 0


# An estimate this many times the exact-count limit is trusted without counting: statistics
# that far off (a table never analyzed) still give a count a chance to correct them.
CLEARLY_ABOVE = 2


class Explain(Executable, ClauseElement):
    """`EXPLAIN (FORMAT JSON)` of a statement (SQLAlchemy's documented compiler extension):
    the planner's row estimate without running it. Not cached: SQLAlchemy's result cache
    needs the columns of what it runs, which EXPLAIN does not declare."""

    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(Explain)
def _compile_explain(element: Explain, compiler: SQLCompiler, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.statement, **kw)


@lru_cache(maxsize=256)
def _adapter(column: Column[Any]) -> TypeAdapter[Any]:
    """Validates a cursor's value as the column's Python type (a datetime, a UUID ...)."""
    return TypeAdapter(column.type.python_type)


class BaseRepository(Generic[ModelT]):
    model: ClassVar[type[DeclarativeBase]]
    not_found_message: ClassVar[str] = "Resource not found"

    @property
    def _model(self) -> type[ModelT]:
        return self.model  # type: ignore[return-value]

    @property
    def _soft_deletes(self) -> bool:
        return issubclass(self.model, SoftDeleteMixin)

    def _base_query(self, *, include_deleted: bool = False) -> Select[ModelT]:
        query = select(self._model)
        if self._soft_deletes and not include_deleted:
            query = query.where(self._column("deleted_at").is_(None))
        return query

    @property
    def _table(self) -> Table:
        table: Table = self.model.__table__  # type: ignore[assignment]
        return table

    def _column(self, name: str) -> InstrumentedAttribute[Any]:
        column: InstrumentedAttribute[Any] = getattr(self.model, name)
        return column

    async def get_or_none(
        self, session: AsyncSession, *, id: Any, include_deleted: bool = False
    ) -> ModelT | None:
        # session.get() answers from the identity map when this request already loaded the
        # row (say, the signed-in user), saving a round trip; otherwise one primary-key query.
        instance = await session.get(self._model, id)
        if instance is None:
            return None
        if not include_deleted and getattr(instance, "deleted_at", None) is not None:
            return None
        return instance

    async def get(self, session: AsyncSession, *, id: Any) -> ModelT:
        instance = await self.get_or_none(session, id=id)
        if instance is None:
            raise NotFound(self.not_found_message)
        return instance

    async def get_by(self, session: AsyncSession, **criteria: Any) -> ModelT | None:
        query = self._base_query()
        for name, value in criteria.items():
            query = query.where(self._column(name) == value)
        result = await session.execute(query.limit(1))
        return result.scalar_one_or_none()

    async def create(self, session: AsyncSession, **values: Any) -> ModelT:
        instance = self._model(**values)
        session.add(instance)
        await session.flush()
        return instance

    async def update(self, session: AsyncSession, instance: ModelT, **values: Any) -> ModelT:
        for name, value in values.items():
            setattr(instance, name, value)
        await session.flush()
        return instance

    async def delete(self, session: AsyncSession, instance: ModelT) -> None:
        """Soft-deletes when the model supports it, else removes the row."""
        if isinstance(instance, SoftDeleteMixin):
            instance.deleted_at = utcnow()
        else:
            await session.delete(instance)
        await session.flush()

    async def hard_delete(self, session: AsyncSession, instance: ModelT) -> None:
        await session.delete(instance)
        await session.flush()

    async def list(
        self,
        session: AsyncSession,
        params: ListParams,
        *,
        where: Sequence[ColumnElement[bool]] = (),
    ) -> Slice[ModelT]:
        """One page of models: by number (OFFSET) or after a cursor (a range on the sort keys,
        which the sort's index serves however deep), with a total that never counts past the
        limit."""
        items, total, exact, cursors = await self._page(
            session, self._base_query(), params, where, entities=True
        )
        return Slice(items, total, exact, *cursors)

    async def read_page(
        self,
        connection: AsyncConnection,
        params: ListParams,
        *,
        columns: Sequence[str],
        where: Sequence[ColumnElement[bool]] = (),
    ) -> Slice[RowMapping]:
        """The same page as `list`, as rows of `columns` read on a plain connection: no unit
        of work, no identity map, no ORM objects (a read-only list of DTOs needs none)."""
        table = self._table
        keys = [name for name, _, _ in self._sort_keys(params) if name not in columns]
        query = self._base_query().with_only_columns(*(table.c[n] for n in [*columns, *keys]))
        rows, total, exact, cursors = await self._page(
            connection, query, params, where, entities=False
        )
        return Slice(rows, total, exact, *cursors)

    async def _page(
        self,
        executor: AsyncSession | AsyncConnection,
        query: Select[Any],
        params: ListParams,
        where: Sequence[ColumnElement[bool]],
        *,
        entities: bool,
    ) -> tuple[Any, int, bool, tuple[str | None, str | None]]:
        for condition in where:
            query = query.where(condition)
        for item in params.filters:
            query = query.where(self._filter_clause(item))
        total, exact = await self._total(executor, query, params.exact_total_limit)

        keys = self._sort_keys(params)
        cursor = params.cursor
        backward = cursor is not None and cursor.backward
        if cursor is not None:
            query = query.where(self._after(keys, self._cursor_values(keys, params), backward))
        else:
            query = query.offset(params.offset)
        # Walking back reads the rows before the cursor in reverse, then turns them round.
        order = [
            column.desc() if descending != backward else column.asc()
            for _, column, descending in keys
        ]
        result = await executor.execute(query.order_by(*order).limit(params.per_page + 1))
        items = [*(result.scalars() if entities else result.mappings())]
        more = len(items) > params.per_page  # one row past the page says a next one exists
        del items[params.per_page :]
        if backward:
            items.reverse()

        names = tuple(name for name, _, _ in keys)

        def cursor_at(item: Any, *, back: bool) -> str:
            values = tuple(getattr(item, name) if entities else item[name] for name in names)
            return Cursor(params.sort_text, names, values, back).encode()

        after_start = cursor is not None or params.page > 1
        has_next = (not backward and more) or (backward and bool(items))
        has_prev = (backward and more) or (not backward and after_start and bool(items))
        return (
            items,
            total,
            exact,
            (
                cursor_at(items[-1], back=False) if has_next else None,
                cursor_at(items[0], back=True) if has_prev else None,
            ),
        )

    async def _total(
        self, executor: AsyncSession | AsyncConnection, query: Select[Any], limit: int
    ) -> tuple[int, bool]:
        """PostgreSQL's planner estimate first (a plan, no row read); when it is not clearly
        above `limit`, a count that stops at limit + 1 rows: exact up to `limit`, the estimate
        (at least limit + 1) above it. A large table costs a plan per list, never a count."""
        rows: Select[Any] = query.with_only_columns(literal_column("1")).order_by(None)
        plan = await executor.scalar(Explain(rows))
        estimate = int(plan[0]["Plan"]["Plan Rows"]) if plan else 0
        if estimate > CLEARLY_ABOVE * limit:
            return estimate, False
        counted = await executor.scalar(
            select(func.count()).select_from(rows.limit(limit + 1).subquery())
        )
        if (counted or 0) <= limit:
            return int(counted or 0), True
        return max(estimate, limit + 1), False

    def _sort_keys(self, params: ListParams) -> SortKeys:
        """(name, column, descending) of the ORDER BY: the sort, then the primary key as a
        tie-breaker (in the last field's direction, so one index scans them both) unless the
        sort already ends on a unique, non-null column."""
        table = self._table
        keys = [(name, table.c[name], descending) for name, descending in params.sort]
        if not keys or not (keys[-1][1].unique and not keys[-1][1].nullable):
            keys.append(("id", table.c["id"], keys[-1][2] if keys else False))
        return keys

    def _cursor_values(self, keys: SortKeys, params: ListParams) -> tuple[Any, ...]:
        cursor = params.cursor
        assert cursor is not None
        if cursor.keys != tuple(name for name, _, _ in keys):
            raise ValidationFailed.at(("query", "cursor"), "this cursor was made for another sort")
        values: list[Any] = []
        for (_, column, _), raw in zip(keys, cursor.values, strict=True):
            try:
                values.append(None if raw is None else _adapter(column).validate_python(raw))
            except PydanticValidationError:
                raise ValidationFailed.at(("query", "cursor"), "invalid cursor") from None
        return tuple(values)

    @staticmethod
    def _after(keys: SortKeys, values: tuple[Any, ...], backward: bool) -> ColumnElement[bool]:
        """Rows strictly after `values` in the order of `keys` (reversed when `backward`)."""
        directions = {descending != backward for _, _, descending in keys}
        if len(directions) == 1 and all(
            not column.nullable and value is not None
            for (_, column, _), value in zip(keys, values, strict=True)
        ):
            # One direction, no NULLs: a row comparison, which an index on the keys answers
            # with one range scan.
            left = tuple_(*(column for _, column, _ in keys))
            right = tuple_(
                *(
                    literal(value, column.type)
                    for (_, column, _), value in zip(keys, values, strict=True)
                )
            )
            return left < right if directions.pop() else left > right
        # Mixed directions or NULLs: (k1 after v1) OR (k1 = v1 AND k2 after v2) OR ...
        # PostgreSQL sorts NULLs last ascending and first descending (its defaults).
        branches: list[ColumnElement[bool]] = []
        equal: list[ColumnElement[bool]] = []
        for (_, column, descending), value in zip(keys, values, strict=True):
            if descending != backward:
                step = column.is_not(None) if value is None else column < value
            else:
                step = false() if value is None else or_(column > value, column.is_(None))
            branches.append(and_(*equal, step))
            equal.append(column.is_(None) if value is None else column == value)
        return or_(*branches)

    def _filter_clause(self, item: Filter) -> ColumnElement[bool]:
        column = self._column(item.field)
        clauses: Mapping[str, Any] = {
            "eq": lambda: column == item.value,
            "ne": lambda: column != item.value,
            "in": lambda: column.in_(item.value),
            "gt": lambda: column > item.value,
            "gte": lambda: column >= item.value,
            "lt": lambda: column < item.value,
            "lte": lambda: column <= item.value,
        }
        clause: ColumnElement[bool] = clauses[item.op]()
        return clause
