from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app.core.db import ListParams, Page, list_params
from app.core.errors import Conflict
from app.core.tenancy import TenantRepository, TenantSession
from tests.core.tenant_sample.notes.models import Note


class NoteRepository(TenantRepository[Note]):
    model = Note
    not_found_message = "Note not found"


class NoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    title: str = Field(min_length=1, max_length=100)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    title: str


router = APIRouter()
notes = NoteRepository()
NoteListParams = Annotated[ListParams, Depends(list_params(sortable={"title"}))]


@router.get("", response_model=Page[NoteOut])
async def list_notes(session: TenantSession, params: NoteListParams) -> Page[NoteOut]:
    result = await notes.list(session, params)
    notes_out = [NoteOut.model_validate(n) for n in result.items]
    return Page.build(notes_out, result=result, params=params)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=NoteOut)
async def create_note(body: NoteIn, session: TenantSession) -> NoteOut:
    if await notes.get_by(session, title=body.title) is not None:
        raise Conflict("A note with this title exists")
    note = await notes.create(session, title=body.title)
    await session.commit()
    return NoteOut.model_validate(note)


@router.get("/{note_id}", response_model=NoteOut)
async def get_note(note_id: uuid.UUID, session: TenantSession) -> NoteOut:
    return NoteOut.model_validate(await notes.get(session, id=note_id))


@router.patch("/{note_id}", response_model=NoteOut)
async def update_note(note_id: uuid.UUID, body: NoteIn, session: TenantSession) -> NoteOut:
    note = await notes.update(session, await notes.get(session, id=note_id), title=body.title)
    await session.commit()
    return NoteOut.model_validate(note)


@router.delete("/{note_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_note(note_id: uuid.UUID, session: TenantSession) -> Response:
    await notes.delete(session, await notes.get(session, id=note_id))
    await session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
