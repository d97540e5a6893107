"""Generic data access for one model. Repositories add, query and flush; they never commit."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from sqlalchemy import ColumnElement, CursorResult, Result, Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, InstrumentedAttribute

from app.core.db.base import SoftDeleteMixin, utcnow
from app.core.db.listing import Filter, ListParams
from app.core.errors import NotFound

ModelT = TypeVar("ModelT", bound=DeclarativeBase)


def rows_affected(result: Result[Any]) -> int:
    """How many rows an UPDATE or DELETE changed (`AsyncSession.execute` is typed to return
    a plain `Result`; for those statements it is a `CursorResult`)."""
    return result.rowcount if isinstance(result, CursorResult) else 0


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
    ) -> tuple[list[ModelT], int]:
        query = self._base_query()
        for condition in where:
            query = query.where(condition)
        for item in params.filters:
            query = query.where(self._filter_clause(item))
        total = await session.scalar(
            select(func.count()).select_from(query.order_by(None).subquery())
        )
        order = [
            self._column(name).desc() if descending else self._column(name).asc()
            for name, descending in params.sort
        ]
        # A unique tiebreaker keeps pages stable when sort keys repeat.
        order.append(self._column("id").asc())
        rows = await session.execute(
            query.order_by(*order).offset(params.offset).limit(params.per_page)
        )
        return list(rows.scalars().all()), int(total or 0)

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
