from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, ConfigDict, Field

from app.core.db import BaseRepository, DBSession, FilterSpec, ListParams, Page, list_params
from tests.core.sample_modules.widgets.models import Widget


class WidgetRepository(BaseRepository[Widget]):
    model = Widget
    not_found_message = "Widget not found"


class WidgetIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    colour: str = Field(min_length=1, max_length=20)
    size: int = Field(ge=0, le=1000)


class WidgetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    colour: str
    size: int
    created_at: datetime


widgets = WidgetRepository()
router = APIRouter()
WidgetListParams = Annotated[
    ListParams,
    Depends(
        list_params(
            sortable={"name", "size", "created_at"},
            filterable={
                "colour": FilterSpec(str, frozenset({"eq", "ne", "in"})),
                "size": FilterSpec(int),
                "created_at": FilterSpec(datetime, frozenset({"gte", "lte"})),
            },
            max_per_page=50,
        )
    ),
]


@router.get("")
async def list_widgets(session: DBSession, params: WidgetListParams) -> Page[WidgetOut]:
    result = await widgets.list(session, params)
    return Page[WidgetOut].build(
        [WidgetOut.model_validate(item) for item in result.items], result=result, params=params
    )


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_widget(session: DBSession, body: WidgetIn) -> WidgetOut:
    widget = await widgets.create(session, **body.model_dump())
    await session.commit()
    return WidgetOut.model_validate(widget)


BoundedListParams = Annotated[
    ListParams, Depends(list_params(sortable={"name"}, exact_total_limit=2))
]


@router.get("/bounded")
async def list_widgets_counting_to_two(
    session: DBSession, params: BoundedListParams
) -> Page[WidgetOut]:
    """The same list, counted exactly up to two widgets only."""
    result = await widgets.list(session, params)
    return Page[WidgetOut].build(
        [WidgetOut.model_validate(item) for item in result.items], result=result, params=params
    )


@router.get("/{widget_id}")
async def get_widget(session: DBSession, widget_id: uuid.UUID) -> WidgetOut:
    return WidgetOut.model_validate(await widgets.get(session, id=widget_id))


@router.patch("/{widget_id}")
async def rename_widget(session: DBSession, widget_id: uuid.UUID, body: WidgetIn) -> WidgetOut:
    widget = await widgets.get(session, id=widget_id)
    await widgets.update(session, widget, **body.model_dump())
    await session.commit()
    return WidgetOut.model_validate(widget)


@router.delete("/{widget_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_widget(session: DBSession, widget_id: uuid.UUID, hard: bool = False) -> None:
    widget = await widgets.get(session, id=widget_id)
    if hard:
        await widgets.hard_delete(session, widget)
    else:
        await widgets.delete(session, widget)
    await session.commit()
